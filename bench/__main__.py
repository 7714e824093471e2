"""Run named benchmarks: ``python -m bench [NAME ...] [--rounds N] [--check]``.

Each benchmark is a module ``bench/<name>.py`` with ``async def run(rounds: int) ->
list[Figure]``; it measures its baselines in the same process run, so ratios compare like
with like on whatever machine runs them.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import pkgutil
import platform
import sys
import time
from pathlib import Path

import bench
from bench.harness import Figure

RESULTS = Path(__file__).parent / "results"


def available() -> list[str]:
    """Names of the benchmark modules a bare ``python -m bench`` runs (modules with
    ``OPT_IN = True``, such as the 10-million-row one, run only when named)."""
    return sorted(
        m.name
        for m in pkgutil.iter_modules(bench.__path__)
        if m.name not in ("harness",)
        and not m.name.startswith("_")
        and not getattr(importlib.import_module(f"bench.{m.name}"), "OPT_IN", False)
    )


def fmt(value: float | None) -> str:
    """A number for the table."""
    if value is None:
        return "-"
    return f"{value:,.4g}"


def main() -> int:
    """Run the benchmarks and print a table; with --check, exit 1 if a target was missed."""
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default all: {available()})")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per measurement (median)")
    parser.add_argument("--check", action="store_true", help="exit 1 if any target is missed")
    args = parser.parse_args()
    names = args.names or available()
    figures: list[tuple[str, Figure]] = []
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        started = time.perf_counter()
        for figure in asyncio.run(module.run(args.rounds)):
            figures.append((name, figure))
        print(f"# {name}: {time.perf_counter() - started:.1f} s", file=sys.stderr)

    print(f"{'benchmark':<22} {'figure':<44} {'value':>12} {'unit':<8} {'ratio':>8}  target")
    for name, f in figures:
        met = "" if f.met is None else (" ok" if f.met else " MISSED")
        print(
            f"{name:<22} {f.name:<44} {fmt(f.value):>12} {f.unit:<8} {fmt(f.ratio):>8}  "
            f"{f.target}{met}"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(
        json.dumps(
            {
                "machine": platform.platform(),
                "python": platform.python_version(),
                "rounds": args.rounds,
                "figures": [{"benchmark": n, **f.__dict__, "ratio": f.ratio} for n, f in figures],
            },
            indent=2,
        )
    )
    missed = [f for _, f in figures if f.met is False]
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
