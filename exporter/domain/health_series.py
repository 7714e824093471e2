"""Health series: samples, the hysteresis a batch of samples leads to, and the replica's cache.

The state of a series (latest value, status, hysteresis) is PostgreSQL's: it is computed here,
by ``evaluate_batch``, inside the transaction that stores the samples, from the state the
transaction locked. ``SeriesStore`` is a replica's cache of that state, kept current from the
database; it never decides anything on its own.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from exporter.domain.health import Rule, Status, StoredUnit, Track, evaluate
from exporter.domain.health_rules import Key, Override, RuleBook, rule_in_force

Source = Literal["probe", "push", "host"]
#: (service, metric type, replica); replica is "" except for per-replica host/process figures
SeriesKey = tuple[str, str, str]


class SeriesLimit(Exception):
    """A push would create more label sets than the family cap allows."""

    def __init__(self, cap: int, current: int, new: int) -> None:
        super().__init__(
            f"the push would create {new} new series, but {current} of at most {cap} exist"
        )
        self.cap = cap


@dataclass(frozen=True)
class Sample:
    """One measurement in base units, from a probe, a push or the host."""

    service: str
    metric_type: str
    value: float
    unit: StoredUnit
    source: Source
    recorded_at: datetime
    metadata: dict[str, Any] = field(default_factory=dict)
    pushed_rule: Rule | None = None
    replica: str = ""

    @property
    def key(self) -> Key:
        """(service, metric_type): what a rule applies to."""
        return (self.service, self.metric_type)

    @property
    def series_key(self) -> SeriesKey:
        """(service, metric_type, replica): which series the sample belongs to."""
        return (self.service, self.metric_type, self.replica)


@dataclass(frozen=True)
class Evaluated:
    """A sample with the rule applied to it and the hysteresis state it leads to."""

    sample: Sample
    rule: Rule
    track: Track

    @property
    def status(self) -> Status:
        """The status recorded with the sample (after hysteresis)."""
        return self.track.status


def evaluate_batch(
    samples: Iterable[Sample],
    previous: Mapping[SeriesKey, Track | None],
    rule_of: Callable[[Sample], Rule],
) -> list[Evaluated]:
    """Rule and hysteresis for each sample, in order, each seeing the ones before it.

    ``previous`` holds the stored state of the batch's series (None or absent: a new series,
    or one that expired, which starts afresh).
    """
    tracks: dict[SeriesKey, Track | None] = dict(previous)
    out: list[Evaluated] = []
    for sample in samples:
        rule = rule_of(sample)
        track = evaluate(tracks.get(sample.series_key), sample.value, rule)
        tracks[sample.series_key] = track
        out.append(Evaluated(sample, rule, track))
    return out


def last_per_series(evaluated: Iterable[Evaluated]) -> list[Evaluated]:
    """The last evaluated sample of each series, in first-seen order."""
    last: dict[SeriesKey, Evaluated] = {}
    for item in evaluated:
        last[item.sample.series_key] = item
    return list(last.values())


@dataclass(frozen=True)
class Series:
    """The stored state of one series, as a replica caches it."""

    sample: Sample
    track: Track
    #: Unix time after which the series is no longer exported
    expires_at: float
    #: increases with every stored change of this series
    version: int

    @property
    def status(self) -> Status:
        """The status shown (after hysteresis)."""
        return self.track.status

    @property
    def key(self) -> SeriesKey:
        """The series' key."""
        return self.sample.series_key


ChangeListener = Callable[[SeriesKey, Series | None], None]


