"""`station gateway`: run the gateway consumer, or one of its actions (see docs/gateway.md).

``station gateway --broker ... --db ...`` runs the consumer; ``station gateway status`` (and
the other actions in ``ACTIONS``) are subcommands, each a module with ``configure(parser)``
and ``run(args) -> int``, imported only when it runs.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import signal
import socket
from pathlib import Path
from types import FrameType
from typing import Protocol, cast

from edge_agent.gateway import web
from edge_agent.gateway.consumer import Gateway, subscriptions
from edge_agent.gateway.intake import Intake
from edge_agent.gateway.store import open_store
from edge_agent.link import LinkSettings, check_transport
from firmware.errors import ConfigError

log = logging.getLogger(__name__)

# A dead instance's session keeps receiving its share of the messages until it expires (the
# stations send those again after their ack timeout); a short expiry ends that soon.
SESSION_EXPIRY_S = 60

# action -> (module, one-line help)
ACTIONS: dict[str, tuple[str, str]] = {
    "status": ("edge_agent.gateway.status", "per station: acknowledged through, gaps, online"),
    "report": ("edge_agent.gateway.report", "the day's counts per station and hour, csv or xlsx"),
    "receive": ("edge_agent.gateway.receipt", "the lab receives boxes: scan a box, then its tubes"),
    "results": ("edge_agent.gateway.lab_import", "lab results: `results import FILE`"),
    "recall": ("edge_agent.gateway.recall_sender", "send the recall list to every station"),
    "export": ("edge_agent.gateway.export", "a day's specimens as FHIR R5 or CSV"),
    "lab": ("edge_agent.gateway.lab_web", "the lab's page: receive boxes, enter one result"),
}


class _Action(Protocol):
    def configure(self, parser: argparse.ArgumentParser) -> None: ...
    def run(self, args: argparse.Namespace) -> int: ...


def _load(name: str) -> _Action:
    return cast(_Action, importlib.import_module(ACTIONS[name][0]))


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--broker", help="mqtts://host:port (or mqtt://); required to run")
    parser.add_argument(
        "--db",
        help="the store: a SQLite file (or sqlite:///path) or a postgresql:// URL; required",
    )
    parser.add_argument("--group", default="gateway", help="shared subscription group")
    parser.add_argument("--client-id", default=f"gateway-{socket.gethostname()}")
    parser.add_argument(
        "--stations",
        type=Path,
        help="the township's stations, one township/station per line; others are rejected",
    )
    parser.add_argument("--ca-file", type=Path)
    parser.add_argument("--cert-file", type=Path)
    parser.add_argument("--key-file", type=Path)
    parser.add_argument("--username")
    parser.add_argument("--password-file", type=Path)
    parser.add_argument("--keepalive", type=int, default=30)
    parser.add_argument(
        "--session-expiry",
        type=int,
        default=SESSION_EXPIRY_S,
        help="seconds the broker keeps this instance's session (and its share) after it dies",
    )
    parser.add_argument(
        "--allow-plaintext", action="store_true", help="accept mqtt:// (development only)"
    )
    web.configure(parser)
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    for name, (_module, help_text) in ACTIONS.items():
        _load(name).configure(sub.add_parser(name, help=help_text, description=help_text))


def settings_from_args(args: argparse.Namespace) -> LinkSettings:
    m = re.fullmatch(r"(mqtts?)://([^/:\s]+)(?::(\d{1,5}))?/?", args.broker or "")
    if m is None:
        raise ConfigError("--broker", ["must look like mqtts://host:port or mqtt://host:port"])
    tls = m.group(1) == "mqtts"
    port = int(m.group(3)) if m.group(3) else (8883 if tls else 1883)
    return LinkSettings(
        host=m.group(2),
        port=port,
        client_id=args.client_id,
        tls=tls,
        allow_plaintext=args.allow_plaintext,
        ca_file=args.ca_file,
        cert_file=args.cert_file,
        key_file=args.key_file,
        username=args.username,
        password_file=args.password_file,
        keepalive_s=args.keepalive,
        session_expiry_s=args.session_expiry,
        subscriptions=subscriptions(args.group),
    )


def read_stations(path: Path) -> frozenset[tuple[str, str]]:
    """A stations file: ``township/station`` per line; blank lines and ``#`` comments skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("--stations", [f"cannot read {path}: {exc}"]) from exc
    found: set[tuple[str, str]] = set()
    problems: list[str] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9_-]{1,64})/([A-Za-z0-9_-]{1,64})", line)
        if m is None:
            problems.append(f"{path}:{n}: {line!r} is not township/station")
        else:
            found.add((m.group(1), m.group(2)))
    if problems:
        raise ConfigError("--stations", problems)
    return frozenset(found)


def run(args: argparse.Namespace) -> int:
    if args.action is not None:
        return _load(args.action).run(args)
    if not args.db:
        raise ConfigError("--db", ["a SQLite file or a postgresql:// URL is required"])
    settings = settings_from_args(args)
    check_transport(settings)
    intake = Intake(read_stations(args.stations) if args.stations else None)
    store = open_store(args.db)
    page = None
    try:
        page = web.from_args(args, store)  # the live page, when --http asks for it
        gateway = Gateway(store, settings, intake=intake)

        def _stop(_signum: int, _frame: FrameType | None) -> None:
            gateway.request_stop(from_signal=True)

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        gateway.run()
        log.info("gateway stopped: %s", gateway.stats.summary())
    finally:
        if page is not None:
            page.close()
        store.close()
    return 0
