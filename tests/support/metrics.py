"""Reading an exposition back as numbers, the way a scraper would."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[str, dict[tuple[str, ...], float]]


def samples_by_name(text: str) -> Samples:
    """{sample name: {label values sorted by label name: value}}."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = tuple(v for _, v in sorted(s.labels.items()))
            out.setdefault(s.name, {})[key] = s.value
    return out
