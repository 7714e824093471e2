"""The in-memory state of the health series: latest value, status track, TTL and the cap."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from exporter.domain.health import Rule, Status, StoredUnit, Track, evaluate
from exporter.domain.health_rules import Key, RuleBook

Source = Literal["probe", "push", "host"]


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

    @property
    def key(self) -> Key:
        """(service, metric_type)."""
        return (self.service, self.metric_type)


@dataclass(frozen=True)
class Series:
    """The latest state of one (service, metric_type)."""

    sample: Sample
    rule: Rule
    track: Track
    touched: float  # monotonic seconds of the last update, for the TTL

    @property
    def status(self) -> Status:
        """The status shown (after hysteresis)."""
        return self.track.status


@dataclass(frozen=True)
class Evaluated:
    """A sample with the rule applied to it and the series state it leads to."""

    sample: Sample
    series: Series

    @property
    def status(self) -> Status:
        """The status recorded with the sample."""
        return self.series.status


ChangeListener = Callable[[Key, Series | None], None]


class SeriesStore:
    """Series by key; pushed ones expire after ``ttl`` seconds; at most ``cap`` of them.

    Evaluation is separate from applying, so the caller can commit the samples to storage
    first and only then make them visible (a rejected write never changes the state).
    """

    def __init__(self, rules: RuleBook, *, ttl: float, cap: int) -> None:
        self.rules = rules
        self.ttl = ttl
        self.cap = cap
        self._series: dict[Key, Series] = {}
        self._pushed: OrderedDict[Key, float] = OrderedDict()
        self._listeners: list[ChangeListener] = []

    def listen(self, listener: ChangeListener) -> None:
        """Call ``listener(key, series or None)`` after every change."""
        self._listeners.append(listener)

    def __len__(self) -> int:
        return len(self._series)

    def get(self, key: Key) -> Series | None:
        """The current series of a key."""
        return self._series.get(key)

    def items(self) -> Iterator[tuple[Key, Series]]:
        """Every current series."""
        return iter(list(self._series.items()))

    def evaluate(
        self,
        samples: Iterable[Sample],
        now: float,
        overlay: dict[Key, Series] | None = None,
    ) -> list[Evaluated]:
        """Rule and hysteresis for each sample, in order, seeing earlier ones of the same batch.

        ``overlay`` carries series evaluated earlier in the same batch (and is updated); a push
        that would take the family past the cap raises SeriesLimit and changes nothing.
        """
        overlay = overlay if overlay is not None else {}
        samples = list(samples)
        if any(s.source == "push" and self._is_new(s.key, overlay) for s in samples):
            self.expire(now)
            fresh = {s.key for s in samples if self._is_new(s.key, overlay)}
            existing = len(self._series) + sum(1 for k in overlay if k not in self._series)
            if existing + len(fresh) > self.cap:
                raise SeriesLimit(self.cap, existing, len(fresh))
        out: list[Evaluated] = []
        for sample in samples:
            previous = overlay.get(sample.key) or self._series.get(sample.key)
            rule, _ = self.rules.rule_for(sample.key, sample.pushed_rule)
            track = evaluate(previous.track if previous else None, sample.value, rule)
            series = Series(sample, rule, track, now)
            overlay[sample.key] = series
            out.append(Evaluated(sample, series))
        return out

    def _is_new(self, key: Key, overlay: dict[Key, Series]) -> bool:
        return key not in self._series and key not in overlay

    def apply(self, evaluated: Iterable[Evaluated]) -> None:
        """Make evaluated samples the current state (after they were committed)."""
        for item in evaluated:
            key = item.sample.key
            self._series[key] = item.series
            if item.sample.source == "push":
                self._pushed[key] = item.series.touched
                self._pushed.move_to_end(key)
            self._notify(key, item.series)

    def expire(self, now: float) -> int:
        """Drop pushed series not updated for ``ttl`` seconds; returns how many."""
        dropped = 0
        while self._pushed:
            key, touched = next(iter(self._pushed.items()))
            if touched + self.ttl > now:
                break
            del self._pushed[key]
            series = self._series.get(key)
            # a probe or host sample may have taken over the key since; keep that one
            if series is not None and series.sample.source == "push":
                del self._series[key]
                self._notify(key, None)
                dropped += 1
        return dropped

    def _notify(self, key: Key, series: Series | None) -> None:
        for listener in self._listeners:
            listener(key, series)