class SeriesStore:
    """A replica's cache of the live series; listeners hear every change."""

    def __init__(self) -> None:
        self._series: dict[SeriesKey, Series] = {}
        self._listeners: list[ChangeListener] = []
        # (expires_at, key) of every put; entries of replaced series are skipped when popped,
        # so expiring costs a scrape nothing while nothing is due
        self._expiry: list[tuple[float, SeriesKey]] = []

    def listen(self, listener: ChangeListener) -> None:
        """Call ``listener(key, series or None)`` after every change."""
        self._listeners.append(listener)

    def __len__(self) -> int:
        return len(self._series)

    def get(self, key: SeriesKey) -> Series | None:
        """The cached series of a key."""
        return self._series.get(key)

    def items(self) -> Iterator[tuple[SeriesKey, Series]]:
        """Every cached series."""
        return iter(list(self._series.items()))

    def put(self, series: Series, now: float) -> bool:
        """Cache a stored series unless a newer version is cached; an expired one is dropped."""
        key = series.key
        current = self._series.get(key)
        if current is not None and current.version > series.version:
            return False
        if series.expires_at <= now:
            self.drop(key)
            return False
        if current == series:
            return False
        self._set(series)
        return True

    def _set(self, series: Series) -> None:
        self._series[series.key] = series
        heapq.heappush(self._expiry, (series.expires_at, series.key))
        if len(self._expiry) > 4 * len(self._series) + 64:
            self._expiry = [(s.expires_at, k) for k, s in self._series.items()]
            heapq.heapify(self._expiry)
        self._notify(series.key, series)

    def drop(self, key: SeriesKey) -> None:
        """Forget a series."""
        if self._series.pop(key, None) is not None:
            self._notify(key, None)

    def replace_all(self, series: Iterable[Series], now: float) -> None:
        """Make the cache exactly ``series`` (after a full read of the table)."""
        fresh = {s.key: s for s in series if s.expires_at > now}
        for key in [k for k in self._series if k not in fresh]:
            self.drop(key)
        for item in fresh.values():
            if self._series.get(item.key) != item:
                self._set(item)

    def expire(self, now: float) -> int:
        """Drop series past their expiry; returns how many."""
        dropped = 0
        while self._expiry and self._expiry[0][0] <= now:
            _, key = heapq.heappop(self._expiry)
            series = self._series.get(key)
            if series is not None and series.expires_at <= now:
                self.drop(key)
                dropped += 1
        return dropped

    def _notify(self, key: SeriesKey, series: Series | None) -> None:
        for listener in self._listeners:
            listener(key, series)


@dataclass(frozen=True)
class Stored:
    """What a transaction found for a batch: the live state of its series, the stored rules
    for its keys, and (only when the batch creates series) how many live series exist."""

    tracks: Mapping[SeriesKey, Track]
    overrides: Mapping[Key, Override]
    live: int | None


@dataclass(frozen=True)
class Plan:
    """What a batch of pushes does: per push its evaluated samples, or the cap it hit."""

    outcomes: list[list[Evaluated] | SeriesLimit]

    @property
    def evaluated(self) -> list[Evaluated]:
        """Every admitted sample, in order."""
        return [e for o in self.outcomes if not isinstance(o, SeriesLimit) for e in o]


def plan_pushes(
    pushes: Iterable[Iterable[Sample]],
    stored: Stored,
    rules: RuleBook,
    cap: int | None,
) -> Plan:
    """Admit pushes in order while the series cap allows, and evaluate the admitted ones.

    A stored rule read by the same transaction wins over the replica's cached one, so a rule
    set on one replica applies to the next sample whichever replica receives it. ``cap`` None
    means the batch is not capped (scheduled probes and host figures).
    """
    live = stored.live or 0
    seen: set[SeriesKey] = set(stored.tracks)
    tracks: dict[SeriesKey, Track | None] = dict(stored.tracks)
    outcomes: list[list[Evaluated] | SeriesLimit] = []

    def rule_of(sample: Sample) -> Rule:
        override = stored.overrides.get(sample.key)
        if override is not None:
            return rule_in_force(override, sample.pushed_rule, rules, sample.key)
        # the transaction read every stored rule of the batch's keys: none means none
        return rules.fallback(sample.key, sample.pushed_rule)[0]

    for push in pushes:
        samples = list(push)
        fresh = {s.series_key for s in samples if s.series_key not in seen}
        if cap is not None and fresh and live + len(fresh) > cap:
            outcomes.append(SeriesLimit(cap, live, len(fresh)))
            continue
        live += len(fresh)
        seen |= fresh
        evaluated = evaluate_batch(samples, tracks, rule_of)
        for item in evaluated:
            tracks[item.sample.series_key] = item.track
        outcomes.append(evaluated)
    return Plan(outcomes)
