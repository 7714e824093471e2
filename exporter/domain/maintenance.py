"""Maintenance windows: what they match, when they are in force, and what they put in
maintenance. Pure: the leader's silence upkeep, the overview and the SQL that flags incidents
all follow these rules (a test checks the SQL against them).

A window matches alerts whose labels equal all its matchers (``service``, ``alertname``,
``source`` and any other label). It is in force from ``starts_at`` to ``ends_at``; a
recurring one again every day or week after that, in fixed periods of 24 h or 7 d (UTC, so
a daylight-saving change does not move it), with no occurrence starting after
``repeat_until``. A window with a ``service`` matcher puts that service in maintenance, one
with a ``source`` matcher that data-quality source.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from exporter.domain.limits import LATEST

Recurrence = Literal["daily", "weekly"]
PERIODS: dict[str, timedelta] = {"daily": timedelta(days=1), "weekly": timedelta(days=7)}
#: the matchers with a meaning of their own; any other label name is matched as it is
NAMED = ("service", "alertname", "source")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


@dataclass(frozen=True, slots=True)
class Window:
    """A maintenance window as stored (``deleted`` ones are over)."""

    id: int
    matchers: Mapping[str, str]
    starts_at: datetime
    ends_at: datetime
    recurrence: Recurrence | None = None
    repeat_until: datetime | None = None
    deleted: bool = False

    @property
    def length(self) -> timedelta:
        """How long each occurrence lasts."""
        return self.ends_at - self.starts_at


Occurrence = tuple[datetime, datetime]


def occurrence(window: Window, at: datetime) -> Occurrence | None:
    """The occurrence in force at ``at``, if any."""
    if window.deleted or at < window.starts_at:
        return None
    if window.recurrence is None:
        return (window.starts_at, window.ends_at) if at < window.ends_at else None
    period = PERIODS[window.recurrence]
    start = window.starts_at + period * ((at - window.starts_at) // period)
    if window.repeat_until is not None and start > window.repeat_until:
        return None
    end = _add(start, window.length)
    return (start, end) if at < end else None


def current_or_next(window: Window, at: datetime) -> Occurrence | None:
    """The occurrence in force at ``at``, else the next one; None when none is left."""
    found = occurrence(window, at)
    if found is not None or window.deleted:
        return found
    if at < window.starts_at:
        return (window.starts_at, window.ends_at)
    if window.recurrence is None:
        return None
    period = PERIODS[window.recurrence]
    previous = window.starts_at + period * ((at - window.starts_at) // period)
    if previous > LATEST - period:
        return None
    start = previous + period
    if window.repeat_until is not None and start > window.repeat_until:
        return None
    return (start, _add(start, window.length))


def _add(at: datetime, span: timedelta) -> datetime:
    # the last occurrences of a window near the end of time end with it
    return at + span if at <= LATEST - span else LATEST


def matches(matchers: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Whether every matcher equals the label of that name."""
    return all(labels.get(name) == value for name, value in matchers.items())


def in_force(windows: Iterable[Window], at: datetime) -> list[Window]:
    """The windows in force at ``at``."""
    return [w for w in windows if occurrence(w, at) is not None]


def affected(windows: Iterable[Window], at: datetime) -> tuple[set[str], set[str]]:
    """The services and the data-quality sources in maintenance at ``at``."""
    services: set[str] = set()
    sources: set[str] = set()
    for window in in_force(windows, at):
        if "service" in window.matchers:
            services.add(window.matchers["service"])
        if "source" in window.matchers:
            sources.add(window.matchers["source"])
    return services, sources


def problems(
    matchers: Mapping[str, str],
    starts_at: datetime,
    ends_at: datetime,
    recurrence: Recurrence | None,
    repeat_until: datetime | None,
    longest: timedelta,
) -> list[tuple[str, str]]:
    """Why a new window cannot be stored, as (path, message); empty when it can."""
    found: list[tuple[str, str]] = []
    if not matchers:
        found.append(("matchers", "give at least one matcher (a window cannot match everything)"))
    for name, value in matchers.items():
        if name not in NAMED and not LABEL_NAME.match(name):
            found.append((f"matchers.labels.{name}", "not a label name ([a-zA-Z_][a-zA-Z0-9_]*)"))
        if value == "":
            path = f"matchers.{name}" if name in NAMED else f"matchers.labels.{name}"
            found.append((path, "must not be empty"))
    if ends_at <= starts_at:
        found.append(("ends_at", "must be after starts_at"))
    elif ends_at - starts_at > longest:
        found.append(("ends_at", f"a window lasts at most {_human(longest)}"))
    elif recurrence is not None and ends_at - starts_at > PERIODS[recurrence]:
        found.append(
            ("ends_at", f"a {recurrence} window lasts at most {_human(PERIODS[recurrence])}")
        )
    if repeat_until is not None:
        if recurrence is None:
            found.append(("repeat_until", "only a recurring window repeats"))
        elif repeat_until < starts_at:
            found.append(("repeat_until", "must not be before starts_at"))
    return found


def _human(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0 and seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def silence_work(
    window: Window,
    silence_id: str | None,
    silence_starts_at: datetime | None,
    silence_ends_at: datetime | None,
    at: datetime,
) -> tuple[Literal["create", "expire"], Occurrence | None] | None:
    """What a window's Alertmanager silence needs at ``at``: one for the current (or next)
    occurrence when the silence it has is for another, expiring when the window was
    deleted while its silence lives; None when nothing."""
    live = silence_id is not None and silence_ends_at is not None and silence_ends_at > at
    if window.deleted:
        return ("expire", None) if live else None
    wanted = current_or_next(window, at)
    if wanted is None or (silence_id is not None and silence_starts_at == wanted[0]):
        return None
    return ("create", wanted)
