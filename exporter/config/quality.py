"""The ``quality`` section: data sources and the checks run against them."""

from __future__ import annotations

from typing import Literal

import msgspec

from exporter.config.section import Section
from exporter.config.services import NAME_PATTERN
from exporter.config.types import Duration, read_secret

Dimension = Literal["completeness", "accuracy", "freshness", "consistency"]


class Source(Section, frozen=True):
    """A named PostgreSQL data source with its own small pool."""

    dsn: str | None = None
    dsn_env: str | None = None
    dsn_file: str | None = None
    pool_size: int = 2
    statement_timeout: Duration = msgspec.field(default_factory=lambda: Duration(30))

    def __post_init__(self) -> None:
        read_secret(self, "dsn", "dsn_env", "dsn_file", required=True)
        if self.pool_size < 1:
            raise ValueError("pool_size: must be at least 1")


class CompareSide(Section, frozen=True):
    """One side of a consistency comparison."""

    source: str
    query: str


class Compare(Section, frozen=True):
    """Two queries whose keys (or single aggregate values) must agree."""

    left: CompareSide
    right: CompareSide
    mode: Literal["keys", "value"] = "keys"
    tolerance: float = 0.0


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


class Check(Section, frozen=True):
    """A data-quality check producing total/valid records and a 0-100 score."""

    name: str
    source: str
    dataset: str
    dimension: Dimension
    table: str | None = None
    columns: list[str] = msgspec.field(default_factory=list)
    valid_when: str | None = None
    query: str | None = None
    timestamp_column: str | None = None
    warn_after: Duration | None = None
    error_after: Duration | None = None
    compare: Compare | None = None
    interval: Duration = msgspec.field(default_factory=lambda: Duration(300))
    timeout: Duration = msgspec.field(default_factory=lambda: Duration(30))
    levels: Levels = msgspec.field(default_factory=Levels)
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not NAME_PATTERN.match(self.name):
            raise ValueError("name: must match [a-zA-Z_][a-zA-Z0-9_]*")
        if self.weight <= 0:
            raise ValueError("weight: must be positive")


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
