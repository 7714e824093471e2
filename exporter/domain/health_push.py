"""Pushed health metrics: the request body types and their conversion into samples."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec

from exporter.domain.health import (
    MAX_METRIC_TYPE,
    MAX_SERVICE,
    Rule,
    check_service,
    check_value,
    to_base,
)
from exporter.domain.health_series import Sample
from exporter.domain.limits import Text, Timestamp

Unit = Literal["s", "ms", "us", "bytes", "kb", "mb", "gb", "ratio", "percent", "count"]
MetricType = Annotated[
    str, msgspec.Meta(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$", max_length=MAX_METRIC_TYPE)
]
# not blank, no NUL: the pattern states check_service's rule in the OpenAPI document too
ServiceName = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=MAX_SERVICE, pattern=r"^\s*[^\s\x00][^\x00]*$"),
]


class Levels(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Warning and critical levels in the metric's unit, the bad side, and the hysteresis.

    Levels are finite in base units, and critical lies beyond warning on the bad side.
    """

    warning: float | None = None
    critical: float | None = None
    direction: Literal["above", "below"] = "above"
    for_: Annotated[int, msgspec.Meta(ge=1, le=1000)] = msgspec.field(default=1, name="for")


class HealthMetricIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One pushed health metric (the seed's ``recordHealthMetric``).

    ``value`` is finite in base units and never negative for a duration (a time unit, or
    metric_type response_time, latency or duration); ``metadata`` nests at most 64 levels.
    """

    service: ServiceName
    metric_type: MetricType
    value: float
    unit: Unit | None = None
    thresholds: Levels | None = None
    metadata: dict[Text, Any] = msgspec.field(default_factory=dict)
    recorded_at: Timestamp | None = None


class InvalidSample(ValueError):
    """A pushed metric that decodes but cannot be a measurement; names the field."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


def to_rule(levels: Levels, unit: str | None) -> Rule:
    """A rule in base units from levels written in ``unit``."""
    warning = None if levels.warning is None else to_base(levels.warning, unit)[0]
    critical = None if levels.critical is None else to_base(levels.critical, unit)[0]
    for level in (warning, critical):
        if level is not None and not math.isfinite(level):
            raise ValueError("levels must be finite numbers")
    return Rule(warning, critical, levels.direction, levels.for_)


def to_sample(item: HealthMetricIn, path: str, now: datetime) -> Sample:
    """Validate one pushed metric and convert it to base units."""
    try:
        check_service(item.service)
    except ValueError as exc:
        raise InvalidSample(f"{path}service", str(exc)) from None
    value, stored_unit = to_base(item.value, item.unit)
    try:
        check_value(item.metric_type, value, stored_unit)
    except ValueError as exc:
        raise InvalidSample(f"{path}value", str(exc)) from None
    rule = None
    if item.thresholds is not None:
        try:
            rule = to_rule(item.thresholds, item.unit)
        except ValueError as exc:
            raise InvalidSample(f"{path}thresholds", str(exc)) from None
    return Sample(
        item.service,
        item.metric_type,
        value,
        stored_unit,
        "push",
        item.recorded_at or now,
        item.metadata,
        rule,
    )


def to_samples(body: HealthMetricIn | list[HealthMetricIn]) -> list[Sample]:
    """Every pushed metric as a sample; the first invalid one raises, naming its index."""
    now = datetime.now(UTC)
    if isinstance(body, HealthMetricIn):
        return [to_sample(body, "", now)]
    return [to_sample(item, f"[{i}].", now) for i, item in enumerate(body)]
