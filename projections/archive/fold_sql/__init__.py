"""The value-stream fold as set-based SQL: what `gemba replay` runs over the whole archive.

`projections.deal.value_stream.deal_value_stream` folds one deal at a time in Python;
these modules write the same fold as SQL statements over the archive's `fold_facts`
table (`projections.archive.facts`), for every deal at once. Both must give the same
projections for the same events and policy (`projections.archive.canonical`).

How the fold becomes SQL (each step a handful of window functions over all deals):

- deals: the first deal_opened and the first close by (event time, event id); the
  watermark is the deal's latest known event; the life runs from the open to the
  close, or to the watermark;
- stage visits: the changes in order, those after the close dropped, a change to the
  stage the deal is already in skipped (the stage before it is its `lag`);
- touches: each touch's span (its own, or the policy's standard minutes), kept if it
  meets the life and clipped to it; its visit is the latest one entered by its start;
- the touch rules: the running state of DOMAIN.md rules 1-7 (emails in a row since
  the last two-way contact, internal meetings per stage, held meetings per kind) as
  running counts in the order (start, event id);
- the ball in our court (rule 5) and stall episodes, from running counts of
  answers and the gaps between value-added touches within each visit;
- the precedence merge: every boundary of a touch, ball span, stall episode or
  visit is a point; between consecutive points each class's running count says
  which class holds that stretch (the first in the policy's precedence), and the
  stretch's length goes to it, to its stage, and to waiting-on-us or inventory.

Each DOMAIN rule is one function in `rules` or `merge`, named after the rule, whose
docstring names its Python twin (and the twin's names it back). `steps` puts them in
order; `lines` writes the canonical lines the content hash is taken over.

Times are microseconds since the epoch throughout: exact, like the Python fold's.
"""
