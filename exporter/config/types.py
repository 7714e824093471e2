"""Value types shared by configuration sections: durations, levels and secrets."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import msgspec

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(text: str) -> float:
    """Parse a Prometheus-style duration (``500ms``, ``15s``, ``1h30m``) into seconds."""
    text = text.strip()
    pos, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"invalid duration {text!r} (use e.g. 500ms, 15s, 5m, 2h, 30d)")
    return total


class Duration:
    """A non-negative span of time, written ``15s`` or as a number of seconds."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = float(seconds)

    def __repr__(self) -> str:
        return f"Duration({self.seconds!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Duration) and other.seconds == self.seconds

    def __hash__(self) -> int:
        return hash(self.seconds)


class Level:
    """A threshold level: a plain number, or a duration that is converted to seconds."""

    __slots__ = ("value",)

    def __init__(self, value: float) -> None:
        self.value = float(value)

    def __repr__(self) -> str:
        return f"Level({self.value!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Level) and other.value == self.value

    def __hash__(self) -> int:
        return hash(self.value)


def _number(obj: Any) -> float | None:
    if isinstance(obj, bool):
        return None
    if isinstance(obj, int | float):
        return float(obj)
    return None


def dec_hook(tp: type, obj: Any) -> Any:
    """Decode the custom value types for msgspec."""
    if tp is Duration:
        seconds = _number(obj)
        if seconds is None:
            if not isinstance(obj, str):
                raise TypeError("expected a duration such as 15s, or a number of seconds")
            seconds = parse_duration(obj)
        if seconds < 0:
            raise ValueError("a duration cannot be negative")
        return Duration(seconds)
    if tp is Level:
        value = _number(obj)
        if value is None:
            if not isinstance(obj, str):
                raise TypeError("expected a number")
            try:
                value = parse_duration(obj)
            except ValueError:
                raise TypeError("expected a number") from None
        return Level(value)
    raise NotImplementedError(f"no decoder for {tp!r}")


def read_secret(
    owner: msgspec.Struct, field: str, env_field: str, file_field: str, *, required: bool
) -> str | None:
    """Resolve a secret given inline, from an environment variable or from a file.

    The resolved value is stored back into ``field`` so the rest of the program reads one place.
    Raises ``ValueError("<field>: <message>")`` so the loader can name the exact key.
    """
    inline: str | None = getattr(owner, field)
    env: str | None = getattr(owner, env_field)
    file: str | None = getattr(owner, file_field)
    given = [name for name, v in ((field, inline), (env_field, env), (file_field, file)) if v]
    if len(given) > 1:
        raise ValueError(f"{given[1]}: give only one of {field}, {env_field}, {file_field}")
    value = inline
    if env:
        value = os.environ.get(env)
        if value is None:
            raise ValueError(f"{env_field}: environment variable {env} is not set")
    elif file:
        try:
            value = Path(file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"{file_field}: cannot read {file}: {exc.strerror}") from None
    if required and not value:
        raise ValueError(f"{field}: one of {field}, {env_field}, {file_field} is required")
    msgspec.structs.force_setattr(owner, field, value)
    return value
