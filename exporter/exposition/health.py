"""Pre-rendered health families: each series' lines are rendered when it changes, not per scrape.

A scrape joins cached lines; a family's text is rebuilt only when one of its series changed
since the last scrape. The output is the same text format prometheus_client writes (label
values escaped the same way, values formatted as Go does), so it passes ``promtool check
metrics`` and means the same to Prometheus.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator

from exporter.domain.health import STATUS_CODE, Rule
from exporter.domain.health_rules import Key, RuleBook
from exporter.domain.health_series import Series, SeriesKey, SeriesStore


def go_float(value: float) -> str:
    """A sample value as Go (and so prometheus_client) formats it: ``+Inf``, ``1e+06``, ``0.5``."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    text = repr(value)
    dot = text.find(".")
    # Go switches to exponent form sooner than Python does
    if value > 0 and dot > 6:
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return text


def escape_label(value: str) -> str:
    """Escape a label value for the text formats (backslash, double quote, newline)."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def escape_help(text: str) -> str:
    """Escape HELP text (backslash and newline)."""
    return text.replace("\\", r"\\").replace("\n", r"\n")


class Family:
    """One gauge family: its header and a cached line (or lines) per label set."""

    def __init__(self, name: str, documentation: str) -> None:
        self.name = name
        self.header = f"# HELP {name} {escape_help(documentation)}\n# TYPE {name} gauge\n"
        self._lines: dict[object, str] = {}
        self._text: str | None = None

    def set(self, key: object, lines: str) -> None:
        """Replace the lines of one label set (empty text removes it)."""
        if lines:
            if self._lines.get(key) == lines:
                return
            self._lines[key] = lines
        elif self._lines.pop(key, None) is None:
            return
        self._text = None

    def __len__(self) -> int:
        return len(self._lines)

    def __contains__(self, key: object) -> bool:
        return key in self._lines

    def render(self) -> str:
        """The family's text; empty when it has no samples (so no dangling header)."""
        if self._text is None:
            self._text = self.header + "".join(self._lines.values()) if self._lines else ""
        return self._text


class HealthExposition:
    """The ``monitoring_health_*`` and ``monitoring_service_up`` families, kept current.

    Series of per-replica figures (host and process) carry a ``replica`` label; threshold
    lines are per (service, metric_type), the unit a rule applies to.
    """

    def __init__(
        self, store: SeriesStore, rules: RuleBook, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.clock = clock
        self.rules = rules
        self.value = Family(
            "monitoring_health_metric_value",
            "Latest value of a health metric, in base units (seconds, bytes, ratios 0-1).",
        )
        self.status = Family(
            "monitoring_health_status",
            "Status of a health metric: 0 healthy, 1 warning, 2 critical.",
        )
        self.threshold = Family(
            "monitoring_health_threshold",
            "The threshold rule in force for a health metric, in base units.",
        )
        self.up = Family("monitoring_service_up", "Whether the last probe of a service succeeded.")
        self._prefix: dict[object, str] = {}
        self._rules_generation = -1
        # rule keys with live series, and how many (several replicas share a host rule)
        self._live: dict[Key, int] = {}
        store.listen(self.on_change)
        self.refresh_thresholds()

    def _labels(self, key: Key | SeriesKey) -> str:
        prefix = self._prefix.get(key)
        if prefix is None:
            prefix = f'service="{escape_label(key[0])}",metric_type="{escape_label(key[1])}"'
            if len(key) == 3 and key[2]:
                prefix += f',replica="{escape_label(key[2])}"'
            self._prefix[key] = prefix
        return prefix

    def _threshold_lines(self, key: Key, rule: Rule) -> str:
        labels = self._labels(key)
        out = ""
        if rule.warning is not None:
            out += f'{self.threshold.name}{{{labels},level="warning"}} '
            out += go_float(rule.warning) + "\n"
        if rule.critical is not None:
            out += f'{self.threshold.name}{{{labels},level="critical"}} '
            out += go_float(rule.critical) + "\n"
        return out

    def _rule(self, key: Key) -> Rule:
        shared = self.store.get((key[0], key[1], ""))
        pushed = shared.sample.pushed_rule if shared is not None else None
        return self.rules.rule_for(key, pushed)[0]

    def on_change(self, key: SeriesKey, series: Series | None) -> None:
        """Re-render the lines of one series (or drop them when it is gone)."""
        rule_key: Key = (key[0], key[1])
        if series is None:
            self.value.set(key, "")
            self.status.set(key, "")
            self._prefix.pop(key, None)
            left = self._live.get(rule_key, 0) - 1
            if left > 0:
                self._live[rule_key] = left
            else:
                self._live.pop(rule_key, None)
                if rule_key not in self.rules.keys():  # noqa: SIM118 - a method
                    self.threshold.set(rule_key, "")
                    self._prefix.pop(rule_key, None)
            if key[1] == "up" and not key[2]:
                self.up.set(key[0], "")
            return
        if key not in self.value:
            self._live[rule_key] = self._live.get(rule_key, 0) + 1
        labels = self._labels(key)
        value = go_float(series.sample.value)
        self.value.set(key, f"{self.value.name}{{{labels}}} {value}\n")
        self.status.set(key, f"{self.status.name}{{{labels}}} {STATUS_CODE[series.status]}\n")
        self.threshold.set(rule_key, self._threshold_lines(rule_key, self._rule(rule_key)))
        if key[1] == "up" and series.sample.source == "probe" and not key[2]:
            line = f'{self.up.name}{{service="{escape_label(key[0])}"}} {value}\n'
            self.up.set(key[0], line)

    def refresh_thresholds(self) -> None:
        """Re-render every threshold line after the rules changed (rare: a PUT or a reload)."""
        if self._rules_generation == self.rules.generation:
            return
        self._rules_generation = self.rules.generation
        for key in self.rules.touched() | set(self._live):
            self.threshold.set(key, self._threshold_lines(key, self._rule(key)))

    def render_families(self, openmetrics: bool) -> Iterator[str]:
        """The families' text; identical in both formats, since all are plain gauges."""
        self.store.expire(self.clock())
        self.refresh_thresholds()
        for family in (self.value, self.status, self.threshold, self.up):
            yield family.render()
