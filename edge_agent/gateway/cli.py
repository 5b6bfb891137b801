"""`station gateway`: the reference gateway consumer (see docs/edge-agent.md)."""

from __future__ import annotations

import argparse
import re
import signal
import socket
from pathlib import Path
from types import FrameType

from edge_agent.gateway import Gateway, open_store
from edge_agent.link import LinkSettings
from firmware.errors import ConfigError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--broker", required=True, help="mqtts://host:port (or mqtt://)")
    parser.add_argument("--db", type=Path, required=True, help="the consumer's SQLite file")
    parser.add_argument("--group", default="gateway", help="shared subscription group")
    parser.add_argument("--client-id", default=f"gateway-{socket.gethostname()}")
    parser.add_argument("--ca-file", type=Path)
    parser.add_argument("--cert-file", type=Path)
    parser.add_argument("--key-file", type=Path)
    parser.add_argument("--username")
    parser.add_argument("--password-file", type=Path)
    parser.add_argument("--keepalive", type=int, default=30)
    parser.add_argument(
        "--allow-plaintext", action="store_true", help="accept mqtt:// (development only)"
    )


def settings_from_args(args: argparse.Namespace) -> LinkSettings:
    m = re.fullmatch(r"(mqtts?)://([^/:\s]+)(?::(\d{1,5}))?/?", args.broker)
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
        subscriptions=((f"$share/{args.group}/sampling/+/+/events", 1),),
    )


def run(args: argparse.Namespace) -> int:
    gateway = Gateway(open_store(args.db), settings_from_args(args))

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        gateway.request_stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    gateway.run()
    return 0
