"""Load YAML into a :class:`Config`, collecting every error with its location."""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from typing import Any

import msgspec
import yaml

from exporter.config.schema import Config
from exporter.config.types import dec_hook


class ConfigError(Exception):
    """Every problem of a configuration, each as ``location: message``."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


_TYPE_WORDS = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "bool": "a boolean",
    "array": "a list",
    "object": "a mapping",
    "null": "null",
}
_AT = re.compile(r" - at `\$(.*)`$")
_EXPECTED = re.compile(r"^Expected `([^`]+)`, got `([^`]+)`")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _words(kind: str) -> str:
    parts = [_TYPE_WORDS.get(p.strip(), p.strip()) for p in kind.split("|")]
    return " or ".join(parts)


def _message(exc: msgspec.ValidationError, path: str) -> str:
    text = str(exc)
    at = _AT.search(text)
    if at:
        text = text[: at.start()]
        sub = at.group(1)
        path = path + sub if sub.startswith("[") or not path else f"{path}{sub}"
        path = path.lstrip(".")
    expected = _EXPECTED.match(text)
    if expected:
        text = f"expected {_words(expected.group(1))}, got {_words(expected.group(2))}"
    else:
        # ValueErrors from __post_init__ say "key: message" so the location can name the key
        field, sep, rest = text.partition(": ")
        if sep and re.fullmatch(r"[a-z_][a-z0-9_]*(\[\d+\])?(\.[a-z_]+)*", field):
            path, text = _join(path, field), rest
        text = text[:1].lower() + text[1:]
    return f"{path or '(top level)'}: {text}"


def _is_struct(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, msgspec.Struct)


def _check(value: Any, tp: Any, path: str, errors: list[str]) -> None:
    """Validate piece by piece so that every error is found, not just the first."""
    origin = typing.get_origin(tp)
    if _is_struct(tp):
        if not isinstance(value, dict):
            errors.append(f"{path or '(top level)'}: expected a mapping")
            return
        before = len(errors)
        fields = msgspec.structs.fields(tp)
        known = {f.encode_name: f for f in fields}
        for key in value:
            if key not in known:
                errors.append(f"{_join(path, str(key))}: unknown key")
        for f in fields:
            if f.encode_name in value:
                _check(value[f.encode_name], f.type, _join(path, f.encode_name), errors)
            elif f.required:
                errors.append(f"{_join(path, f.encode_name)}: required key is missing")
        if len(errors) == before:
            try:
                msgspec.convert(value, tp, dec_hook=dec_hook)
            except msgspec.ValidationError as exc:
                errors.append(_message(exc, path))
        return
    if origin is list and isinstance(value, list):
        (item,) = typing.get_args(tp)
        for i, v in enumerate(value):
            _check(v, item, f"{path}[{i}]", errors)
        return
    if origin is dict and isinstance(value, dict):
        _, item = typing.get_args(tp)
        for k, v in value.items():
            if not isinstance(k, str):
                errors.append(f"{_join(path, str(k))}: keys must be strings")
            else:
                _check(v, item, _join(path, k), errors)
        return
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return
        structs = [a for a in args if _is_struct(a)]
        if len(structs) == 1 and isinstance(value, dict):
            _check(value, structs[0], path, errors)
            return
    try:
        msgspec.convert(value, tp, dec_hook=dec_hook)
    except msgspec.ValidationError as exc:
        errors.append(_message(exc, path))


def parse_config(data: Any) -> Config:
    """Turn already-parsed YAML data into a Config, or raise ConfigError with every problem."""
    if data is None:
        data = {}
    errors: list[str] = []
    _check(data, Config, "", errors)
    if errors:
        raise ConfigError(errors)
    return msgspec.convert(data, Config, dec_hook=dec_hook)


def load_config(path: str | Path | None) -> Config:
    """Read a YAML file (or nothing, for all defaults) into a Config."""
    if path is None:
        return Config()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{where}: invalid YAML: {problem}"]) from None
    return parse_config(data)
