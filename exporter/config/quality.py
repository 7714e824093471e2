"""The ``quality`` section: data sources and the checks run against them."""

from __future__ import annotations

from typing import Literal

import msgspec

from exporter.config.section import Section
from exporter.config.services import NAME_PATTERN
from exporter.config.types import Duration, read_secret

Dimension = Literal["completeness", "accuracy", "freshness", "consistency"]
CheckKind = Literal["completeness", "accuracy", "freshness", "consistency", "custom"]


class Source(Section, frozen=True):
    """A named PostgreSQL data source with its own small pool."""

    dsn: str | None = None
    dsn_env: str | None = None
    dsn_file: str | None = None
    pool_size: int = 2
    statement_timeout: Duration = msgspec.field(default_factory=lambda: Duration(30))
    connect_timeout: Duration = msgspec.field(default_factory=lambda: Duration(5))

    def __post_init__(self) -> None:
        read_secret(self, "dsn", "dsn_env", "dsn_file", required=True)
        if self.pool_size < 1:
            raise ValueError("pool_size: must be at least 1")


class CompareSide(Section, frozen=True):
    """One side of a consistency comparison."""

    source: str
    query: str


class Compare(Section, frozen=True):
    """Two queries whose keys (or single aggregate values) must agree.

    ``keys``: each query returns rows whose first column is the key and whose other columns
    must be equal on both sides. ``value``: each returns one number (a count or a sum) and the
    two must agree within ``tolerance`` (a fraction of the larger one).
    """

    left: CompareSide
    right: CompareSide
    mode: Literal["keys", "value"] = "keys"
    tolerance: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.tolerance <= 1:
            raise ValueError("tolerance: must be a fraction between 0 and 1")


class Levels(Section, frozen=True):
    """Score levels (0-100) below which a measurement is warning or critical."""

    warning: float = 99.0
    critical: float = 95.0

    def __post_init__(self) -> None:
        for name, value in (("warning", self.warning), ("critical", self.critical)):
            if not 0 <= value <= 100:
                raise ValueError(f"{name}: must be between 0 and 100")
        if self.critical > self.warning:
            raise ValueError("critical: must not be above warning")


# Freshness scores fall from 100 (age at warn_after) to 0 (age at error_after): by default a
# freshness check is a warning past warn_after and critical at error_after.
FRESHNESS_LEVELS = Levels(warning=100.0, critical=0.0)
DEFAULT_LEVELS = Levels()


class Check(Section, frozen=True):
    """A data-quality check producing total/valid records and a 0-100 score."""

    name: str
    source: str
    dataset: str
    dimension: Dimension
    table: str | None = None
    query: str | None = None
    columns: list[str] = msgspec.field(default_factory=list)
    valid_when: str | None = None
    column: str | None = None
    allowed: list[str | int | float] | None = None
    min: float | None = None
    max: float | None = None
    timestamp_column: str | None = None
    warn_after: Duration | None = None
    error_after: Duration | None = None
    compare: Compare | None = None
    key_column: str | None = None
    sample_size: int = 5
    interval: Duration = msgspec.field(default_factory=lambda: Duration(300))
    timeout: Duration = msgspec.field(default_factory=lambda: Duration(30))
    levels: Levels | None = None
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not NAME_PATTERN.match(self.name):
            raise ValueError("name: must match [a-zA-Z_][a-zA-Z0-9_]*")
        if self.weight <= 0:
            raise ValueError("weight: must be positive")
        if not self.dataset or len(self.dataset) > 200:
            raise ValueError("dataset: must be 1 to 200 characters")
        if self.interval.seconds < 1:
            raise ValueError("interval: must be at least 1s")
        if self.timeout.seconds <= 0:
            raise ValueError("timeout: must be positive")
        if not 0 <= self.sample_size <= 100:
            raise ValueError("sample_size: must be between 0 and 100")
        self._validate_kind()

    def _validate_kind(self) -> None:
        kind = self.kind
        if kind == "consistency":
            if self.table or self.query:
                raise ValueError("compare: give either compare or table/query, not both")
            return
        if (self.table is None) == (self.query is None):
            raise ValueError("table: give exactly one of table, query (or compare)")
        if kind == "freshness":
            if self.warn_after is None or self.error_after is None:
                raise ValueError("warn_after: freshness needs warn_after and error_after")
            if self.error_after.seconds <= self.warn_after.seconds:
                raise ValueError("error_after: must be longer than warn_after")
        elif kind == "accuracy":
            if (self.allowed is not None or self.min is not None or self.max is not None) and (
                self.column is None
            ):
                raise ValueError("column: allowed, min and max need a column")
            if self.min is not None and self.max is not None and self.min > self.max:
                raise ValueError("min: must not be above max")
        elif kind == "custom" and self.table is not None:
            raise ValueError(
                "table: a check needs columns, valid_when, allowed/min/max, "
                "timestamp_column, compare, or a query returning total and valid"
            )

    @property
    def kind(self) -> CheckKind:
        """What the check measures, from the keys given (a query alone is a custom check)."""
        if self.compare is not None:
            return "consistency"
        if self.timestamp_column is not None:
            return "freshness"
        if self.columns:
            return "completeness"
        if (
            self.valid_when is not None
            or self.allowed is not None
            or self.min is not None
            or self.max is not None
        ):
            return "accuracy"
        return "custom"

    @property
    def effective_levels(self) -> Levels:
        """The levels given, else the defaults of this kind of check."""
        if self.levels is not None:
            return self.levels
        return FRESHNESS_LEVELS if self.kind == "freshness" else DEFAULT_LEVELS


class Quality(Section, frozen=True):
    """Data sources and checks."""

    sources: dict[str, Source] = msgspec.field(default_factory=dict)
    checks: list[Check] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        names: set[str] = set()
        for i, check in enumerate(self.checks):
            if check.name in names:
                raise ValueError(f"checks[{i}].name: duplicate check name {check.name!r}")
            names.add(check.name)
            used = [check.source]
            if check.compare is not None:
                used += [check.compare.left.source, check.compare.right.source]
            for source in used:
                if source not in self.sources:
                    raise ValueError(f"checks[{i}].source: unknown source {source!r}")
