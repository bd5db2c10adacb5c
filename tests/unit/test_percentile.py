"""The one percentile of durations in the core: nearest rank, exact, always one of the times."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from projections.intervals import ZERO, percentile

TIMES = st.lists(st.timedeltas(min_value=ZERO, max_value=timedelta(days=400)), min_size=1)


@given(TIMES, st.integers(min_value=1, max_value=100))
def test_the_percentile_is_the_smallest_time_with_that_share_of_the_times_at_or_below_it(
    times: list[timedelta], percent: int
) -> None:
    chosen = percentile(times, percent)

    assert chosen in times
    assert 100 * sum(time <= chosen for time in times) >= percent * len(times)
    assert 100 * sum(time < chosen for time in times) < percent * len(times)


def test_the_eightieth_percentile_of_ten_days_is_the_eighth_day() -> None:
    days = [timedelta(days=n) for n in range(10, 0, -1)]

    assert percentile(days, 80) == timedelta(days=8)
    assert percentile(days, 100) == timedelta(days=10)
    assert percentile(days, 1) == timedelta(days=1)
