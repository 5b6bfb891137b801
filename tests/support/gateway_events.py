"""Events as a station sends them, for the gateway's tests and benchmark (they keep the
published contract, so the gateway's checks accept them unless a test breaks one on purpose).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from edge_agent.gateway.intake import Event, happened_at


def event_dict(
    seq: int,
    *,
    township: str = "T01",
    station: str = "K03",
    ev_id: str | None = None,
    at: float | None = None,
    type_: str = "sampling.tube.member_added",
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    ms = int((time.time() if at is None else at) * 1000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"
    return {
        "specversion": "1.0",
        "id": ev_id or str(uuid.uuid4()),
        "source": f"urn:sampling:{township}:{station}",
        "type": type_,
        "time": stamp,
        "datacontenttype": "application/json",
        "seq": seq,
        "data": data
        if data is not None
        else {"tube": f"T{seq // 10:07d}", "resident": f"r{seq}", "position": seq % 10 + 1},
    }


def event_bytes(seq: int, **options: Any) -> bytes:
    return json.dumps(event_dict(seq, **options)).encode()


def topic(township: str = "T01", station: str = "K03", kind: str = "events") -> str:
    return f"sampling/{township}/{station}/{kind}"


def stored_event(seq: int, **options: Any) -> Event:
    """An ``Event`` as the intake makes it, for the store's own tests."""
    d = event_dict(seq, **options)
    return Event(
        options.get("township", "T01"),
        options.get("station", "K03"),
        seq,
        d["id"],
        d["type"],
        d["time"],
        happened_at(d["time"]),
        json.dumps(d),
    )
