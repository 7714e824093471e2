"""The command line: ``serve`` (default), ``check-config``, ``migrate`` and ``selftest``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from exporter import __version__
from exporter.banner import Announcement, where
from exporter.config import Config, ConfigError, load_config
from exporter.demo import demo_config
from exporter.log import setup_logging
from exporter.service import (
    ListenError,
    check_listen_address,
    run_main,
    selftest_command,
    serve,
    with_database,
)
from exporter.storage.embedded import default_data_dir, runs_as
from exporter.storage.migrate import migrate_url

log = logging.getLogger("exporter")

COMMANDS = ("serve", "check-config", "migrate", "selftest")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="monitoring-exporter",
        description="Prometheus exporter and Alertmanager bridge backed by PostgreSQL.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command")

    def database_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", help="YAML configuration file [MONITORING_CONFIG]")
        p.add_argument(
            "--database-url", help="libpq URL of the PostgreSQL to use [MONITORING_DATABASE_URL]"
        )
        p.add_argument(
            "--data-dir",
            type=Path,
            help=f"embedded PostgreSQL data directory (default {default_data_dir()})",
        )
        p.add_argument(
            "--log.level",
            dest="log_level",
            default="info",
            choices=["debug", "info", "warning", "error"],
        )
        p.add_argument(
            "--log.format",
            dest="log_format",
            choices=["json", "text"],
            help="json lines, or text for people (default: text on a terminal, else json)",
        )

    serve_p = commands.add_parser("serve", help="run the service (the default)")
    database_flags(serve_p)
    serve_p.add_argument(
        "--web.listen-address",
        dest="listen_address",
        help="HOST:PORT to listen on, default :9810 [MONITORING_LISTEN_ADDRESS]",
    )
    serve_p.add_argument("--demo", action="store_true", help="seed the demo data set")

    check_p = commands.add_parser("check-config", help="validate a configuration file")
    check_p.add_argument("file")

    migrate_p = commands.add_parser(
        "migrate",
        help="apply pending schema migrations, store the retention policy and exit"
        " (as the schema's owner)",
    )
    database_flags(migrate_p)

    selftest_p = commands.add_parser(
        "selftest",
        help="write one of each record in a rolled-back transaction, check NOTIFY and /metrics",
    )
    database_flags(selftest_p)
    return parser


def _load(path: str | None) -> Config:
    return load_config(path or os.environ.get("MONITORING_CONFIG") or None)


def _database_url(args: argparse.Namespace, config: Config) -> str | None:
    return args.database_url or os.environ.get("MONITORING_DATABASE_URL") or config.database.url


def _data_dir(args: argparse.Namespace, config: Config) -> Path:
    if args.data_dir:
        return Path(args.data_dir)
    if config.database.data_dir:
        return Path(config.database.data_dir)
    return default_data_dir()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script and of ``python -m exporter``."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or (
        args_list[0] not in COMMANDS and args_list[0] not in ("-h", "--help", "--version")
    ):
        args_list.insert(0, "serve")
    args = _parser().parse_args(args_list)

    if args.command == "check-config":
        try:
            load_config(args.file)
        except ConfigError as exc:
            for error in exc.errors:
                print(f"{args.file}: {error}", file=sys.stderr)
            return 1
        print(f"{args.file}: ok")
        return 0

    setup_logging(args.log_level, args.log_format)
    try:
        config = _load(args.config)
    except ConfigError as exc:
        for error in exc.errors:
            print(f"config: {error}", file=sys.stderr)
        return 1

    dsn = _database_url(args, config)
    data_dir = _data_dir(args, config)
    if args.command == "migrate":
        schema, timeout = config.database.schema, config.database.connect_timeout.seconds
        return with_database(
            dsn,
            data_dir,
            lambda url: run_main(
                migrate_url(url, schema, config.retention, connect_timeout=timeout)
            ),
        )

    if args.command == "selftest":
        return with_database(dsn, data_dir, lambda url: run_main(selftest_command(config, url)))

    listen = (
        args.listen_address
        or os.environ.get("MONITORING_LISTEN_ADDRESS")
        or (config.web.listen_address)
    )
    # before the embedded database starts: a taken port is one line, with nothing before it
    try:
        check_listen_address(listen)
    except ListenError as exc:
        log.error(str(exc))
        return 1

    def run(url: str) -> int:
        cfg = demo_config(config, url, listen) if args.demo else config
        announcement = Announcement(
            listen, _data(dsn, data_dir), demo=args.demo, api_auth=not cfg.auth.disabled
        )
        return run_main(serve(cfg, url, listen, announcement))

    return with_database(dsn, data_dir, run)


def _data(dsn: str | None, data_dir: Path) -> str:
    """Where the data lives, for the start-up banner."""
    if dsn:
        return where(dsn)
    user = runs_as()
    owner = f", run as system user {user}" if user else ""
    return f"{data_dir} (embedded PostgreSQL{owner})"
