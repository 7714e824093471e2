"""Quality checks: the SQL each kind of check runs, and turning its rows into a measurement.

Check SQL comes from the operator's configuration: table and column names are quoted as
identifiers, ``valid_when`` and ``query`` are the operator's own SQL, and allowed values and
ranges travel as ``$n`` parameters. Nothing pushed through the API ever reaches this module.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from exporter.config.quality import Check
from exporter.domain import quality as q

# (source name, sql, args, timeout) -> (column names, rows)
Fetch = Callable[
    [str, str, Sequence[Any], float], Awaitable[tuple[list[str], list[tuple[Any, ...]]]]
]


class CheckFailed(Exception):
    """The check could not produce a measurement (its rows had the wrong shape)."""


@dataclass(frozen=True, slots=True)
class Measurement:
    """What one run of a check found."""

    total: int | None
    valid: int | None
    score: float | None
    issues: list[q.Issue] = field(default_factory=list)


def quote_ident(name: str) -> str:
    """An identifier quoted for PostgreSQL (``a"b`` → ``"a""b"``)."""
    return '"' + name.replace('"', '""') + '"'


def quote_table(name: str) -> str:
    """``schema.table`` (or ``table``) quoted part by part; names are taken literally."""
    return ".".join(quote_ident(part) for part in name.split("."))


def relation(check: Check) -> str:
    """The FROM item of a table or query check."""
    if check.table is not None:
        return f"{quote_table(check.table)} AS src"
    return f"({check.query}) AS src"


@dataclass(frozen=True, slots=True)
class Plan:
    """The statements of a table or query check: counts, then failing keys to sample."""

    counts: str
    args: tuple[Any, ...]
    rules: tuple[str, ...]
    sample: str | None


def _filled(column: str) -> str:
    col = quote_ident(column)
    return f"({col} IS NOT NULL AND btrim({col}::text) <> '')"


def plan(check: Check) -> Plan:
    """The SQL of a completeness, accuracy or custom check."""
    src = relation(check)
    args: list[Any] = []
    if check.kind == "completeness":
        conditions = [_filled(c) for c in check.columns]
        rules = tuple(check.columns)
    elif check.kind == "accuracy":
        conditions, names = [], []
        if check.valid_when is not None:
            conditions.append(f"COALESCE(({check.valid_when}), false)")
            names.append(check.valid_when)
        if check.column is not None:
            col = quote_ident(check.column)
            if check.allowed is not None:
                args.append([str(v) for v in check.allowed])
                conditions.append(f"COALESCE({col}::text = ANY(${len(args)}::text[]), false)")
                names.append(f"{check.column} in allowed values")
            if check.min is not None:
                args.append(check.min)
                conditions.append(f"COALESCE({col} >= ${len(args)}::double precision, false)")
                names.append(f"{check.column} >= {check.min:g}")
            if check.max is not None:
                args.append(check.max)
                conditions.append(f"COALESCE({col} <= ${len(args)}::double precision, false)")
                names.append(f"{check.column} <= {check.max:g}")
        rules = tuple(names)
    else:
        return Plan(f"SELECT * FROM {src}", (), (), None)
    all_ok = " AND ".join(conditions)
    per_rule = ", ".join(
        f"count(*) FILTER (WHERE NOT {c}) AS f{i}" for i, c in enumerate(conditions)
    )
    counts = (
        f"SELECT count(*) AS total, count(*) FILTER (WHERE {all_ok}) AS valid, {per_rule} "
        f"FROM {src}"
    )
    sample = None
    if check.key_column is not None and check.sample_size > 0:
        key = quote_ident(check.key_column)
        sample = (
            f"SELECT {key}::text AS failing_key FROM {src} WHERE NOT ({all_ok}) "
            f"ORDER BY {key} LIMIT {int(check.sample_size)}"
        )
    return Plan(counts, tuple(args), rules, sample)


def freshness_sql(check: Check) -> str:
    """The newest timestamp and its age in seconds, as the source's clock sees it."""
    assert check.timestamp_column is not None
    ts = quote_ident(check.timestamp_column)
    return (
        f"SELECT max({ts})::timestamptz AS newest, "
        f"extract(epoch FROM now() - max({ts})::timestamptz)::float8 AS age FROM {relation(check)}"
    )


async def run_check(check: Check, fetch: Fetch) -> Measurement:
    """Run one check to a measurement; raise on any failure (the caller reports it)."""
    timeout = check.timeout.seconds
    if check.kind == "freshness":
        return await _freshness(check, fetch, timeout)
    if check.kind == "consistency":
        return await _consistency(check, fetch, timeout)
    if check.kind == "custom":
        return await _custom(check, fetch, timeout)
    p = plan(check)
    _, rows = await fetch(check.source, p.counts, p.args, timeout)
    total, valid, *failing = rows[0]
    issues: list[q.Issue] = []
    for rule, count in zip(p.rules, failing, strict=True):
        if count:
            issues.append(
                q.missing_values(rule, count)
                if check.kind == "completeness"
                else q.failed_rule(rule, count)
            )
    if p.sample is not None and valid < total:
        _, keys = await fetch(check.source, p.sample, p.args, timeout)
        issues.append(q.sample_keys(check.key_column or "", [k[0] for k in keys]))
    if total == 0:
        issues.append(q.no_records())
    return Measurement(total, valid, q.score_of(total, valid), issues)


async def _freshness(check: Check, fetch: Fetch, timeout: float) -> Measurement:
    assert check.warn_after is not None
    assert check.error_after is not None
    _, rows = await fetch(check.source, freshness_sql(check), (), timeout)
    newest, age = rows[0]
    if newest is None:
        return Measurement(None, None, None, [q.no_records("no rows with a timestamp")])
    warn, error = check.warn_after.seconds, check.error_after.seconds
    score = q.freshness_score(age, warn, error)
    issues = [q.stale(age, _as_datetime(newest), warn, error)] if age > warn else []
    return Measurement(None, None, score, issues)


def _as_datetime(value: Any) -> datetime:
    if not isinstance(value, datetime):
        raise CheckFailed(f"timestamp column returned {type(value).__name__}, not a timestamp")
    return value


async def _custom(check: Check, fetch: Fetch, timeout: float) -> Measurement:
    columns, rows = await fetch(check.source, check.query or "", (), timeout)
    if "total" not in columns or "valid" not in columns:
        raise CheckFailed("a custom query must return columns named total and valid")
    if len(rows) != 1:
        raise CheckFailed(f"a custom query must return one row, not {len(rows)}")
    total = _count(rows[0][columns.index("total")], "total")
    valid = _count(rows[0][columns.index("valid")], "valid")
    try:
        score = q.score_of(total, valid)
    except ValueError as exc:
        raise CheckFailed(f"{exc} (total={total}, valid={valid})") from None
    issues: list[q.Issue] = []
    if total == 0:
        issues.append(q.no_records())
    elif valid < total:
        issues.append(q.failed_rule("query", total - valid))
    return Measurement(total, valid, score, issues)


async def _consistency(check: Check, fetch: Fetch, timeout: float) -> Measurement:
    compare = check.compare
    assert compare is not None
    (_, left), (_, right) = await asyncio.gather(
        fetch(compare.left.source, compare.left.query, (), timeout),
        fetch(compare.right.source, compare.right.query, (), timeout),
    )
    if compare.mode == "value":
        a, b = _single_number(left, "left"), _single_number(right, "right")
        score = q.value_agreement(a, b, compare.tolerance)
        mismatch = [] if score == 100 else [q.value_mismatch(a, b, compare.tolerance)]
        return Measurement(None, None, score, mismatch)
    lmap = {row[0]: row[1:] for row in left}
    rmap = {row[0]: row[1:] for row in right}
    only_left = _sorted(k for k in lmap if k not in rmap)
    only_right = _sorted(k for k in rmap if k not in lmap)
    differ = _sorted(k for k in lmap if k in rmap and lmap[k] != rmap[k])
    total = len(lmap.keys() | rmap.keys())
    valid = total - len(only_left) - len(only_right) - len(differ)
    n = check.sample_size
    issues: list[q.Issue] = []
    for kind, keys in (
        ("missing_in_right", only_left),
        ("missing_in_left", only_right),
        ("values_differ", differ),
    ):
        if keys:
            issues.append(q.key_mismatch(kind, len(keys), [_plain(k) for k in keys[:n]]))
    if total == 0:
        issues.append(q.no_records("both sides returned no rows"))
    return Measurement(total, valid, q.score_of(total, valid), issues)


def _count(value: Any, name: str) -> int:
    """An integer count (a numeric with no fraction is fine), else the check fails."""
    if isinstance(value, int | Decimal) and not isinstance(value, bool) and value == int(value):
        return int(value)
    raise CheckFailed(f"{name} must be a whole number, not {value!r}")


def _sorted(keys: Iterable[Any]) -> list[Any]:
    """Keys in their natural order (numbers numerically), else by their text."""
    items = list(keys)
    try:
        return sorted(items)
    except TypeError:
        return sorted(items, key=str)


def _single_number(rows: list[tuple[Any, ...]], side: str) -> float:
    if len(rows) != 1 or len(rows[0]) != 1:
        raise CheckFailed(f"the {side} query must return one row with one column")
    value = rows[0][0]
    if value is None:
        return 0.0
    try:
        return float(value)
    except (TypeError, ValueError):
        raise CheckFailed(f"the {side} query returned {value!r}, not a number") from None


def _plain(key: Any) -> Any:
    """A key as JSON can carry it."""
    return key if isinstance(key, int | str | float) and not isinstance(key, bool) else str(key)
