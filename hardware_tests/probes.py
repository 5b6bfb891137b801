"""What the self-test asks outside the station's devices: the clock's synchronisation, whether
this is a Raspberry Pi, and the township broker (through the agent's own MQTT link)."""

from __future__ import annotations

import ctypes
import os
import queue
import ssl
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path

from edge_agent.errors import LinkError
from edge_agent.link import (
    Connected,
    ConnectFailed,
    Connection,
    LinkEvent,
    LinkSettings,
    TlsSession,
)
from edge_agent.session import broker_link
from firmware.config import BrokerSection
from firmware.errors import StationError

CERT_WARN_DAYS = 30
_TIME_ERROR = 5  # adjtimex(2): the clock is not synchronised


class SelfTestError(StationError):
    """A self-test check could not run as asked."""


@dataclass(frozen=True)
class ClockStatus:
    synchronised: bool | None  # None: cannot tell
    source: str
    detail: str


def parse_timedatectl(output: str) -> bool | None:
    """``timedatectl show -p NTPSynchronized --value`` prints yes or no."""
    value = output.strip().lower()
    if value == "yes":
        return True
    if value == "no":
        return False
    return None


def _adjtimex_state() -> int | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        buf = ctypes.create_string_buffer(512)  # struct timex, modes = 0: read only
        state = int(libc.adjtimex(buf))
    except (OSError, AttributeError):
        return None
    return None if state < 0 else state


def probe_clock() -> ClockStatus:
    """Ask systemd whether NTP synchronised the clock; the kernel when systemd cannot say."""
    try:
        out = subprocess.run(
            ["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        if out.returncode == 0:
            synced = parse_timedatectl(out.stdout)
            if synced is not None:
                return ClockStatus(synced, "timedatectl", f"NTPSynchronized={out.stdout.strip()}")
        why = (out.stderr.strip().splitlines() or ["no answer"])[0]
    except (OSError, subprocess.TimeoutExpired) as exc:
        why = str(exc)
    state = _adjtimex_state()
    if state is None:
        return ClockStatus(None, "none", f"timedatectl: {why}; adjtimex unavailable")
    return ClockStatus(
        state != _TIME_ERROR,
        "adjtimex",
        f"kernel clock state {state} ({'unsynchronised' if state == _TIME_ERROR else 'ok'}); "
        f"timedatectl: {why}",
    )


def is_raspberry_pi(model_file: Path = Path("/proc/device-tree/model")) -> bool:
    try:
        return "raspberry pi" in model_file.read_text(errors="replace").lower()
    except OSError:
        return False


# -- MQTT ------------------------------------------------------------------------------------


def probe_settings(broker: BrokerSection, station_id: str, timeout: float) -> LinkSettings:
    """The agent's link to ``broker``, under a client id of its own and with no session kept."""
    return replace(
        broker_link(broker, f"selftest-{station_id}-{os.getpid()}"),
        connect_timeout_s=timeout,
        session_expiry_s=0,
    )


def probe_broker(broker: BrokerSection, station_id: str, timeout: float = 5.0) -> str:
    """Connect with the agent's own MQTT link (``edge_agent.link``: TLS verified against
    ``ca_file`` or the system's CAs, the station's certificate and login), then disconnect.
    Returns what was found; raises SelfTestError saying what is wrong otherwise."""
    events: queue.Queue[LinkEvent] = queue.Queue()
    try:
        link = Connection(probe_settings(broker, station_id, timeout), events.put, 1)
    except LinkError as exc:
        raise SelfTestError(str(exc)) from None
    link.start()
    try:
        # TCP and TLS, then the CONNACK: each may take up to ``timeout``.
        answer = events.get(timeout=2 * timeout + 1)
    except queue.Empty:
        answer = None
    finally:
        link.close()
        if not link.join(timeout):
            link.abort()
            link.join(1.0)
    where = f"{broker.host}:{broker.port}"
    if answer is None:
        raise SelfTestError(f"no answer from {where} within {timeout:.0f} s")
    if isinstance(answer, ConnectFailed):
        raise SelfTestError(_connect_problem(answer, where, timeout))
    if not isinstance(answer, Connected):
        raise SelfTestError(f"{where} does not answer like an MQTT broker")
    notes = _tls_notes(answer.tls)
    scheme = "mqtts" if broker.tls else "mqtt"
    return f"{scheme}://{where} accepted the login" + (f" ({', '.join(notes)})" if notes else "")


def _connect_problem(failed: ConnectFailed, where: str, timeout: float) -> str:
    """What a technician reads for a failed connection (docs/hardware.md)."""
    return {
        "refused": f"{where} refused the connection",
        "no_answer": f"no answer from {where} within {timeout:.0f} s",
        "unreachable": f"cannot reach {where}: {failed.detail}",
        "tls_certificate": f"TLS certificate of {where} not valid: {failed.detail}",
        "tls": f"TLS handshake with {where} failed: {failed.detail}",
        "no_connack": f"{where} did not answer the MQTT login",
        "login": f"{where} refused the MQTT login: {failed.detail}",
    }.get(failed.problem, f"{where} does not answer like an MQTT broker ({failed.reason})")


def _tls_notes(tls: TlsSession | None) -> list[str]:
    if tls is None:
        return []
    notes = [f"TLS {tls.version}"]
    if tls.not_after is not None:
        days = (ssl.cert_time_to_seconds(tls.not_after) - time.time()) / 86400
        notes.append(f"certificate valid for {days:.0f} more days")
        if days < CERT_WARN_DAYS:
            notes.append("RENEW IT SOON")
    return notes
