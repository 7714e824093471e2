"""The latency sketch: its error bound (a property), merging, and the summary window."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.domain.performance_log import summary_window
from exporter.domain.sketch import GAMMA, RELATIVE_ACCURACY, ZERO_KEY, Sketch, key, representative

# the bound, and a hair for the last bits of a float (ln and exp are correctly rounded to
# within an ulp, not exactly)
BOUND = RELATIVE_ACCURACY * (1 + 1e-9)


def percentile_cont(values: list[float], q: float) -> float:
    """PostgreSQL's percentile_cont: interpolation between the ranks around q * (n - 1)."""
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (pos - lo) * (ordered[hi] - ordered[lo])


def close(estimate: float, exact: float) -> bool:
    return abs(estimate - exact) <= BOUND * abs(exact)


durations = st.one_of(
    st.just(0.0),
    st.floats(min_value=0.0, max_value=1e12, allow_nan=False, allow_infinity=False),
    st.floats(min_value=0.01, max_value=60_000.0),  # where latencies live
)


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(durations, min_size=1, max_size=300),
    qs=st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=5),
)
def test_every_quantile_is_within_one_percent_of_percentile_cont(
    values: list[float], qs: list[float]
) -> None:
    sketch = Sketch.of(values)
    qs = [*qs, 0.5, 0.95, 0.99]
    for q, estimate in zip(qs, sketch.quantiles(qs), strict=True):
        exact = percentile_cont(values, q)
        assert close(estimate, exact), (q, estimate, exact)


@settings(max_examples=200, deadline=None)
@given(parts=st.lists(st.lists(durations, max_size=50), min_size=1, max_size=6))
def test_merged_parts_are_the_sketch_of_the_whole(parts: list[list[float]]) -> None:
    whole = Sketch.of(v for part in parts for v in part)
    merged = Sketch()
    for part in parts:
        merged.merge(Sketch.of(part))
    assert merged.counts == whole.counts and merged.n == whole.n
    assert (merged.min, merged.max) == (whole.min, whole.max)
    if whole.n:
        assert merged.quantiles([0.5, 0.99]) == whole.quantiles([0.5, 0.99])


@settings(max_examples=500, deadline=None)
@given(st.floats(min_value=5e-324, max_value=1e12))
def test_a_bucket_representative_is_within_the_bound_of_its_members(ms: float) -> None:
    assert close(representative(key(ms)), ms)


def test_bucket_edges_and_zero() -> None:
    assert key(0.0) == ZERO_KEY and representative(ZERO_KEY) == 0.0
    assert key(1.0) == 0 and key(GAMMA) == 1 and key(GAMMA * 1.000001) == 2
    # the stored form is sparse and ordered
    sketch = Sketch.of([5.0, 0.0, 5.0, 1000.0])
    keys, counts = sketch.arrays()
    assert keys == sorted(keys) and counts == [1, 2, 1] and sketch.n == 4
    assert sketch.quantile(0.0) == 0.0 and sketch.quantile(1.0) == 1000.0
    assert math.isnan(Sketch().quantile(0.5))


def test_summary_window_widens_only_where_the_detail_has_expired() -> None:
    now = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)
    raw, minutes = timedelta(days=14), timedelta(days=35)

    def window(since: datetime, until: datetime) -> tuple[datetime, datetime]:
        return summary_window(since, until, now=now, raw_retention=raw, minute_retention=minutes)

    recent = (datetime(2026, 6, 29, 10, 20, 30, tzinfo=UTC), now)
    assert window(*recent) == recent
    # raw records gone: whole minutes; minute rollups gone too: whole hours
    since, until = (
        datetime(2026, 6, 1, 10, 20, 30, tzinfo=UTC),
        datetime(2026, 6, 2, 8, 5, 1, tzinfo=UTC),
    )
    assert window(since, until) == (
        datetime(2026, 6, 1, 10, 20, tzinfo=UTC),
        datetime(2026, 6, 2, 8, 6, tzinfo=UTC),
    )
    since, until = (
        datetime(2026, 5, 1, 10, 20, 30, tzinfo=UTC),
        datetime(2026, 5, 2, 8, 5, 1, tzinfo=UTC),
    )
    assert window(since, until) == (
        datetime(2026, 5, 1, 10, tzinfo=UTC),
        datetime(2026, 5, 2, 9, tzinfo=UTC),
    )
    aligned = (datetime(2026, 5, 1, 10, tzinfo=UTC), datetime(2026, 5, 1, 11, tzinfo=UTC))
    assert window(*aligned) == aligned
