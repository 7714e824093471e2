"""A mergeable latency sketch with bounded relative error (the DDSketch mapping).

A duration ``x > 0`` falls in bucket ``k = ceil(log(x) / log(gamma))``, which holds
``(gamma**(k-1), gamma**k]``; with ``gamma = (1 + a) / (1 - a)`` the bucket's representative
``2 * gamma**k / (gamma + 1)`` lies within ``a`` (relative) of every value in it. Zero
durations have their own key. Two sketches merge by adding their counts per key, so minute
sketches add up to hours and hours to any window, and the error bound holds for every
quantile of the merged whole (Masson, Rim, Lee: "DDSketch", VLDB 2019).

Written here rather than taken from the ``ddsketch`` package: the same mapping must be
computed inside PostgreSQL (migration 9's ``performance_sketch_key``), so the one formula,
its constants and the quantile rule are kept where both sides can be checked against each
other (tests/test_domain_sketch.py, tests/storage/test_rollups.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

#: the relative error bound of every quantile
RELATIVE_ACCURACY = 0.01
GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
LN_GAMMA = math.log(GAMMA)  # 0.020000666706669435, the literal in migration 9
#: the key of zero durations (below every other key)
ZERO_KEY = -(2**31)


def key(ms: float) -> int:
    """The bucket of a duration (any non-negative finite number)."""
    if ms <= 0.0:
        return ZERO_KEY
    return math.ceil(math.log(ms) / LN_GAMMA)


def representative(k: int) -> float:
    """The value standing for every duration in bucket ``k`` (within the error bound)."""
    if k == ZERO_KEY:
        return 0.0
    return 2.0 * math.exp(k * LN_GAMMA) / (GAMMA + 1.0)


@dataclass(slots=True)
class Sketch:
    """Counts per bucket key, with the exact count, sum, min and max beside them."""

    counts: dict[int, int] = field(default_factory=dict)
    n: int = 0
    sum: float = 0.0
    min: float = math.inf
    max: float = -math.inf

    @classmethod
    def of(cls, durations: Iterable[float]) -> Sketch:
        """The sketch of some durations."""
        sketch = cls()
        for ms in durations:
            sketch.add(ms)
        return sketch

    def add(self, ms: float, count: int = 1) -> None:
        """Count one duration (``count`` times)."""
        k = key(ms)
        self.counts[k] = self.counts.get(k, 0) + count
        self.n += count
        self.sum += ms * count
        self.min = min(self.min, ms)
        self.max = max(self.max, ms)

    def add_buckets(
        self, keys: Sequence[int], counts: Sequence[int], *, total: float, lo: float, hi: float
    ) -> None:
        """Merge a stored sketch: its keys and counts (parallel), sum, min and max."""
        mine = self.counts
        for k, c in zip(keys, counts, strict=True):
            mine[k] = mine.get(k, 0) + c
        self.n += sum(counts)
        self.sum += total
        self.min = min(self.min, lo)
        self.max = max(self.max, hi)

    def merge(self, other: Sketch) -> None:
        """Add another sketch into this one."""
        keys = list(other.counts)
        self.add_buckets(
            keys, [other.counts[k] for k in keys], total=other.sum, lo=other.min, hi=other.max
        )

    def arrays(self) -> tuple[list[int], list[int]]:
        """(keys, counts) in key order: the stored, sparse form."""
        keys = sorted(self.counts)
        return keys, [self.counts[k] for k in keys]

    def at_rank(self, rank: int) -> float:
        """The estimate of the value of 0-based ``rank`` in sorted order, within [min, max]."""
        if not 0 <= rank < self.n:
            raise IndexError(rank)
        seen = 0
        for k in sorted(self.counts):
            seen += self.counts[k]
            if seen > rank:
                # clamping to the exact extremes only moves the estimate towards the truth
                return min(max(representative(k), self.min), self.max)
        raise AssertionError("counts do not add up to n")  # pragma: no cover

    def quantile(self, q: float) -> float:
        """The q-quantile (0 <= q <= 1) the way PostgreSQL's ``percentile_cont`` defines it
        (linear interpolation between the ranks around ``q * (n - 1)``), within
        ``RELATIVE_ACCURACY`` of the exact one: each rank's estimate is, and interpolation
        keeps a relative bound."""
        return self.quantiles((q,))[0]

    def quantiles(self, qs: Sequence[float]) -> list[float]:
        """Several quantiles in one pass over the buckets (``qs`` in any order)."""
        if self.n == 0:
            return [math.nan for _ in qs]
        wanted: set[int] = set()
        positions = []
        for q in qs:
            if not 0.0 <= q <= 1.0:
                raise ValueError(f"quantile {q} is not between 0 and 1")
            pos = q * (self.n - 1)
            lo = math.floor(pos)
            hi = min(lo + 1, self.n - 1)
            positions.append((pos, lo, hi))
            wanted |= {lo, hi}
        values = self._ranks(sorted(wanted))
        out = []
        for pos, lo, hi in positions:
            low, high = values[lo], values[hi]
            out.append(low + (pos - lo) * (high - low))
        return out

    def _ranks(self, ranks: list[int]) -> dict[int, float]:
        """Estimates of several ranks (ascending) in one walk over the keys."""
        out: dict[int, float] = {}
        i, seen = 0, 0
        for k in sorted(self.counts):
            seen += self.counts[k]
            while i < len(ranks) and ranks[i] < seen:
                out[ranks[i]] = min(max(representative(k), self.min), self.max)
                i += 1
            if i == len(ranks):
                break
        return out
