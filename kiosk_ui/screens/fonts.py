"""The screen font: Noto Sans CJK, Simplified Chinese face, with digits and ℃.

Debian's ``fonts-noto-cjk`` ships the CJK faces as TrueType collections (``.ttc``). Kivy's
SDL2 text provider opens a file's first face, which in those collections is the Japanese
one: Chinese text would come out in Japanese glyph forms. So the kiosk finds the face whose
name is "Noto Sans CJK SC" in the collection and writes it out once as a standalone
OpenType file in a cache directory (the collection's tables, copied as they are), which
every text provider opens correctly. A standalone SC file, where a system has one, is used
directly.
"""

from __future__ import annotations

import logging
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import ImageFont

from kiosk_ui.errors import FontError

log = logging.getLogger(__name__)

FONT_DIRS = (
    Path("/usr/share/fonts/opentype/noto"),
    Path("/usr/share/fonts/truetype/noto"),
    Path("/usr/share/fonts/noto-cjk"),
    Path("/usr/share/fonts/google-noto-cjk"),
)
FAMILY = "Noto Sans CJK SC"
STANDALONE = {"Regular": "NotoSansCJKsc-Regular.otf", "Bold": "NotoSansCJKsc-Bold.otf"}
COLLECTION = {"Regular": "NotoSansCJK-Regular.ttc", "Bold": "NotoSansCJK-Bold.ttc"}


@dataclass(frozen=True)
class FontFiles:
    regular: Path
    bold: Path


def face_names(path: Path) -> list[str]:
    """The family name of every face in a font file (one for .otf, several for .ttc)."""
    names: list[str] = []
    index = 0
    while True:
        try:
            family, _style = ImageFont.truetype(str(path), 12, index=index).getname()
        except OSError:
            break
        names.append(str(family))
        index += 1
        if path.suffix.lower() != ".ttc":
            break
    return names


def sc_face_index(path: Path) -> int:
    """Index of the "Noto Sans CJK SC" face in a collection, FontError when absent."""
    names = face_names(path)
    try:
        return names.index(FAMILY)
    except ValueError:
        raise FontError(f"{path} has no {FAMILY} face (faces: {', '.join(names)})") from None


def extract_face(collection: Path, index: int, target: Path) -> Path:
    """Write face ``index`` of a TrueType/OpenType collection as a standalone font file."""
    data = collection.read_bytes()
    if data[:4] != b"ttcf":
        raise FontError(f"{collection} is not a font collection")
    (count,) = struct.unpack_from(">I", data, 8)
    if not 0 <= index < count:
        raise FontError(f"{collection} has {count} faces, not {index + 1}")
    (start,) = struct.unpack_from(">I", data, 12 + 4 * index)
    sfnt_version, num_tables, search_range, entry_selector, range_shift = struct.unpack_from(
        ">IHHHH", data, start
    )
    records = [struct.unpack_from(">4sIII", data, start + 12 + 16 * i) for i in range(num_tables)]
    header = struct.pack(
        ">IHHHH", sfnt_version, num_tables, search_range, entry_selector, range_shift
    )
    offset = 12 + 16 * num_tables
    directory = b""
    body = bytearray()
    for tag, checksum, table_offset, length in records:
        directory += struct.pack(">4sIII", tag, checksum, offset + len(body), length)
        body += data[table_offset : table_offset + length]
        body += b"\0" * (-len(body) % 4)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    partial.write_bytes(header + directory + bytes(body))
    partial.replace(target)
    return target


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sampling-station" / "fonts"


def _writable(directory: Path) -> Path:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / ".probe"
        probe.write_bytes(b"")
        probe.unlink()
        return directory
    except OSError:
        fallback = Path(tempfile.gettempdir()) / "sampling-station-fonts"
        fallback.mkdir(parents=True, exist_ok=True)
        return fallback


def _one(style: str, dirs: tuple[Path, ...], cache: Path) -> Path:
    for d in dirs:
        standalone = d / STANDALONE[style]
        if standalone.is_file() and FAMILY in face_names(standalone):
            return standalone
    for d in dirs:
        collection = d / COLLECTION[style]
        if not collection.is_file():
            continue
        index = sc_face_index(collection)
        st = collection.stat()
        target = cache / f"NotoSansCJKsc-{style}-{st.st_size}-{int(st.st_mtime)}.otf"
        if not target.is_file():
            log.info("extracting face %d (%s) of %s to %s", index, FAMILY, collection, target)
            extract_face(collection, index, target)
        return target
    raise FontError(
        f"no {FAMILY} {style} font in {', '.join(map(str, dirs))}; "
        "install the Debian package fonts-noto-cjk"
    )


def find_fonts(dirs: tuple[Path, ...] = FONT_DIRS, cache_dir: Path | None = None) -> FontFiles:
    """The regular and bold Simplified Chinese font files, extracting them when needed."""
    cache = _writable(cache_dir or default_cache_dir())
    regular = _one("Regular", dirs, cache)
    try:
        bold = _one("Bold", dirs, cache)
    except FontError:
        bold = regular
    return FontFiles(regular, bold)
