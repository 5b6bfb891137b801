"""The runner process of one station: ``python -m provisioning.runner JOB RESULT``.

pyinfra runs on gevent, whose monkeypatching must never touch the rest of the station
software, so it runs only in this process, which the fleet runner (provisioning/fleet.py)
starts once per station. It writes the station's JSON report to RESULT.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m provisioning.runner JOB.json RESULT.json", file=sys.stderr)
        return 2
    # Patch before pyinfra (and paramiko, ssl, socket users) are imported.
    importlib.import_module("gevent.monkey").patch_all()
    executor = importlib.import_module("provisioning.executor")
    job = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    verbosity = int(job.get("verbosity", 0))
    logging.basicConfig(
        level=logging.WARNING - 10 * min(verbosity, 2),
        format=f"%(asctime)s %(levelname)s [{job['station']}] %(name)s: %(message)s",
        stream=sys.stderr,
    )
    result = executor.run(job)
    Path(args[1]).write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
