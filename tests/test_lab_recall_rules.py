"""Properties of the recall list over any order of results: the numbered changes rebuild the
list, versions have no gap, and a station that gets the chunks twice or out of order (the
rule it keeps: apply from at most version + 1) ends with the same list."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.gateway import recall
from edge_agent.gateway.lab_import import import_results
from edge_agent.gateway.results import parse_results
from edge_agent.gateway.store import open_store
from tests.support.lab import DAY, Township

RESIDENTS = [f"r{i}" for i in range(8)]
TUBES = {  # pools that share residents, and single tubes of some of them sealed later
    "TB000001": ("pool", RESIDENTS[:4], 0),
    "TB000002": ("pool", RESIDENTS[2:6], 60),
    "TB000003": ("pool", RESIDENTS[5:], 120),
    "TB000011": ("single", ["r1"], 3600),
    "TB000012": ("single", ["r3"], 3600),
    "TB000013": ("single", ["r6"], 7200),
}
WORDS = ("negative", "positive", "invalid")

row = st.tuples(st.sampled_from(sorted(TUBES)), st.sampled_from(WORDS), st.booleans())
files = st.lists(st.lists(row, min_size=1, max_size=6), min_size=1, max_size=4)


def apply(held: dict[str, dict[str, Any]], version: int, args: dict[str, Any]) -> tuple[int, bool]:
    """The station's rule for one ``recall_update`` chunk."""
    if args["from"] > version + 1:
        return version, False
    for change in args["changes"]:
        if change["v"] == version + 1:
            if change["op"] == "add":
                held[change["sub"]] = change
            else:
                held.pop(change["sub"], None)
            version = change["v"]
    return version, True


@settings(max_examples=40, deadline=None)
@given(files=files, seed=st.integers(0, 2**32 - 1))
def test_changes_rebuild_the_list_and_any_delivery_order_converges(
    files: list[list[tuple[str, str, bool]]], seed: int
) -> None:
    with tempfile.TemporaryDirectory() as d, open_store(Path(d) / "g.db") as store:
        t = Township(store)
        for tube, (mode, subs, offset) in TUBES.items():
            t.seal(tube, subs, mode=mode, at=DAY + offset)
        for n, rows in enumerate(files):
            hour = 12 + n
            lines = ["tube,result,time,reason"]
            for m, (tube, word, reason) in enumerate(rows):
                lines.append(
                    f"{tube},{word},2026-12-03 {hour}:{m:02d},{'retest' if reason else ''}"
                )
            data = ("\n".join(lines) + "\n").encode()
            import_results(store, parse_results(data), source=f"f{n}", now=DAY + n)
        changes = recall.changes_since(store, "T01", 0)
        assert [c.v for c in changes] == list(range(1, len(changes) + 1))
        folded: dict[str, tuple[str, str, str]] = {}
        for c in changes:
            if c.op == "add":
                assert c.action in ("single", "isolate")
                folded[c.sub] = (c.pool, c.reason, c.action or "")
            else:
                assert c.sub in folded
                del folded[c.sub]
        listed = {s: (e.pool, e.reason, e.action) for s, e in recall.listed(store, "T01").items()}
        assert folded == listed
        # A single tube's positive result always isolates its resident.
        for tube, (mode, subs, _o) in TUBES.items():
            rows = store.query(
                "SELECT result FROM lab_results WHERE tube = %s ORDER BY reported_at DESC", (tube,)
            )
            if mode == "single" and rows and rows[0][0] == "positive":
                assert listed[subs[0]][2] == "isolate"
        # Chunks of three changes, each delivered twice, in a shuffled order, then re-sent
        # from the station's version until it holds them all (what the sender does).
        chunks = recall.commands("T01", changes, max_bytes=recall._COMMAND_OVERHEAD + 3 * 150)
        deliveries = [c["args"] for c in chunks] * 2
        random.Random(seed).shuffle(deliveries)
        held: dict[str, dict[str, Any]] = {}
        version = 0
        for args in deliveries:
            version, _ok = apply(held, version, args)
        while version < len(changes):
            for command in recall.commands("T01", changes[version:]):
                version, ok = apply(held, version, command["args"])
                assert ok
        assert {s: (c["pool"], c["reason"], c["action"]) for s, c in held.items()} == listed
