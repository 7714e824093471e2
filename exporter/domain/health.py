"""Health samples: units and their base units, threshold rules, and the status function.

Pure functions and plain dataclasses only: the same rules serve pushed samples, probe results
and host figures, and are unit tested without I/O.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

Status = Literal["healthy", "warning", "critical"]
Direction = Literal["above", "below"]
StoredUnit = Literal["", "s", "bytes", "ratio", "count"]

STATUS_CODE: dict[Status, int] = {"healthy": 0, "warning": 1, "critical": 2}
#: what the overview shows for a service or source in a maintenance window
MAINTENANCE: Literal["maintenance"] = "maintenance"
STATUSES: tuple[Status, ...] = ("healthy", "warning", "critical")
METRIC_TYPE_PATTERN = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
MAX_METRIC_TYPE = 100
MAX_SERVICE = 200

# unit as written by a sender -> (factor to the base unit, the base unit stored)
UNITS: dict[str, tuple[float, StoredUnit]] = {
    "s": (1.0, "s"),
    "ms": (1e-3, "s"),
    "us": (1e-6, "s"),
    "bytes": (1.0, "bytes"),
    # binary multiples, as memory figures are meant in practice (documented in docs/health.md)
    "kb": (1024.0, "bytes"),
    "mb": (1024.0**2, "bytes"),
    "gb": (1024.0**3, "bytes"),
    "ratio": (1.0, "ratio"),
    "percent": (0.01, "ratio"),
    "count": (1.0, "count"),
}

# metric types that are durations: a negative value is a mistake, never a measurement
DURATION_TYPES = frozenset({"response_time", "latency", "duration"})


def worst(statuses: list[Status] | tuple[Status, ...]) -> Status:
    """The most severe status of several (critical > warning > healthy); healthy if none."""
    best: Status = "healthy"
    for status in statuses:
        if STATUS_CODE[status] > STATUS_CODE[best]:
            best = status
    return best


def verdict(services: list[str], alerts: dict[str, int], quality: str) -> Status:
    """The overview's verdict: the worst service, raised by active alerts and data quality.

    An active critical alert makes it critical, an active high one at least warning; the
    data-quality overview's status (``unknown`` when nothing is measured) counts as it is.
    A service in ``maintenance`` raises nothing (the caller leaves out the alerts and
    sources of maintenance windows too).
    """
    found: list[Status] = [s for s in services if s in STATUS_CODE]
    if alerts.get("critical"):
        found.append("critical")
    elif alerts.get("high"):
        found.append("warning")
    if quality == "critical":
        found.append("critical")
    elif quality == "warning":
        found.append("warning")
    return worst(found)


def to_base(value: float, unit: str | None) -> tuple[float, StoredUnit]:
    """Convert ``value`` in ``unit`` to its base unit; ``ValueError`` for an unknown unit."""
    if unit is None or unit == "":
        return value, ""
    try:
        factor, stored = UNITS[unit]
    except KeyError:
        raise ValueError(f"unknown unit {unit!r}; use one of {', '.join(UNITS)}") from None
    return value * factor, stored


def check_value(metric_type: str, value: float, unit: StoredUnit) -> None:
    """Reject values that cannot be a measurement: not finite, or a negative duration."""
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    if value < 0 and (unit == "s" or metric_type in DURATION_TYPES):
        raise ValueError("a duration cannot be negative")


def check_metric_type(metric_type: str) -> None:
    """Metric types become label values and rule names: keep them to a name pattern."""
    if not METRIC_TYPE_PATTERN.match(metric_type) or len(metric_type) > MAX_METRIC_TYPE:
        raise ValueError(f"must match [a-zA-Z_][a-zA-Z0-9_]* and be at most {MAX_METRIC_TYPE} long")


def check_service(service: str) -> None:
    """Service names are free text, but never empty, blank or huge."""
    if not service.strip():
        raise ValueError("must not be empty")
    if len(service) > MAX_SERVICE:
        raise ValueError(f"must be at most {MAX_SERVICE} characters")


@dataclass(frozen=True)
class Rule:
    """Warning and critical levels in base units, which side is bad, and the hysteresis."""

    warning: float | None = None
    critical: float | None = None
    direction: Direction = "above"
    for_: int = 1

    def __post_init__(self) -> None:
        if self.for_ < 1:
            raise ValueError("for must be at least 1")
        for level in (self.warning, self.critical):
            if level is not None and not math.isfinite(level):
                raise ValueError("levels must be finite numbers")
        if self.warning is not None and self.critical is not None:
            w, c = self.warning, self.critical
            if (self.direction == "above" and w > c) or (self.direction == "below" and w < c):
                raise ValueError(f"critical must be beyond warning for direction {self.direction}")

    @property
    def empty(self) -> bool:
        """A rule without levels: every value is healthy."""
        return self.warning is None and self.critical is None


NO_RULE = Rule()


def _beyond(value: float, level: float | None, direction: Direction) -> bool:
    if level is None:
        return False
    return value >= level if direction == "above" else value <= level


def classify(value: float, rule: Rule) -> Status:
    """The status of one value under a rule, without hysteresis (a value at a level counts)."""
    if _beyond(value, rule.critical, rule.direction):
        return "critical"
    if _beyond(value, rule.warning, rule.direction):
        return "warning"
    return "healthy"


@dataclass(frozen=True)
class Track:
    """The hysteresis state of a series: the status shown, and a candidate with its streak."""

    status: Status
    candidate: Status
    streak: int


def first_track(raw: Status) -> Track:
    """A new series shows its first sample's status at once (there is nothing to flap from)."""
    return Track(raw, raw, 0)


def advance(track: Track | None, raw: Status, for_: int) -> Track:
    """The next hysteresis state: the shown status changes after ``for_`` consecutive samples.

    A sample agreeing with the shown status resets any candidate, so one blip never flaps.
    """
    if track is None:
        return first_track(raw)
    if raw == track.status:
        return Track(track.status, raw, 0)
    streak = track.streak + 1 if raw == track.candidate else 1
    if streak >= for_:
        return Track(raw, raw, 0)
    return Track(track.status, raw, streak)


def evaluate(track: Track | None, value: float, rule: Rule) -> Track:
    """Classify a value and advance the hysteresis in one step."""
    return advance(track, classify(value, rule), rule.for_)


# Rules that apply unless the YAML or the API says otherwise.
BUILTIN_RULES: dict[str, Rule] = {
    # a failed probe is critical at once
    "up": Rule(critical=0.5, direction="below"),
    # no matching process is critical at once
    "process_count": Rule(critical=0.5, direction="below"),
}


def mount_metric_type(mount: str) -> str:
    """A metric type for a mount: `/` is `disk_usage_root`, `/var/lib` `disk_usage_var_lib`."""
    cleaned = re.sub(r"[^a-zA-Z0-9_]+", "_", mount).strip("_")
    return f"disk_usage_{cleaned or 'root'}"[:MAX_METRIC_TYPE]
