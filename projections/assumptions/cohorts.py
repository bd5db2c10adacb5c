"""The cohort language: which deals a claim compares, written as TOML tables over deal facts.

A cohort is one of:

- a condition on one fact: `{ field = "first_discovery_days", op = "<=", value = 14 }`;
- `{ all = [cohort, ...] }`: every one holds; `{ any = [cohort, ...] }`: at least one does;
- `{ not = cohort }`: it does not hold.

Operators, by the kind of fact (see `gemba assumptions fields`):

| op | facts | value |
| --- | --- | --- |
| `==`, `!=` | number, text, flag | one value of the fact's kind |
| `<`, `<=`, `>`, `>=` | number | a number |
| `in`, `not in` | number, text | a non-empty list of values |
| `contains`, `not contains` | set | one text value |
| `exists` | any | true (the fact is known) or false (it is None) |

A fact that is None (unknown, or not applicable) fails every test except
`!=`, `not in` and `exists = false`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from projections.assumptions.facts import FIELDS, FactKind, FactValue
from projections.assumptions.text import Path

__all__ = ["OPERATORS", "AllOf", "AnyOf", "Cohort", "Condition", "NotOf", "parse_cohort"]

Problems: TypeAlias = list[tuple[Path, str]]
Scalar: TypeAlias = str | float | bool
Value: TypeAlias = Scalar | tuple[Scalar, ...]

_EQUALITY = frozenset({FactKind.NUMBER, FactKind.TEXT, FactKind.FLAG})
OPERATORS: Mapping[str, frozenset[FactKind]] = {
    "==": _EQUALITY,
    "!=": _EQUALITY,
    "<": frozenset({FactKind.NUMBER}),
    "<=": frozenset({FactKind.NUMBER}),
    ">": frozenset({FactKind.NUMBER}),
    ">=": frozenset({FactKind.NUMBER}),
    "in": frozenset({FactKind.NUMBER, FactKind.TEXT}),
    "not in": frozenset({FactKind.NUMBER, FactKind.TEXT}),
    "contains": frozenset({FactKind.SET}),
    "not contains": frozenset({FactKind.SET}),
    "exists": frozenset(FactKind),
}
"""Each operator and the kinds of fact it applies to."""


def _show(value: Value) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(map(_show, value)) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


_NEGATIONS = {"!=": "==", "not in": "in", "not contains": "contains"}


def _compare(op: str, fact: FactValue, value: Value) -> bool:
    if op == "exists":
        return (fact is not None) is value
    if op in _NEGATIONS:
        return not _compare(_NEGATIONS[op], fact, value)
    if fact is None:
        return False
    if op == "==":
        return fact == value
    if op == "in":
        return isinstance(value, tuple) and fact in value
    if op == "contains":
        return isinstance(fact, frozenset) and value in fact
    if not isinstance(fact, float) or not isinstance(value, float):
        return False
    return {"<": fact < value, "<=": fact <= value, ">": fact > value, ">=": fact >= value}[op]


@dataclass(frozen=True, slots=True)
class Condition:
    """One fact tested against a value."""

    field: str
    op: str
    value: Value

    def matches(self, facts: Mapping[str, FactValue]) -> bool:
        """Whether a deal with these facts passes the test."""
        return _compare(self.op, facts[self.field], self.value)

    def describe(self) -> str:
        """The test in one line, e.g. `first_discovery_days <= 14`."""
        return f"{self.field} {self.op} {_show(self.value)}"


@dataclass(frozen=True, slots=True)
class AllOf:
    """Every part holds."""

    parts: tuple[Cohort, ...]

    def matches(self, facts: Mapping[str, FactValue]) -> bool:
        """Whether every part matches."""
        return all(part.matches(facts) for part in self.parts)

    def describe(self) -> str:
        """The parts joined by `and`."""
        return " and ".join(f"({part.describe()})" for part in self.parts)


@dataclass(frozen=True, slots=True)
class AnyOf:
    """At least one part holds."""

    parts: tuple[Cohort, ...]

    def matches(self, facts: Mapping[str, FactValue]) -> bool:
        """Whether some part matches."""
        return any(part.matches(facts) for part in self.parts)

    def describe(self) -> str:
        """The parts joined by `or`."""
        return " or ".join(f"({part.describe()})" for part in self.parts)


@dataclass(frozen=True, slots=True)
class NotOf:
    """The part does not hold."""

    part: Cohort

    def matches(self, facts: Mapping[str, FactValue]) -> bool:
        """Whether the part fails."""
        return not self.part.matches(facts)

    def describe(self) -> str:
        """`not (...)`."""
        return f"not ({self.part.describe()})"


Cohort: TypeAlias = Condition | AllOf | AnyOf | NotOf


def _scalar(value: Any, kind: FactKind) -> Scalar | None:
    """The value as the fact's kind, or None if it is not of that kind."""
    if kind is FactKind.FLAG:
        return value if isinstance(value, bool) else None
    if kind is FactKind.NUMBER:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return float(value) if ok else None
    return value if isinstance(value, str) else None


