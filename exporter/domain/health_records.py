"""The shapes of health data the API takes and returns (they also describe it in OpenAPI)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from exporter.domain.health import Status
from exporter.domain.health_push import HealthMetricIn, MetricType, ServiceName, Unit
from exporter.domain.limits import Version


class HealthMetric(msgspec.Struct, frozen=True):
    """A stored health sample, with its table's columns."""

    id: int
    service_name: str
    metric_type: str
    value: float
    unit: str
    status: str
    warning_threshold: float | None
    critical_threshold: float | None
    direction: str | None
    source: str
    #: the replica that measured a host or process figure ("" for everything else)
    replica: str
    metadata: dict[str, Any]
    recorded_at: datetime
    created_at: datetime


class HealthMetricList(msgspec.Struct, frozen=True):
    """The stored samples of an array push, in order."""

    items: list[HealthMetric]


class ThresholdIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A rule for ``PUT /api/v1/thresholds/{service}/{metric_type}``; levels in ``unit``.

    Levels are finite in base units, and critical lies beyond warning on the bad side.
    """

    warning: float | None = None
    critical: float | None = None
    direction: Literal["above", "below"] = "above"
    for_: Annotated[int, msgspec.Meta(ge=1, le=1000)] = msgspec.field(default=1, name="for")
    unit: Unit | None = None
    # optimistic concurrency: only replace the stored rule if it is at this version
    expect_version: Version | None = None


class ThresholdPath(msgspec.Struct, frozen=True):
    """The path of ``/api/v1/thresholds/{service}/{metric_type}``."""

    service: ServiceName
    metric_type: MetricType


class ThresholdOut(msgspec.Struct, frozen=True, kw_only=True):
    """A rule in force, in base units, and where it comes from."""

    service: str
    metric_type: str
    warning: float | None
    critical: float | None
    direction: str
    for_: int = msgspec.field(name="for")
    origin: str
    version: int | None = None
    updated_at: datetime | None = None


class ThresholdList(msgspec.Struct, frozen=True):
    """Every rule in force."""

    items: list[ThresholdOut]
    next_cursor: str | None = None


class ServiceStatus(msgspec.Struct, frozen=True):
    """The worst status of a service's metrics (``maintenance`` while a maintenance window
    holds the service), and each metric's status."""

    service: str
    status: Status | Literal["maintenance"]
    metrics: dict[str, Status]


class QualitySummary(msgspec.Struct, frozen=True):
    """The data-quality overview in brief: the cross-source average (0-100) and its status."""

    average_score: float | None
    status: str
    sources: int


class MaintenanceSummary(msgspec.Struct, frozen=True):
    """What maintenance windows in force now hold: services, data-quality sources (both left
    out of the verdict), and the windows."""

    services: list[str]
    sources: list[str]
    windows: list[int]


class Overview(msgspec.Struct, frozen=True):
    """The overview: verdict, services, active alerts by severity (without those opened in a
    maintenance window in force), data quality (without sources in maintenance)."""

    status: str
    services: list[ServiceStatus]
    alerts: dict[str, int]
    data_quality: QualitySummary
    generated_at: datetime
    maintenance: MaintenanceSummary = MaintenanceSummary([], [], [])


PushBody = HealthMetricIn | Annotated[list[HealthMetricIn], msgspec.Meta(min_length=1)]
