"""The simulated camera's renderer: QR text into a grayscale frame, as a camera would film it.

:func:`render_frame` renders ``text`` with segno with the distortions of a drill
(``rotate`` degrees, ``blur`` sigma in pixels, ``scale`` against the default size, ``noise``
standard deviation in grey levels, and ``contrast`` 0-1), deterministically from a seed. At
scale 1 the code (with its quiet zone) spans 80% of the frame's shorter side; a code rotated
or scaled beyond the frame is cropped, as one held too close would be. It is pure: the decode
benchmark uses it, and :class:`~firmware.sim.camera.SimCamera` renders with it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import segno
from numpy.typing import NDArray
from PIL import Image, ImageFilter

from firmware.camera import Frame
from firmware.errors import SimulationError

DISTORTIONS = ("rotate", "blur", "scale", "noise", "contrast")
# The code's side at scale 1.0, as a fraction of the frame's shorter side: about how large a
# phone screen held at arm's length appears to the kiosk camera.
DEFAULT_CODE_FRACTION = 0.8
_PAPER = 235
_INK = 25
_BACKGROUND = 150


def check_distortion(distort: Mapping[str, Any] | None) -> dict[str, float]:
    """Validate a drill's ``distort`` table; raise SimulationError naming a wrong key."""
    out: dict[str, float] = {}
    for key, value in (distort or {}).items():
        if key not in DISTORTIONS:
            raise SimulationError(f"distort: unknown key {key!r} (known: {', '.join(DISTORTIONS)})")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SimulationError(f"distort.{key}: must be a number (got {value!r})")
        v = float(value)
        if not math.isfinite(v):
            raise SimulationError(f"distort.{key}: must be finite (got {value!r})")
        if key == "scale" and not 0.05 <= v <= 3.0:
            raise SimulationError(f"distort.scale: must be 0.05-3.0 (got {v})")
        if key in ("blur", "noise") and not 0 <= v <= 100:
            raise SimulationError(f"distort.{key}: must be 0-100 (got {v})")
        if key == "contrast" and not 0.05 <= v <= 1.0:
            raise SimulationError(f"distort.contrast: must be 0.05-1.0 (got {v})")
        out[key] = v
    return out


def _lens(sheet: NDArray[np.float32], side: int) -> NDArray[np.float32]:
    """The square ``sheet`` (one value per module) as ``side`` x ``side`` pixels see it: each
    pixel the average of 4 x 4 sub-pixels, each sub-pixel the module under its centre (a 4x
    nearest-neighbour enlargement box-filtered back down). Done by indexing, one direction
    at a time, so it needs neither a 4x image nor a BLAS call: OpenBLAS's threads keep
    spinning on every core for a while after a call, which took the CPU the screen's
    software rasteriser needed."""
    n = sheet.shape[0]
    sub = np.arange(side * 4, dtype=np.int64)
    # The module under sub-pixel k's centre: floor((k + 1/2) * n / (4 * side)), in integers.
    cell = ((2 * sub + 1) * n) // (8 * side)
    values = sheet.astype(np.float64)
    rows = values[cell[0::4]]
    for k in (1, 2, 3):
        rows += values[cell[k::4]]
    out = rows[:, cell[0::4]]
    for k in (1, 2, 3):
        out += rows[:, cell[k::4]]
    seen: NDArray[np.float32] = (out / 16.0).astype(np.float32)
    return seen


def render_frame(
    text: str | None,
    width: int = 640,
    height: int = 480,
    distort: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> Frame:
    """One grayscale frame: ``text`` as a QR code on a sheet of paper, distorted; or, with
    ``text`` None, an empty scene (background with some texture, as a tent looks)."""
    d = check_distortion(distort)
    rng = np.random.default_rng(seed)
    # A little low-frequency texture, so an empty frame is not a trivially flat image.
    coarse = rng.normal(0.0, 12.0, size=(height // 40 + 2, width // 40 + 2)).astype(np.float32)
    texture = np.asarray(
        Image.fromarray(coarse).resize((width, height), Image.Resampling.BILINEAR),
        dtype=np.float32,
    )
    canvas = np.full((height, width), float(_BACKGROUND), dtype=np.float32) + texture

    if text is not None:
        qr = segno.make_qr(text, error="m")
        modules = np.pad(np.asarray(qr.matrix, dtype=np.uint8), 4)  # 4: the quiet zone
        contrast = d.get("contrast", 1.0)
        mid = (_PAPER + _INK) / 2
        paper = mid + (_PAPER - mid) * contrast
        ink = mid - (mid - _INK) * contrast
        sheet = np.where(modules == 1, ink, paper).astype(np.float32)
        side = max(8, round(min(width, height) * DEFAULT_CODE_FRACTION * d.get("scale", 1.0)))
        # Like a lens: each pixel sees the average of the paper under it.
        img = Image.fromarray(_lens(sheet, side))
        angle = d.get("rotate", 0.0)
        if angle:
            # Paint outside the rotated sheet with a marker value, then let the scene show.
            img = img.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True, fillcolor=-1.0)
        patch = np.asarray(img, dtype=np.float32)
        ph, pw = patch.shape
        top, left = (height - ph) // 2, (width - pw) // 2
        # Crop what would fall outside the frame (a code held too close).
        y0, x0 = max(0, -top), max(0, -left)
        y1, x1 = min(ph, height - top), min(pw, width - left)
        region = canvas[top + y0 : top + y1, left + x0 : left + x1]
        piece = patch[y0:y1, x0:x1]
        region[:] = np.where(piece >= 0, piece, region)

    blur = d.get("blur", 0.0)
    if blur > 0:
        as8 = Image.fromarray(np.clip(np.rint(canvas), 0, 255).astype(np.uint8))
        canvas = np.asarray(as8.filter(ImageFilter.GaussianBlur(blur)), dtype=np.float32)
    noise = d.get("noise", 0.0)
    if noise > 0:
        canvas = canvas + rng.normal(0.0, noise, size=canvas.shape).astype(np.float32)
    frame: Frame = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return frame
