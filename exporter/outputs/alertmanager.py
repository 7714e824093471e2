"""The Alertmanager v2 API, as the bridge uses it: one client over the members of an HA
cluster (or a single Alertmanager).

Reads and alerts go to every member: each holds its own alerts (Prometheus sends every alert
to each). Silences go to the first member that answers: the cluster gossips them to the
others. Every method raises :class:`AlertmanagerError` when it could not do its work.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import aiohttp
import msgspec

from exporter.domain.alertmanager import Firing, State, parse_time


class Matcher(msgspec.Struct, frozen=True):
    """An Alertmanager label matcher (we only ever use equality)."""

    name: str
    value: str
    isRegex: bool = False  # noqa: N815 - Alertmanager's field name
    isEqual: bool = True  # noqa: N815


class PostableSilence(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True):
    """The body of ``POST /api/v2/silences`` (with ``id``: an update of that silence)."""

    matchers: list[Matcher]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str
    id: str | None = None


class SilenceCreated(msgspec.Struct, frozen=True):
    """The answer of ``POST /api/v2/silences``."""

    silenceID: str  # noqa: N815


class PostableAlert(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True):
    """One alert of ``POST /api/v2/alerts``."""

    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    ends_at: datetime
    generator_url: str | None = msgspec.field(default=None, name="generatorURL")


class _AlertStatus(msgspec.Struct, frozen=True, rename="camel"):
    state: str = "active"
    silenced_by: list[str] = []
    inhibited_by: list[str] = []


class _GettableAlert(msgspec.Struct, frozen=True, rename="camel"):
    fingerprint: str
    starts_at: str
    labels: dict[str, str]
    annotations: dict[str, str] = {}
    generator_url: str = msgspec.field(default="", name="generatorURL")
    status: _AlertStatus = _AlertStatus()


class _Status(msgspec.Struct, frozen=True):
    uptime: datetime


_alerts = msgspec.json.Decoder(list[_GettableAlert])
_status = msgspec.json.Decoder(_Status)
_created = msgspec.json.Decoder(SilenceCreated)
_encode = msgspec.json.Encoder().encode
_STATES: dict[str, State] = {"active": "active", "suppressed": "suppressed"}


class AlertmanagerError(Exception):
    """A call to Alertmanager did not do its work."""


@dataclass(frozen=True, slots=True)
class Listing:
    """One member's alerts, and since when it runs; or why it could not be read."""

    url: str
    alerts: list[Firing] | None = None
    up_since: datetime | None = None
    error: str | None = None


class Alertmanagers:
    """A v2 API client for the members of one Alertmanager cluster."""

    def __init__(self, session: aiohttp.ClientSession, urls: Sequence[str], timeout: float) -> None:
        self.session = session
        self.urls = [url.rstrip("/") for url in urls]
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    async def _call(
        self, method: str, url: str, *, body: Any = None, ok: tuple[int, ...] = (200,)
    ) -> bytes:
        data = None if body is None else _encode(body)
        headers = {"Content-Type": "application/json"} if data is not None else None
        try:
            async with self.session.request(
                method, url, data=data, headers=headers, timeout=self.timeout
            ) as resp:
                text = await resp.read()
                if resp.status not in ok:
                    raise AlertmanagerError(
                        f"{method} {url}: Alertmanager answered {resp.status}: {text[:200]!r}"
                    )
                return text
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise AlertmanagerError(f"{method} {url}: {type(exc).__name__}: {exc}") from exc

    # ------------------------------------------------------------------ alerts
    async def list_alerts(self) -> list[Listing]:
        """Every member's alerts (firing, silenced, inhibited or not), read at once."""
        return list(await asyncio.gather(*(self._listing(url) for url in self.urls)))

    async def _listing(self, url: str) -> Listing:
        try:
            status = _status.decode(await self._call("GET", f"{url}/api/v2/status"))
            alerts = _alerts.decode(await self._call("GET", f"{url}/api/v2/alerts"))
            return Listing(url, [_firing(a) for a in alerts], status.uptime)
        except (AlertmanagerError, msgspec.DecodeError, ValueError) as exc:
            return Listing(url, error=str(exc))

    async def post_alerts(self, alerts: Sequence[PostableAlert]) -> list[str]:
        """Send alerts to every member; the errors of those that did not take them."""
        if not alerts:
            return []
        body = list(alerts)
        results = await asyncio.gather(
            *(self._call("POST", f"{url}/api/v2/alerts", body=body) for url in self.urls),
            return_exceptions=True,
        )
        errors = []
        for result in results:
            if isinstance(result, AlertmanagerError):
                errors.append(str(result))
            elif isinstance(result, BaseException):
                raise result
        return errors

    # ------------------------------------------------------------------ silences
    async def create_silence(
        self,
        matchers: Mapping[str, str],
        starts_at: datetime,
        ends_at: datetime,
        created_by: str,
        comment: str,
        silence_id: str | None = None,
    ) -> str:
        """Create a silence (or update ``silence_id``) matching these labels exactly, through
        the first member that answers; its id (an update may give a new one)."""
        if not matchers:
            raise AlertmanagerError("a silence needs at least one matcher")
        body = PostableSilence(
            [Matcher(name, value) for name, value in sorted(matchers.items())],
            starts_at,
            ends_at,
            created_by,
            comment,
            silence_id,
        )
        errors = []
        for url in self.urls:
            try:
                text = await self._call("POST", f"{url}/api/v2/silences", body=body)
                return _created.decode(text).silenceID
            except (AlertmanagerError, msgspec.DecodeError) as exc:
                errors.append(str(exc))
        raise AlertmanagerError("; ".join(errors))

    async def expire_silence(self, silence_id: str) -> None:
        """Expire a silence through the first member that answers (gone counts as expired)."""
        errors = []
        for url in self.urls:
            try:
                await self._call(
                    "DELETE", f"{url}/api/v2/silence/{quote(silence_id, safe='')}", ok=(200, 404)
                )
                return
            except AlertmanagerError as exc:
                errors.append(str(exc))
        raise AlertmanagerError("; ".join(errors))


def _firing(alert: _GettableAlert) -> Firing:
    return Firing(
        alert.fingerprint,
        parse_time(alert.starts_at),
        alert.labels,
        alert.annotations,
        alert.generator_url or None,
        tuple(sorted(alert.status.silenced_by)),
        tuple(sorted(alert.status.inhibited_by)),
        _STATES.get(alert.status.state, "unprocessed"),
    )
