"""An MP4 or MOV file's sample tables checked against its size before FFmpeg opens it.

FFmpeg's MOV reader builds an index entry (about 40 bytes) for every sample a track's size
table declares, as it opens the file. A table of one constant size declares any number of
samples in 20 bytes: a 725-byte file declaring 50 million took 1.9 GB to open, and up to
about 6 GB at FFmpeg's own cap. Here the samples of a table of one size must fit in the file.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

# The boxes an ISO media file may begin with; a file that begins otherwise is not one.
FIRST_BOXES = {b"ftyp", b"styp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot",
               b"uuid", b"sidx", b"moof"}  # fmt: skip
# The boxes between the header (moov) and a track's sample size table (stsz).
PATH_TO_SIZES = (b"moov", b"trak", b"mdia", b"minf", b"stbl")
# Boxes read at one level (at the top, before the header) before the file is refused: a real
# one holds a few (a fragmented one its header first, then its fragments).
MOST_BOXES = 4096


def oversized_table(path: Path) -> str | None:
    """Why `path`'s sample tables cannot be what its bytes hold, or None where they can (or
    where it is no MP4 or MOV file: FFmpeg judges it then)."""
    size = path.stat().st_size
    with path.open("rb") as file:
        head = file.read(8)
        if len(head) < 8 or head[4:8] not in FIRST_BOXES:
            return None
        return _inside(file, 0, size, 0, size)


def _inside(file: BinaryIO, start: int, end: int, depth: int, file_size: int) -> str | None:
    """The first oversized table among the boxes from `start` to `end`, whose path from the
    top is PATH_TO_SIZES[:depth]."""
    at = start
    for _ in range(MOST_BOXES):
        if at + 8 > end:
            return None
        file.seek(at)
        length, kind = struct.unpack(">I4s", file.read(8))
        header = 8
        if length == 1:
            raw = file.read(8)
            if len(raw) < 8:
                return None
            length, header = struct.unpack(">Q", raw)[0], 16
        elif length == 0:
            length = end - at
        if length < header:
            return None  # malformed: FFmpeg says so
        if depth < len(PATH_TO_SIZES) and kind == PATH_TO_SIZES[depth]:
            found = _inside(file, at + header, min(at + length, end), depth + 1, file_size)
            if found or depth == 0:
                # (Past the header a fragmented file's fragments follow, as many as it likes.)
                return found
        elif depth == len(PATH_TO_SIZES) and kind == b"stsz":
            fields = file.read(12)
            if len(fields) == 12:
                _, each, count = struct.unpack(">III", fields)
                if each and each * count > file_size:
                    return (f"its sample table declares {count:,} samples of {each} bytes "
                            f"in a file of {file_size:,} bytes")  # fmt: skip
        at += length
    return f"it holds over {MOST_BOXES} boxes at one level"
