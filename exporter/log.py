"""Logs on stderr: JSON lines for machines, or text for people (the default on a terminal)."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, Literal

import msgspec

LogFormat = Literal["json", "text"]

# Attributes every LogRecord has; anything else came in through ``extra=`` and is logged.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
#: an ``extra`` key holding lines a text log prints as they are (the start-up banner)
BANNER = "banner"
# Loggers of libraries whose INFO is chatter for us: their INFO records are logged as DEBUG.
_CHATTY = ("pgserver",)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {
        key: value
        for key, value in record.__dict__.items()
        if key not in _STANDARD and not key.startswith("_") and key != BANNER
    }


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(_fields(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _encoder.encode(entry).decode()


class TextFormatter(logging.Formatter):
    """``12:00:01 info  message  key=value ...`` in local time; a banner as its own lines."""

    def format(self, record: logging.LogRecord) -> str:
        banner = record.__dict__.get(BANNER)
        if banner:
            return "\n".join(banner)
        clock = time.strftime("%H:%M:%S", time.localtime(record.created))
        line = f"{clock} {record.levelname.lower():<7} {record.getMessage()}"
        fields = " ".join(f"{k}={_text(v)}" for k, v in _fields(record).items())
        if fields:
            line += f"  {fields}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else _encoder.encode(value).decode()
    return repr(text) if (" " in text or not text) and isinstance(value, str) else text


def _default(obj: Any) -> Any:
    return str(obj)


_encoder = msgspec.json.Encoder(enc_hook=_default)


class _Demote(logging.Filter):
    """Log a chatty library's INFO as DEBUG (shown only with --log.level debug)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


_demote = _Demote()


def default_format() -> LogFormat:
    """Text when a person watches stderr, JSON when something collects it."""
    return "text" if sys.stderr.isatty() else "json"


def setup_logging(level: str = "info", fmt: LogFormat | None = None) -> None:
    """Send every log record, and Python's warnings, to stderr in one format."""
    handler = logging.StreamHandler(sys.stderr)
    chosen = fmt or default_format()
    handler.setFormatter(TextFormatter() if chosen == "text" else JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # a library's warnings.warn becomes a record in the same format, not a bare stderr line
    logging.captureWarnings(True)
    # aiohttp's access log is replaced by our own per-request line
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    for name in _CHATTY:
        logging.getLogger(name).removeFilter(_demote)
        logging.getLogger(name).addFilter(_demote)
