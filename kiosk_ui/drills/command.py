"""``station simulate``: run a drill (shared spec ``scenario.md``) on simulated hardware.

The drill drives the simulated devices through the real code paths: the QR text is rendered
into camera frames and read by the real decoder, temperatures come from the simulated
infrared module over its fake I2C bus, barcodes arrive through the simulated scan gun, and
sampler touches call the kiosk's own actions, the ones its buttons call. The real station
(rules, store, outbox) records everything, and the real edge agent (``station agent``, a
process of its own) delivers it to the broker of the configuration, through a loopback
relay this command can cut to play the gateway going offline.

Headless by default: the kiosk runs without a window. ``--window`` shows the Kivy screens;
``--screenshots DIR`` draws them offscreen and saves one picture per step.

The parts: ``scenario`` (the file format), ``runner`` (the steps), ``relay`` (the link it
cuts), ``agent`` (the agent's process), ``watch`` (``--watch``), ``demo`` (``--make-drills``).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from edge_agent import outbox
from edge_agent.db import open_db
from firmware.config import DEFAULT_CONFIG_PATH, StationConfig, load_config
from firmware.errors import ConfigError
from firmware.hardware import build_hardware
from kiosk_ui.drills import scenario as drill
from kiosk_ui.drills.agent import AgentProcess, agent_config
from kiosk_ui.drills.demo import write_drills
from kiosk_ui.drills.relay import LinkRelay
from kiosk_ui.drills.runner import DrillRunner, Ui
from kiosk_ui.drills.scenario import Scenario
from kiosk_ui.drills.watch import EventWatch
from kiosk_ui.errors import SimulateError
from kiosk_ui.kiosk import Kiosk, build
from kiosk_ui.kiosk_cli import prepare_kivy
from kiosk_ui.workers import LoopThread

T = TypeVar("T")
EXIT_FAILED = 1
EXIT_UNDELIVERED = 3


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG_PATH, help="station configuration file"
    )
    parser.add_argument("--scenario", type=Path, help="the drill (JSON, see docs/kiosk.md)")
    parser.add_argument("--window", action="store_true", help="show the kiosk's screens")
    parser.add_argument(
        "--screenshots", type=Path, metavar="DIR", help="save a picture of the screen per step"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="how long to wait for the agent to deliver every event (default 60)",
    )
    parser.add_argument(
        "--watch", action="store_true", help="print each event as it reaches the broker"
    )
    parser.add_argument(
        "--reset-db",
        action="store_true",
        help="start from an empty station database (deletes storage.path; sim backend only)",
    )
    parser.add_argument(
        "--step-delay",
        type=float,
        default=0.0,
        metavar="S",
        help="pause between steps, to follow a drill in the window",
    )
    parser.add_argument(
        "--make-drills",
        type=Path,
        metavar="DIR",
        help="write the demo drills into DIR (their issuer's public keys beside DIR), then exit",
    )


def _prepare_db(config: StationConfig, reset: bool) -> None:
    path = config.storage.path
    if not path.exists():
        return
    if reset:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    db = open_db(path)
    try:
        tables = {r[0] for r in db.conn.execute("SELECT name FROM sqlite_master")}
        used = "outbox" in tables and outbox.stats(db).last_seq > 0
    finally:
        db.conn.close()
    if used:
        raise SimulateError(
            f"{path} already holds a station's records; a drill starts from an empty database "
            "(use --reset-db, or point storage.path at a new file)"
        )


@contextlib.contextmanager
def _agent(config: StationConfig, workdir: Path) -> Iterator[tuple[LinkRelay, AgentProcess]]:
    if config.broker.tls:
        raise SimulateError("drills run against a plaintext loopback broker (mqtt://)")
    relay = LinkRelay(config.broker.host, config.broker.port)
    relay.start()
    agent = AgentProcess(
        agent_config(config, f"mqtt://127.0.0.1:{relay.port}", workdir), workdir / "agent.log"
    )
    try:
        agent.start()
        yield relay, agent
    finally:
        try:
            agent.stop()
        finally:
            relay.stop()


def run(args: argparse.Namespace) -> int:
    if args.make_drills is not None:
        for p in write_drills(args.make_drills):
            print(p)
        return 0
    if args.scenario is None:
        raise ConfigError("station simulate", ["--scenario FILE is required"])
    config = load_config(args.config)
    if config.hardware.backend != "sim":
        raise ConfigError(
            str(args.config), ["hardware.backend: a drill runs on simulated hardware ('sim')"]
        )
    scenario = drill.load(args.scenario)
    _prepare_db(config, args.reset_db)
    if args.screenshots is not None:
        args.screenshots.mkdir(parents=True, exist_ok=True)
    print(f"drill: {scenario.name} ({len(scenario.steps)} steps)")
    with tempfile.TemporaryDirectory(prefix="station-drill-") as tmp:
        workdir = Path(tmp)
        watch = EventWatch(config) if args.watch else None
        if watch is not None:
            watch.start()
        try:
            with _agent(config, workdir) as (relay, agent):
                code = _run_kiosk(config, scenario, relay, agent, args)
        finally:
            if watch is not None:
                time.sleep(0.3)
                watch.stop()
        if code != 0 and (workdir / "agent.log").exists():
            print(
                "agent log (last lines):\n"
                + AgentProcess(workdir, workdir / "agent.log").log_tail()
            )
    return code


def _run_kiosk(
    config: StationConfig,
    scenario: Scenario,
    relay: LinkRelay,
    agent: AgentProcess,
    args: argparse.Namespace,
) -> int:
    hardware = build_hardware(config)
    if args.window or args.screenshots is not None:
        prepare_kivy(window=args.window)
        # Kivy reads its settings from the environment when first imported: only now.
        from kiosk_ui.screens.running import run_with_app  # noqa: PLC0415

        return run_with_app(
            config,
            hardware,
            lambda kiosk, ui: _drive(kiosk, ui, scenario, relay=relay, agent=agent, args=args),
            window=args.window,
        )
    with build(config, hardware=hardware) as core:
        return _drive(core.kiosk, _LoopUi(core.loop), scenario, relay=relay, agent=agent, args=args)


class _LoopUi:
    """A drill without screens: the kiosk's calls run on its core loop."""

    def __init__(self, loop: LoopThread) -> None:
        self.loop = loop

    def call(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        return self.loop.call(fn, timeout)

    def screenshot(self, path: Path) -> None:
        raise SimulateError("screenshots need the screens (run with --screenshots or --window)")


def _drive(
    kiosk: Kiosk,
    ui: Ui,
    scenario: Scenario,
    *,
    relay: LinkRelay,
    agent: AgentProcess,
    args: argparse.Namespace,
) -> int:
    config = kiosk.config
    runner = DrillRunner(
        kiosk,
        ui,
        relay,
        config.storage.path,
        screenshots=args.screenshots,
        step_delay=args.step_delay,
    )
    try:
        failure = runner.run(scenario)
        if failure is not None:
            print(f"FAILED {failure}", file=sys.stderr)
        else:
            print(f"all {len(scenario.steps)} steps held")
        relay.restore()
        started = time.monotonic()
        done, left = runner.wait_delivered(args.timeout)
        if not done:
            alive = "running" if agent.alive() else "not running"
            print(
                f"TIMEOUT after {args.timeout:.0f} s: {left} events not delivered to "
                f"{config.broker.url} (agent {alive})",
                file=sys.stderr,
            )
            return EXIT_FAILED if failure is not None else EXIT_UNDELIVERED
        last = runner.last_seq()
        print(f"agent delivered all {last} events in {time.monotonic() - started:.1f} s")
        return EXIT_FAILED if failure is not None else 0
    finally:
        runner.close()


def main() -> None:  # pragma: no cover - `python -m kiosk_ui.drills.command`
    parser = argparse.ArgumentParser(prog="station simulate")
    configure(parser)
    raise SystemExit(run(parser.parse_args()))


if __name__ == "__main__":
    main()
