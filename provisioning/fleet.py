"""Fleet runs: one runner process per station, at most N at once, a report for each.

A station that is down, refuses our key or fails half-way only ends its own process; the
others carry on. Nothing here imports pyinfra (or gevent): that stays in the runner process.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from provisioning.inventory import Inventory, Station

log = logging.getLogger(__name__)

HOST_TIMEOUT_S = 3600.0


def run_station(
    inventory: Inventory,
    station: Station,
    action: str,
    *,
    dry: bool = False,
    diff: bool = False,
    verbosity: int = 0,
    timeout_s: float = HOST_TIMEOUT_S,
    on_log: Callable[[str, str], None] | None = None,
) -> dict[str, Any]:
    """Run the runner process for one station; its report (a failure report if it crashed)."""
    job = {
        "inventory": str(inventory.path.resolve()),
        "station": station.id,
        "action": action,
        "dry": dry,
        "diff": diff,
        "verbosity": verbosity,
    }
    with tempfile.TemporaryDirectory(prefix=f"provision-{station.id}-") as tmp:
        job_path, result_path = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job_path.write_text(json.dumps(job), encoding="utf-8")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")]
        ).rstrip(os.pathsep)
        cmd = [sys.executable, "-m", "provisioning.runner", str(job_path), str(result_path)]
        try:
            # No terminal input: nothing in the runner may wait for an answer from a person.
            proc = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout_s,
                env=env,
                check=False,
            )
            output = proc.stderr + proc.stdout
        except subprocess.TimeoutExpired as exc:
            if on_log is not None and isinstance(exc.stderr, bytes):
                on_log(station.id, exc.stderr.decode(errors="replace"))
            return _crashed(station, action, dry, f"no result after {timeout_s:.0f} s")
        if on_log is not None and output.strip():
            on_log(station.id, output)
        try:
            result: dict[str, Any] = json.loads(result_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            tail = "\n".join(output.strip().splitlines()[-5:])
            return _crashed(station, action, dry, f"the runner process failed: {tail}")
        return result


def _crashed(station: Station, action: str, dry: bool, error: str) -> dict[str, Any]:
    return {
        "station": station.id,
        "address": f"{station.address}:{station.port}",
        "action": action,
        "dry": dry,
        "ok": False,
        "status": "failed",
        "errors": [error],
        "changes": [],
        "operations": [],
        "diffs": {},
        "notes": [],
        "selftest": None,
        "services": {},
        "release_before": None,
        "release_after": None,
        "rolled_back": False,
        "rebooted": False,
        "duration_s": 0.0,
    }


def run_fleet(
    inventory: Inventory,
    stations: list[Station],
    action: str,
    *,
    parallel: int = 8,
    dry: bool = False,
    diff: bool = False,
    verbosity: int = 0,
    on_log: Callable[[str, str], None] | None = None,
) -> list[dict[str, Any]]:
    """Every station's report, in inventory order."""
    lock = threading.Lock()

    def logged(station_id: str, text: str) -> None:
        if on_log is not None:
            with lock:
                on_log(station_id, text)

    def one(station: Station) -> dict[str, Any]:
        return run_station(
            inventory, station, action, dry=dry, diff=diff, verbosity=verbosity, on_log=logged
        )

    workers = max(1, min(parallel, len(stations)))
    # The pool's context manager joins every worker; each worker ends with its process.
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="provision") as pool:
        return list(pool.map(one, stations))


def summary_table(reports: list[dict[str, Any]]) -> str:
    """One line per station: result, changes, releases, self-test, time."""
    rows = [("station", "address", "result", "changes", "release", "self-test", "time")]
    for r in reports:
        selftest = r.get("selftest")
        test = "-" if selftest is None else ("pass" if selftest.get("passed") else "FAIL")
        before, after = r.get("release_before") or "-", r.get("release_after") or "-"
        release = before if before == after else f"{before} -> {after}"
        rows.append(
            (
                r["station"],
                r["address"],
                "would change" if r.get("dry") and r["status"] == "changed" else r["status"],
                str(len(r.get("changes", []))),
                release,
                test,
                f"{r.get('duration_s', 0.0):.1f}s",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    failed = [r for r in reports if not r["ok"]]
    lines.append(f"{len(reports) - len(failed)} of {len(reports)} stations ok")
    for r in failed:
        for err in r.get("errors", []):
            lines.append(f"  {r['station']}: {err}")
    return "\n".join(lines)