def _value(op: str, raw: Any, kind: FactKind, path: Path, problems: Problems) -> Value | None:
    if op == "exists":
        if not isinstance(raw, bool):
            problems.append(((*path, "value"), "exists takes true or false"))
        return raw if isinstance(raw, bool) else None
    element = FactKind.TEXT if kind is FactKind.SET else kind
    if op in {"in", "not in"}:
        items = [_scalar(item, element) for item in raw] if isinstance(raw, list) else []
        if not items or any(item is None for item in items):
            problems.append(((*path, "value"), f"{op} takes a non-empty list of {element}s"))
            return None
        return tuple(item for item in items if item is not None)
    value = _scalar(raw, element)
    if value is None:
        problems.append(((*path, "value"), f"{op} on this field takes a {element}, got {raw!r}"))
    return value


def _condition(table: Mapping[str, Any], path: Path, problems: Problems) -> Condition | None:
    missing = [key for key in ("field", "op", "value") if key not in table]
    if missing:
        problems.append((path, f"a condition needs field, op and value; missing {missing}"))
        return None
    name, op = str(table["field"]), str(table["op"])
    if name not in FIELDS:
        problems.append(
            ((*path, "field"), f"unknown field {name!r}; valid fields: {', '.join(FIELDS)}")
        )
        return None
    kind = FIELDS[name].kind
    if op not in OPERATORS:
        problems.append(((*path, "op"), f"unknown op {op!r}; valid ops: {', '.join(OPERATORS)}"))
        return None
    if kind not in OPERATORS[op]:
        usable = [each for each, kinds in OPERATORS.items() if kind in kinds]
        reason = f"op {op!r} does not apply to the {kind} field {name!r}; use one of {usable}"
        problems.append(((*path, "op"), reason))
        return None
    value = _value(op, table["value"], kind, path, problems)
    return None if value is None else Condition(name, op, value)


def parse_cohort(raw: Any, path: Path, problems: Problems) -> Cohort | None:
    """Read one cohort table; append (key path, reason) to `problems` and return None if bad."""
    if not isinstance(raw, dict):
        problems.append((path, "a cohort is a table: {field, op, value}, {all}, {any} or {not}"))
        return None
    shapes = [key for key in ("all", "any", "not") if key in raw]
    condition_keys = {"field", "op", "value"} & set(raw)
    unknown = set(raw) - {"all", "any", "not", "field", "op", "value"}
    if unknown or len(shapes) + bool(condition_keys) != 1:
        reason = "give either field, op and value, or exactly one of all, any, not"
        extra = f" (unknown keys {sorted(unknown)})" if unknown else ""
        problems.append((path, reason + extra))
        return None
    if condition_keys:
        return _condition(raw, path, problems)
    shape = shapes[0]
    if shape == "not":
        part = parse_cohort(raw["not"], (*path, "not"), problems)
        return None if part is None else NotOf(part)
    items = raw[shape]
    if not isinstance(items, list) or not items:
        problems.append(((*path, shape), f"{shape} takes a non-empty list of cohorts"))
        return None
    parts = [
        parse_cohort(item, (*path, shape, index), problems) for index, item in enumerate(items)
    ]
    if any(part is None for part in parts):
        return None
    kept = tuple(part for part in parts if part is not None)
    return AllOf(kept) if shape == "all" else AnyOf(kept)
