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
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent import outbox
from edge_agent.db import open_db
from firmware.config import DEFAULT_CONFIG_PATH, StationConfig, load_config
from firmware.errors import ConfigError, StationError
from firmware.hardware import SimDevices, build_hardware
from firmware.thermometer import DEFAULT_ADDRESS
from kiosk_ui.core.flow import State
from kiosk_ui.core.rules import RuleViolation
from kiosk_ui.drills import scenario as drill
from kiosk_ui.drills.demo import write_drills
from kiosk_ui.drills.scenario import (
    Expect,
    Gateway,
    ManualId,
    Scan,
    Scenario,
    Show,
    Step,
    ThermometerState,
    Touch,
    Wait,
)
from kiosk_ui.kiosk import PROBE_EVERY_S, Kiosk, build
from kiosk_ui.kiosk_cli import prepare_kivy
from kiosk_ui.workers import LoopThread

log = logging.getLogger(__name__)

SETTLE_TIMEOUT_S = 15.0
SETTLED = frozenset(
    {
        State.RESULT,
        State.WAIT,
        State.ISOLATION,
        State.STAFF,
        State.FAULT,
        State.MANUAL_TEMPERATURE,
    }
)
EXIT_FAILED = 1
EXIT_UNDELIVERED = 3


class SimulateError(StationError):
    """The drill could not be set up (not the drill failing: that is a step's failure)."""


class StepFailed(StationError):
    def __init__(self, index: int, step: Step, why: str) -> None:
        self.index = index
        self.step = step
        self.why = why
        super().__init__(f"step {index + 1} (steps[{index}]) {_describe(step)}: {why}")


def _describe(step: Step) -> str:
    if isinstance(step, Show):
        return f"show {step.text[:24]}{'...' if len(step.text) > 24 else ''}"
    if isinstance(step, Scan):
        return f"scan {step.text}"
    if isinstance(step, Touch):
        return f"touch {step.action}"
    if isinstance(step, ManualId):
        return "id ******"
    if isinstance(step, Wait):
        return f"wait {step.seconds}"
    if isinstance(step, Gateway):
        return f"gateway {'online' if step.online else 'offline'}"
    if isinstance(step, ThermometerState):
        return f"thermometer {'ok' if step.ok else 'fault'}"
    return "expect"


# -- the link to the broker, which a drill can cut -------------------------------------------


class LinkRelay:
    """A TCP relay on loopback between the agent and the broker; ``cut()`` is the outage.

    While cut, open connections are closed and new ones are accepted and closed at once,
    as when the 4G link of a tent drops.
    """

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = int(self._listener.getsockname()[1])
        self._stop = threading.Event()
        self._online = threading.Event()
        self._online.set()
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        t = threading.Thread(target=self._accept, name="link-relay", daemon=True)
        t.start()
        self._threads.append(t)

    def cut(self) -> None:
        self._online.clear()
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for a, b in pairs:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
        log.info("gateway link cut")

    def restore(self) -> None:
        self._online.set()
        log.info("gateway link restored")

    def stop(self, timeout: float = 3.0) -> None:
        self._stop.set()
        self.cut()
        with contextlib.suppress(OSError):
            self._listener.close()
        for t in self._threads:
            t.join(timeout)
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            raise SimulateError(f"relay threads did not stop: {', '.join(alive)}")

    def _accept(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self._online.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=2.0)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            t = threading.Thread(
                target=self._pump, args=(client, upstream), name="link-pump", daemon=True
            )
            t.start()
            self._threads = [x for x in self._threads if x.is_alive()] + [t]

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        sel = selectors.DefaultSelector()
        a.setblocking(False)
        b.setblocking(False)
        sel.register(a, selectors.EVENT_READ, b)
        sel.register(b, selectors.EVENT_READ, a)
        try:
            while not self._stop.is_set() and self._online.is_set():
                for key, _ in sel.select(0.2):
                    src: socket.socket = key.fileobj  # type: ignore[assignment]
                    dst: socket.socket = key.data
                    data = src.recv(65536)
                    if not data:
                        return
                    dst.setblocking(True)
                    dst.sendall(data)
                    dst.setblocking(False)
        except OSError:
            return
        finally:
            sel.close()
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.close()


# -- the agent process ------------------------------------------------------------------------


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(str(v), ensure_ascii=False)


