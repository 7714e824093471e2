"""Silences in Alertmanager through its v2 API: one per acknowledged incident."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import aiohttp
import msgspec

log = logging.getLogger(__name__)


class Matcher(msgspec.Struct, frozen=True):
    """An Alertmanager label matcher (we only ever use equality)."""

    name: str
    value: str
    isRegex: bool = False  # noqa: N815 - Alertmanager's field name
    isEqual: bool = True  # noqa: N815


class PostableSilence(msgspec.Struct, frozen=True, rename="camel"):
    """The body of ``POST /api/v2/silences``."""

    matchers: list[Matcher]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str


class SilenceCreated(msgspec.Struct, frozen=True):
    """The answer of ``POST /api/v2/silences``."""

    silenceID: str  # noqa: N815


class ActiveAlert(msgspec.Struct, frozen=True, rename="camel"):
    """An alert as ``GET /api/v2/alerts`` lists it (only what we read)."""

    fingerprint: str
    starts_at: datetime


class SilenceError(Exception):
    """Alertmanager did not create or expire a silence."""


class Silences:
    """An Alertmanager v2 API client for creating and expiring silences."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, timeout: float) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    async def create(
        self, labels: Mapping[str, str], duration: float, created_by: str, comment: str
    ) -> str:
        """Create a silence matching exactly these labels; returns its id."""
        if not labels:
            raise SilenceError("an incident without labels cannot be silenced")
        now = datetime.now(UTC)
        body = PostableSilence(
            matchers=[Matcher(name, value) for name, value in sorted(labels.items())],
            starts_at=now,
            ends_at=now + timedelta(seconds=duration),
            created_by=created_by,
            comment=comment,
        )
        try:
            async with self.session.post(
                f"{self.base_url}/api/v2/silences",
                data=msgspec.json.encode(body),
                headers={"Content-Type": "application/json"},
                timeout=self.timeout,
            ) as resp:
                text = await resp.read()
                if resp.status != 200:
                    raise SilenceError(f"Alertmanager answered {resp.status}: {text[:200]!r}")
                return msgspec.json.decode(text, type=SilenceCreated).silenceID
        except (aiohttp.ClientError, TimeoutError, msgspec.DecodeError) as exc:
            raise SilenceError(f"{type(exc).__name__}: {exc}") from exc

    async def expire(self, silence_id: str) -> None:
        """Expire a silence; one that is already gone counts as expired."""
        try:
            async with self.session.delete(
                f"{self.base_url}/api/v2/silence/{quote(silence_id, safe='')}", timeout=self.timeout
            ) as resp:
                text = await resp.read()
                if resp.status not in (200, 404):
                    raise SilenceError(f"Alertmanager answered {resp.status}: {text[:200]!r}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SilenceError(f"{type(exc).__name__}: {exc}") from exc

    async def active_alerts(self) -> set[tuple[str, datetime]]:
        """(fingerprint, startsAt) of every alert Alertmanager holds as firing, silenced or not.

        Alertmanager sends no resolved notification for a silenced alert (its issue #226), so
        acknowledged incidents are reconciled against this list.
        """
        params = {"active": "true", "silenced": "true", "inhibited": "true", "unprocessed": "true"}
        try:
            async with self.session.get(
                f"{self.base_url}/api/v2/alerts", params=params, timeout=self.timeout
            ) as resp:
                text = await resp.read()
                if resp.status != 200:
                    raise SilenceError(f"Alertmanager answered {resp.status}: {text[:200]!r}")
                alerts = msgspec.json.decode(text, type=list[ActiveAlert])
        except (aiohttp.ClientError, TimeoutError, msgspec.DecodeError) as exc:
            raise SilenceError(f"{type(exc).__name__}: {exc}") from exc
        return {(a.fingerprint, a.starts_at) for a in alerts}
