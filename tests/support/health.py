"""Filling a replica's series cache without a database (for exposition tests and benches)."""

from __future__ import annotations

from collections.abc import Iterable

from exporter.domain.health_rules import RuleBook
from exporter.domain.health_series import Sample, Series, SeriesStore, evaluate_batch


def put_samples(
    store: SeriesStore, rules: RuleBook, samples: Iterable[Sample], *, now: float, ttl: float
) -> None:
    """Evaluate samples against the cached state and cache the result, as a commit would."""
    samples = list(samples)
    previous = {
        s.series_key: cached.track
        for s in samples
        if (cached := store.get(s.series_key)) is not None
    }
    evaluated = evaluate_batch(samples, previous, lambda s: rules.rule_for(s.key, s.pushed_rule)[0])
    for e in evaluated:
        current = store.get(e.sample.series_key)
        version = current.version + 1 if current is not None else 1
        store.put(Series(e.sample, e.track, now + ttl, version), now)