def to_toml(data: dict[str, Any], prefix: str = "") -> str:
    """A configuration as TOML (plain values and nested tables; None values left out)."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict | None)]
    text = "\n".join(lines) + ("\n" if lines else "")
    for k, v in data.items():
        if isinstance(v, dict):
            text += f"\n[{prefix}{k}]\n" + to_toml(v, f"{prefix}{k}.")
    return text


def agent_config(config: StationConfig, broker_url: str, directory: Path) -> Path:
    """The station's configuration with the broker address replaced (the relay)."""
    data = config.model_dump(mode="json")
    data["broker"]["url"] = broker_url
    data["broker"]["allow_plaintext"] = True
    path = directory / "agent.toml"
    path.write_text(to_toml(data), encoding="utf-8")
    load_config(path)  # what the agent will read must be valid
    return path


class AgentProcess:
    """``station agent`` in a process of its own, as on a station."""

    def __init__(self, config_path: Path, log_path: Path) -> None:
        self.config_path = config_path
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kiosk_ui.cli", "agent", "--config", str(self.config_path)],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=str(Path(__file__).resolve().parents[2]),
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def log_tail(self, lines: int = 15) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


# -- watching the broker ----------------------------------------------------------------------


class EventWatch:
    """Subscribes to the station's events topic and prints each event as it arrives."""

    def __init__(self, config: StationConfig, out: Callable[[str], None] = print) -> None:
        self.config = config
        self.out = out
        self.received: list[dict[str, Any]] = []
        self._client: Any = None
        self._lock = threading.Lock()

    def start(self) -> None:
        b = self.config.broker
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"drill-watch-{os.getpid()}")
        if b.tls:
            client.tls_set(
                ca_certs=str(b.ca_file) if b.ca_file else None,
                certfile=str(b.cert_file) if b.cert_file else None,
                keyfile=str(b.key_file) if b.key_file else None,
            )
        topic = f"{self.config.topic_prefix}/events"

        def on_connect(c: Any, _u: Any, _f: Any, _rc: Any, _p: Any = None) -> None:
            c.subscribe(topic, qos=1)

        def on_message(_c: Any, _u: Any, msg: Any) -> None:
            try:
                event = json.loads(msg.payload)
            except ValueError:
                self.out(f"broker <- (not JSON) {msg.payload[:60]!r}")
                return
            with self._lock:
                self.received.append(event)
            self.out(_event_line(event))

        client.on_connect = on_connect
        client.on_message = on_message
        client.connect(b.host, b.port, keepalive=30)
        client.loop_start()
        self._client = client

    def stop(self) -> None:
        if self._client is not None:
            self._client.loop_stop()
            self._client.disconnect()
            self._client = None


def _event_line(event: dict[str, Any]) -> str:
    data = event.get("data") or {}
    keys = ("decision", "lane", "tube", "position", "kind", "box", "reason")
    detail = " ".join(f"{k}={data[k]}" for k in keys if data.get(k) is not None)
    return f"broker <- #{event.get('seq')} {event.get('type')} {detail}".rstrip()


# -- running the steps ------------------------------------------------------------------------


class Ui(Protocol):
    """Where the kiosk's flow runs: ``call`` runs a function there and returns its result."""

    def call(self, fn: Callable[[], Any], timeout: float = 30.0) -> Any: ...
    def screenshot(self, path: Path) -> None: ...


@dataclass
class StepLog:
    index: int
    text: str


