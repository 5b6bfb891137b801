"""QR decoding: zxing-cpp against pyzbar against our pipeline as configured.

One fixed-seed set of rendered frames (640x480 and 1280x720; clean, rotated, blurred, noisy,
low contrast, small codes, and the scenario example's combination) and empty frames, each
decoded by every engine in the same run. Prints, per engine, the median and 95th percentile
time per frame, the success rate and the wrong decodes, then the ratios the issue sets as
targets: our median at most 0.15x pyzbar's, success no lower, zero wrong decodes, and an
empty frame costing at most a third of a frame period at 15 fps.

    python -m tests.benchmarks.bench_decode
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zxingcpp
from numpy.typing import NDArray
from pyzbar import pyzbar

from firmware.config import DecoderSection
from firmware.qr import make_engine
from firmware.sim.render import render_frame

SEED = 20261123
SIZES = [(640, 480), (1280, 720)]
KINDS: dict[str, dict[str, float]] = {
    "clean": {},
    "rotated": {"rotate": 25},
    "blurred": {"blur": 1.5},
    "noisy": {"noise": 18},
    "low contrast": {"contrast": 0.3},
    "small": {"scale": 0.45},
    "scenario": {"rotate": 20, "blur": 1.0, "scale": 0.6},
}
CODES_PER_KIND = 6
EMPTY_PER_SIZE = 10
ROUNDS = 3
FPS = 15
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"

Frame = NDArray[np.uint8]


@dataclass
class Sample:
    kind: str
    size: tuple[int, int]
    frame: Frame
    expected: str | None


@dataclass
class Result:
    name: str
    times_ms: list[float] = field(default_factory=list)
    empty_ms: list[float] = field(default_factory=list)
    ok: dict[str, int] = field(default_factory=dict)
    total: dict[str, int] = field(default_factory=dict)
    wrong: int = 0

    @property
    def success(self) -> float:
        return sum(self.ok.values()) / max(1, sum(self.total.values()))


def frames() -> list[Sample]:
    rnd = random.Random(SEED)
    out: list[Sample] = []
    for size in SIZES:
        for kind, distort in KINDS.items():
            for _ in range(CODES_PER_KIND):
                # Resident codes run to some 200-350 characters of Base45 after "HC1:".
                text = "HC1:" + "".join(rnd.choice(ALPHABET) for _ in range(rnd.randint(200, 350)))
                frame = render_frame(text, size[0], size[1], distort, seed=rnd.randrange(2**31))
                out.append(Sample(kind, size, frame, text))
        for _ in range(EMPTY_PER_SIZE):
            frame = render_frame(None, size[0], size[1], seed=rnd.randrange(2**31))
            out.append(Sample("empty", size, frame, None))
    return out


def zxing_baseline(gray: Frame) -> list[str]:
    """zxing-cpp as it comes: every format, default options."""
    return [str(b.text) for b in zxingcpp.read_barcodes(gray)]


def pyzbar_baseline(gray: Frame) -> list[str]:
    """pyzbar as it comes: every symbology."""
    return [s.data.decode("utf-8", "replace") for s in pyzbar.decode(gray)]


def measure(name: str, decode: Callable[[Frame], list[str]], samples: list[Sample]) -> Result:
    res = Result(name)
    for rnd in range(ROUNDS):
        for s in samples:
            start = time.perf_counter()
            got = decode(s.frame)
            ms = (time.perf_counter() - start) * 1000
            if s.expected is None:
                res.empty_ms.append(ms)
                if rnd == 0:
                    res.wrong += len(got)
                continue
            res.times_ms.append(ms)
            if rnd == 0:
                key = f"{s.kind} {s.size[0]}x{s.size[1]}"
                res.total[key] = res.total.get(key, 0) + 1
                res.ok[key] = res.ok.get(key, 0) + (s.expected in got)
                res.wrong += sum(1 for g in got if g != s.expected)
    return res


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def main() -> None:
    samples = frames()
    configured = DecoderSection().engine
    ours = make_engine(configured)
    engines: list[tuple[str, Callable[[Frame], list[str]]]] = [
        ("zxing-cpp", zxing_baseline),
        ("pyzbar", pyzbar_baseline),
        (f"ours ({configured})", ours.decode),
    ]
    coded = sum(1 for s in samples if s.expected)
    print(
        f"{coded} frames with a code, {len(samples) - coded} empty, sizes "
        f"{', '.join(f'{w}x{h}' for w, h in SIZES)}; {ROUNDS} rounds; seed {SEED}"
    )
    results = [measure(name, fn, samples) for name, fn in engines]
    print()
    print(
        f"{'engine':<16}{'median ms':>10}{'p95 ms':>9}{'success':>9}{'wrong':>7}"
        f"{'empty med':>11}{'empty p95':>11}"
    )
    for r in results:
        print(
            f"{r.name:<16}{statistics.median(r.times_ms):>10.2f}{p95(r.times_ms):>9.2f}"
            f"{r.success:>9.1%}{r.wrong:>7}{statistics.median(r.empty_ms):>11.2f}"
            f"{p95(r.empty_ms):>11.2f}"
        )
    print()
    keys = list(results[0].total)
    print(f"{'frames':<24}" + "".join(f"{r.name:>16}" for r in results))
    for k in keys:
        print(f"{k:<24}" + "".join(f"{r.ok[k]:>13}/{r.total[k]:<2}" for r in results))
    zx, zb, us = results
    ratio = statistics.median(us.times_ms) / statistics.median(zb.times_ms)
    budget = 1000 / FPS / 3
    empty = statistics.median(us.empty_ms)
    print()
    checks: list[tuple[str, Any, bool]] = [
        ("our median / pyzbar median (target <= 0.15)", f"{ratio:.3f}", ratio <= 0.15),
        (
            "our success - pyzbar success (target >= 0)",
            f"{us.success - zb.success:+.1%}",
            us.success >= zb.success,
        ),
        ("our wrong decodes (target 0)", us.wrong, us.wrong == 0),
        (
            f"our empty-frame median / {budget:.1f} ms (1/3 frame at {FPS} fps, target <= 1)",
            f"{empty / budget:.3f}",
            empty <= budget,
        ),
        (
            "zxing-cpp median / pyzbar median",
            f"{statistics.median(zx.times_ms) / statistics.median(zb.times_ms):.3f}",
            True,
        ),
    ]
    for label, value, ok in checks:
        print(f"{label:<66}{value!s:>9}  {'ok' if ok else 'MISSED'}")
    if all(ok for _, _, ok in checks):
        print(f"\nThe configured default engine ({configured}) meets every target.")


if __name__ == "__main__":
    main()
