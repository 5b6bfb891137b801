"""`station`: the one command, with a subcommand per job.

Each subcommand lives in the package that owns it, as a module with ``configure(parser)``
and ``run(args) -> int``; this dispatcher imports only the one that runs, so starting the
agent never imports Kivy and provisioning never imports the kiosk.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import Protocol, cast

from firmware.errors import ConfigError, StationError

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "verify-code": ("kiosk_ui.verify_cli", "verify a resident code offline and print the verdict"),
    "config": ("kiosk_ui.config_cli", "check a station configuration file"),
    "selftest": ("hardware_tests.cli", "check each device, storage, clock and broker"),
    "db": (
        "kiosk_ui.db_cli",
        "outbox statistics, the retention purge, salvage of a damaged station database",
    ),
    "kiosk": ("kiosk_ui.kiosk_cli", "the full-screen touch kiosk for residents and samplers"),
    "simulate": ("kiosk_ui.drills.command", "run a drill (scenario) on simulated hardware"),
    "agent": ("edge_agent.cli", "deliver the outbox to the township broker; `status` shows it"),
    "gateway": ("edge_agent.gateway.cli", "township gateway: store events, send acks; `status`"),
    "provision": ("provisioning.cli", "set up, update and roll back stations over SSH"),
}


class _Command(Protocol):
    def configure(self, parser: argparse.ArgumentParser) -> None: ...
    def run(self, args: argparse.Namespace) -> int: ...


def _load(name: str) -> _Command:
    return cast(_Command, importlib.import_module(COMMANDS[name][0]))


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="station", description="Sampling station: kiosk, edge agent, drills, provisioning."
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if only is None or name == only:
            _load(name).configure(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Build only the chosen subcommand's arguments; `station --help` builds them all.
    chosen = next((a for a in argv if a in COMMANDS), None)
    parser = build_parser(chosen)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return _load(args.command).run(args)
    except ConfigError as exc:
        print(f"station {args.command}: {exc}", file=sys.stderr)
        return 2
    except StationError as exc:
        print(f"station {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