class DrillRunner:
    """Runs a scenario's steps against a kiosk on simulated hardware."""

    def __init__(
        self,
        kiosk: Kiosk,
        ui: Ui,
        relay: LinkRelay | None,
        db_path: Path,
        *,
        screenshots: Path | None = None,
        out: Callable[[str], None] = print,
    ) -> None:
        if kiosk.hardware.sim is None:
            raise SimulateError("a drill needs simulated hardware (hardware.backend = 'sim')")
        self.kiosk = kiosk
        self.sim: SimDevices = kiosk.hardware.sim
        self.ui = ui
        self.relay = relay
        self.screenshots = screenshots
        self.out = out
        self.outcome: dict[str, Any] = {}
        self.thermometer_attached = True
        self.outcome_of: Step | None = None
        self._db = open_db(db_path)
        self._settled = threading.Condition()
        self._settled_n = 0
        kiosk.views.append(self._on_view)

    def close(self) -> None:
        self._db.conn.close()

    def _on_view(self, view: Any) -> None:
        if view.state in SETTLED:
            with self._settled:
                self._settled_n += 1
                self._settled.notify_all()

    def run(self, scenario: Scenario) -> StepFailed | None:
        for i, step in enumerate(scenario.steps):
            try:
                self.step(i, step)
            except StepFailed as exc:
                self._shot(i, step, failed=True)
                return exc
            except (RuleViolation, StationError) as exc:
                self._shot(i, step, failed=True)
                return StepFailed(i, step, _why(exc))
            self._shot(i, step)
        return None

    def _shot(self, i: int, step: Step, failed: bool = False) -> None:
        if self.screenshots is None or isinstance(step, Expect | Wait):
            return
        state = self.ui.call(lambda: self.kiosk.flow.state.value)
        name = f"step-{i + 1:03d}-{state}{'-FAILED' if failed else ''}.png"
        self.ui.screenshot(self.screenshots / name)

    def step(self, i: int, step: Step) -> None:
        if isinstance(step, Expect):
            self.expect(i, step)
            return
        self.outcome = {}
        self.outcome_of = step
        if isinstance(step, Show):
            self.show(i, step)
        elif isinstance(step, ManualId):
            self.manual_id(i, step)
        elif isinstance(step, Scan):
            self.scan(i, step)
        elif isinstance(step, Touch):
            self.touch(step)
        elif isinstance(step, Wait):
            time.sleep(step.seconds)
        elif isinstance(step, Gateway):
            if self.relay is None:
                raise StepFailed(i, step, "this run has no relay to the broker")
            if step.online:
                self.relay.restore()
            else:
                self.relay.cut()
        elif isinstance(step, ThermometerState):
            bus = self.sim.thermometer.bus
            self.thermometer_attached = step.ok
            if step.ok:
                bus.attach(DEFAULT_ADDRESS, self.sim.thermometer.device)
                self._wait_thermometer_back(i, step)
            else:
                bus.devices.pop(DEFAULT_ADDRESS, None)

    def _wait_thermometer_back(self, i: int, step: Step) -> None:
        """The kiosk notices by itself (its probe) that the sensor answers again."""
        deadline = time.monotonic() + 2 * PROBE_EVERY_S + 1
        while self.ui.call(lambda: self.kiosk.flow.thermometer_faulty):
            if time.monotonic() > deadline:
                raise StepFailed(i, step, "the kiosk still takes the thermometer for faulty")
            time.sleep(0.1)

    def _wait_settled(self, i: int, step: Step, before: int, what: str) -> None:
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        with self._settled:
            while self._settled_n <= before:
                left = deadline - time.monotonic()
                if left <= 0:
                    state = self.kiosk.flow.state.value
                    raise StepFailed(
                        i, step, f"{what} within {SETTLE_TIMEOUT_S:.0f} s (screen: {state})"
                    )
                self._settled.wait(left)

    def _settle(self, i: int, step: Show | ManualId) -> None:
        """Wait for the decision; hand readings in while the thermometer is faulty."""
        temps = list(step.temperatures)
        while True:
            with self._settled:
                before = self._settled_n
            state = self.ui.call(lambda: self.kiosk.flow.state)
            if state is not State.MANUAL_TEMPERATURE:
                return
            if self.thermometer_attached and step.temperatures:
                raise StepFailed(i, step, "the kiosk asked for a hand reading of a working sensor")
            if not temps:
                raise StepFailed(
                    i, step, "the thermometer is faulty and the step gives no temperature"
                )
            t = temps.pop(0)
            self.ui.call(lambda t=t: self.kiosk.manual_temperature(t))  # type: ignore[misc]
            self._wait_settled(i, step, before, "no decision after the hand reading")

    def show(self, i: int, step: Show) -> None:
        cam, thermo = self.sim.camera, self.sim.thermometer
        thermo.clear_queue()
        if step.temperatures:
            thermo.queue(step.temperatures)
        self.kiosk.decoder.forget()
        with self._settled:
            before = self._settled_n
        distort = None
        if step.distort is not None:
            d = step.distort
            distort = {"rotate": d.rotate, "blur": d.blur, "scale": d.scale, "noise": d.noise}
        cam.show(step.text, distort)
        try:
            self._wait_settled(i, step, before, "the kiosk did not decide")
            self._settle(i, step)
        finally:
            cam.clear()
            thermo.clear_queue()
        self._outcome_from_view()

    def manual_id(self, i: int, step: ManualId) -> None:
        thermo = self.sim.thermometer
        thermo.clear_queue()
        if step.temperatures:
            thermo.queue(step.temperatures)
        with self._settled:
            before = self._settled_n
        self.ui.call(lambda: self.kiosk.manual_id(step.number))
        try:
            self._wait_settled(i, step, before, "the kiosk did not decide")
            self._settle(i, step)
        finally:
            thermo.clear_queue()
        self._outcome_from_view()

    def _outcome_from_view(self) -> None:
        v = self.ui.call(lambda: self.kiosk.flow.view)
        self.outcome = {
            "decision": v.decision,
            "reason": v.reason,
            "lane": v.lane,
            "tube": v.tube,
            "position": v.position,
        }

    def scan(self, i: int, step: Scan) -> None:
        self.kiosk.last_scan = None
        got = self.sim.scanner.feed(step.text)
        if got is None:
            raise StepFailed(i, step, "the scanner delivered nothing (too short?)")
        result = self.ui.call(lambda: self.kiosk.last_scan)  # runs after the scan's own post
        if isinstance(result, BaseException):
            raise StepFailed(i, step, _why(result))
        tube = getattr(result, "tube", None)
        self.outcome = {"tube": tube.tube if tube is not None else None}

    def touch(self, step: Touch) -> None:
        k = self.kiosk
        if step.action == "seal":
            r = self.ui.call(k.seal)
            self.outcome = {"tube": r.tube.tube}
        elif step.action == "void":
            reason = step.reason or ""
            r = self.ui.call(lambda: k.void(reason))
            self.outcome = {"tube": r.tube.tube}
        elif step.action == "remove":
            resident = step.resident or ""
            reason = step.reason or "removed by sampler"
            r = self.ui.call(lambda: k.remove(resident, reason))
            self.outcome = {"tube": r.tube.tube if r is not None else None}
        else:
            box = step.box or ""
            self.ui.call(lambda: k.dispatch(box))

    def actual(self, key: str) -> Any:
        k = self.kiosk
        if key == "open_tube_count":
            tube = self.ui.call(k.station.open_tube)
            return tube.count if tube is not None else 0
        if key == "lights":
            return k.hardware.lights.snapshot()
        if key == "screen":
            return self.ui.call(lambda: k.flow.state.value)
        if key == "alerts":
            row = self._db.conn.execute(
                "SELECT count(*) FROM outbox WHERE type = 'sampling.alert.raised'"
            ).fetchone()
            return int(row[0])
        if key == "link":
            # As the panel shows it: connected, or not (lost, or trying again).
            state = outbox.read_state(self._db).get("link.state")
            return "online" if state == "online" else "offline"
        return self.outcome.get(key, _MISSING)

    def expect(self, i: int, step: Expect) -> None:
        for key, want in step.checks.items():
            got = self.actual(key)
            if got is _MISSING:
                before = _describe(self.outcome_of) if self.outcome_of is not None else "nothing"
                raise StepFailed(
                    i, step, f"{key!r} is not an outcome of the step before ({before})"
                )
            if key == "lights":
                wrong = {lane: got.get(lane) for lane, st in want.items() if got.get(lane) != st}
                if wrong:
                    raise StepFailed(i, step, f"lights {wrong} (expected {want})")
                continue
            if got != want:
                seen = ", ".join(f"{k}={v}" for k, v in self.outcome.items() if v is not None)
                raise StepFailed(
                    i,
                    step,
                    f"{key} was {got!r}, expected {want!r}" + (f" ({seen})" if seen else ""),
                )
        self.out(f"  step {i + 1}: expect {json.dumps(step.checks, ensure_ascii=False)} held")

    def wait_delivered(self, timeout: float) -> tuple[bool, int]:
        """Wait until the agent delivered every event; (done, still undelivered)."""
        deadline = time.monotonic() + timeout
        while True:
            depth = outbox.stats(self._db).depth
            if depth == 0:
                return True, 0
            if time.monotonic() >= deadline:
                return False, depth
            time.sleep(0.1)


_MISSING = object()


def _why(exc: BaseException) -> str:
    if isinstance(exc, RuleViolation):
        return f"refused ({exc.code}): {exc.en}"
    return str(exc)


# -- the command ------------------------------------------------------------------------------


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
    def __init__(self, loop: LoopThread) -> None:
        self.loop = loop

    def call(self, fn: Callable[[], Any], timeout: float = 30.0) -> Any:
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
    runner = DrillRunner(kiosk, ui, relay, config.storage.path, screenshots=args.screenshots)
    try:
        if args.step_delay > 0:
            original = runner.step

            def slow(i: int, step: Step) -> None:
                original(i, step)
                time.sleep(args.step_delay)

            runner.step = slow  # type: ignore[method-assign]
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
        last = outbox.stats(runner._db).last_seq
        print(f"agent delivered all {last} events in {time.monotonic() - started:.1f} s")
        return EXIT_FAILED if failure is not None else 0
    finally:
        runner.close()


def main() -> None:  # pragma: no cover - `python -m kiosk_ui.drills.simulate`
    parser = argparse.ArgumentParser(prog="station simulate")
    configure(parser)
    raise SystemExit(run(parser.parse_args()))


if __name__ == "__main__":
    main()
