"""The power-cut harness's kiosk: a real kiosk on simulated devices that checks residents in
until it is killed (tests/test_power_cut.py kills it with SIGKILL at random moments).

    python -m tests.support.powercut CONFIG CODES LOG START RUN

It builds the kiosk as ``station kiosk`` does (``kiosk_ui.kiosk.build``) and appends to LOG,
one JSON object a line, each written and fsynced before the next step:

- ``{"run", "open_tube", "members", "waiting"}`` once the kiosk is up: the open tube and the
  waiting queue as the kiosk reads them after the restart;
- ``{"confirmed", ...}`` the moment the screen gets a resident's result (the flow hands the
  view over only after the check-in is committed): resident, decision, tube, position,
  queue place.

Residents show the codes of CODES (``[[code, sub], ...]``) from index START on, each with a
temperature of 36.6 C; between them the sampler seals a full tube and, now and then, opens a
new one (``TB`` + RUN + a counter), so some residents wait and are later pulled into a tube.
"""

from __future__ import annotations

import json
import os
import queue
import random
import sys
from pathlib import Path
from typing import Any, TextIO

from firmware.config import load_config
from kiosk_ui.core.flow import State, View
from kiosk_ui.errors import RuleViolation
from kiosk_ui.kiosk import Kiosk, build

SHOWN = {State.RESULT, State.WAIT, State.ISOLATION, State.STAFF}
PER_RUN = 200


def write(log: TextIO, entry: dict[str, Any]) -> None:
    log.write(json.dumps(entry) + "\n")
    log.flush()
    os.fsync(log.fileno())


def state_of(kiosk: Kiosk) -> dict[str, Any]:
    tube = kiosk.station.open_tube()
    return {
        "open_tube": None if tube is None else tube.tube,
        "members": [] if tube is None else list(tube.members),
        "waiting": [w.resident for w in kiosk.station.waiting()],
    }


def sampler(kiosk: Kiosk, rng: random.Random, run: int, opened: list[int]) -> None:
    """On the kiosk's loop: seal a full tube; with no tube open, open one now and then."""
    try:
        tube = kiosk.station.open_tube()
        if tube is not None and tube.full:
            kiosk.seal()
        elif tube is None and rng.random() < 0.6:
            opened[0] += 1
            kiosk.scan(f"TB{run:04d}{opened[0]:06d}")
    except RuleViolation:
        pass


def main(argv: list[str]) -> int:
    config_path, codes_path, log_path, start, run = argv
    config = load_config(config_path)
    codes = json.loads(Path(codes_path).read_text())[int(start) : int(start) + PER_RUN]
    rng = random.Random(int(run))
    shown: queue.Queue[str] = queue.Queue()
    opened = [0]
    with open(log_path, "a") as log, build(config) as core:
        kiosk = core.kiosk
        sim = kiosk.hardware.sim
        assert sim is not None

        def on_view(view: View) -> None:
            if view.state in SHOWN and view.resident:
                entry = {
                    "confirmed": view.resident,
                    "run": int(run),
                    "decision": None if view.decision is None else view.decision.value,
                    "tube": view.tube,
                    "position": view.position,
                    "queue_place": view.queue_place,
                }
                write(log, entry)
                shown.put(view.resident)

        core.loop.call(lambda: kiosk.views.append(on_view))
        write(log, {"run": int(run), **core.loop.call(lambda: state_of(kiosk))})
        for code, sub in codes:
            core.loop.call(lambda: sampler(kiosk, rng, int(run), opened))
            sim.thermometer.queue([36.6])
            sim.camera.show(code)
            while shown.get(timeout=30) != sub:
                pass
            sim.camera.clear()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
