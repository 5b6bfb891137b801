"""Benchmark: provisioning 1 and 20 loopback stations, first run and second run.

Each station is a real sshd on its own loopback address with its own filesystem root and
fake system commands (tests/support/provision.py); the release is a small wheel installed
with pip into a fresh virtualenv. Targets: a second run of one station under 3 s, of twenty
under 60 s.

The baseline is the floor of any agentless tool: one OpenSSH round trip (`ssh host true`)
per station, with the same parallelism; the ratio says how many such round trips a run
costs.

    python -m tests.benchmarks.bench_provision
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.support.provision import build_release_wheel, inventory_text, make_root, station_sshd
from tests.support.sshd import Keys, Sshd, generate_keys, running_sshds

PARALLEL = 10
ROOT = Path(__file__).resolve().parents[2]


def _ssh_floor(servers: list[Sshd], keys: Keys, known_hosts: Path) -> float:
    ssh = shutil.which("ssh") or "/usr/bin/ssh"

    def one(s: Sshd) -> None:
        subprocess.run(
            [ssh, "-i", str(keys.client_key), "-o", f"UserKnownHostsFile={known_hosts}",
             "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-p", str(s.port),
             f"root@{s.address}", "true"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip

    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        list(pool.map(one, servers))
    return time.monotonic() - t0


def _apply(inventory: Path, report: Path) -> tuple[float, int, int, int]:
    """Wall time, total changes, stations ok, stations in all."""
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "kiosk_ui.cli", "provision", "apply", str(inventory),
         "--parallel", str(PARALLEL), "--report", str(report)],
        capture_output=True, text=True, cwd=ROOT, timeout=600, check=False,
    )  # fmt: skip
    took = time.monotonic() - t0
    data = json.loads(report.read_text())["stations"]
    if proc.returncode != 0:
        print(proc.stdout[-2000:], proc.stderr[-2000:], file=sys.stderr)
    changes = sum(len(r["changes"]) for r in data)
    return took, changes, sum(r["ok"] for r in data), len(data)


def run_fleet(n: int, keys: Keys, work: Path, wheel: Path) -> list[tuple[str, str, str, str]]:
    work.mkdir(parents=True)
    servers, entries = [], []
    for i in range(n):
        sid = f"B{i + 1:02d}"
        root = work / sid / "root"
        make_root(root, "firmware")
        server = station_sshd(work / sid, 2 + i, keys, root)
        servers.append(server)
        entries.append((sid, server, root))
    trust = work / "trust.json"
    trust.write_text('{"keys": []}')
    rows = []
    with running_sshds(servers):
        known = work / "known_hosts"
        known.write_text("".join(s.known_hosts_line() + "\n" for s in servers))
        inventory = work / "fleet.toml"
        inventory.write_text(
            inventory_text(
                known_hosts=known,
                trust_file=trust,
                artifact=wheel,
                keys=keys,
                stations=[(sid, s.address, s.port, root) for sid, s, root in entries],
            )
        )
        floor = _ssh_floor(servers, keys, known)
        for label in ("first run", "second run"):
            took, changes, ok, total = _apply(inventory, work / "report.json")
            rows.append(
                (
                    f"{n} station{'s' if n > 1 else ''}, {label}",
                    f"{took:6.2f} s",
                    f"{changes:4d} changes, {ok}/{total} ok",
                    f"{floor:5.2f} s  x{took / floor:5.1f}",
                )
            )
    return rows


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-provision-") as tmp:
        work = Path(tmp)
        keys = generate_keys(work / "keys")
        wheel = build_release_wheel(work / "dist", "1.0.0")
        rows = [("run", "wall time", "result", "ssh floor  ratio")]
        rows += run_fleet(1, keys, work / "one", wheel)
        rows += run_fleet(20, keys, work / "twenty", wheel)
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    print(f"(parallel {PARALLEL}; targets: second run of 1 under 3 s, of 20 under 60 s)")


if __name__ == "__main__":
    main()
