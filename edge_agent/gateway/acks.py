"""Which acks the gateway publishes, and when: per station the newest prefix, one at a time.

A herd of stations draining at once makes every stored batch touch hundreds of stations; an
ack per station per batch would be hundreds of thousands of retained publishes for a million
events, more than paho can keep in flight (its message ids wrap at 65,535) and more than a
broker wants to hold. So each station has at most one ack in flight; what is stored
meanwhile raises the prefix its next ack will say (a station only needs the newest). An ack
lost with the link goes again when the link is back, rather than when the station's ack
timeout makes it send everything again.

No I/O here: the consumer asks ``due()`` for what to publish and reports what came of it.
"""

from __future__ import annotations

from collections.abc import Mapping

StationKey = tuple[str, str]


class AckBook:
    def __init__(self) -> None:
        self.want: dict[StationKey, int] = {}  # to publish: the newest prefix per station
        self.inflight: dict[StationKey, int] = {}  # published, the broker's PUBACK awaited
        self.highest: dict[StationKey, int] = {}  # never say less than was said: it is retained

    def stored(self, advanced: Mapping[StationKey, int]) -> None:
        """A batch was committed: each station touched is to be told its prefix (again)."""
        for key, through in advanced.items():
            best = max(through, self.want.get(key, through), self.highest.get(key, through))
            self.want[key] = self.highest[key] = best

    def due(self) -> list[tuple[StationKey, int]]:
        """What to publish now (each is then in flight until ``answered``)."""
        ready = [(k, t) for k, t in self.want.items() if k not in self.inflight]
        for key, through in ready:
            del self.want[key]
            self.inflight[key] = through
        return ready

    def answered(self, key: StationKey, through: int, *, ok: bool, retry: bool) -> None:
        """The broker answered an ack; one that failed and should go again (``retry``: it
        never left, the link was down) is wanted again."""
        if self.inflight.get(key) == through:
            del self.inflight[key]
        if not ok and retry:
            self.want[key] = max(through, self.want.get(key, through))

    def link_lost(self) -> None:
        """Acks in flight on a link that ended may be lost: they are wanted again."""
        for key, through in self.inflight.items():
            self.want[key] = max(through, self.want.get(key, through))
        self.inflight.clear()

    def __len__(self) -> int:
        return len(self.want) + len(self.inflight)
