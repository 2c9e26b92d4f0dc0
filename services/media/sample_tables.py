"""An MP4 or MOV file's sample tables checked before FFmpeg opens it.

FFmpeg's MOV reader builds an index entry (about 40 bytes) for every sample a track declares,
as it opens the file. A size table of one size (stsz), or a fragment's run (trun) whose
samples take their sizes from a default, declares any number of samples in a few bytes: a
725-byte file declaring 50 million took 1.9 GB to open, and up to about 6 GB at FFmpeg's own
cap; an 832-byte fragmented one declaring 20 million, 790 MB. Here what such tables declare
must fit in the file and, together, stay under MOST_INDEXED. (A table listing each sample's
size holds its entries in the file, and FFmpeg indexes a sound track of one sample size by
its chunks, not its samples.)
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

# The boxes an ISO media file may begin with; a file that begins otherwise is not one.
FIRST_BOXES = {b"ftyp", b"styp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot",
               b"uuid", b"sidx", b"moof"}  # fmt: skip
# The boxes that lead to the tables: a track's sample sizes (and its handler, which says
# whether it is sound), the movie's fragment defaults, a fragment's runs.
LEADING = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"mvex", b"moof", b"traf"}
# Samples the file's tables of one size may declare in all: two hours at 240 frames/s, the
# largest video the default limits take, is 1.7 million (at most about 320 MB of index).
MOST_INDEXED = 8_000_000
# Boxes read inside one box, and at the top: a real file holds a few inside each, and at the
# top its header and, fragmented, a fragment and its data every few frames.
MOST_BOXES = 4096
MOST_TOP_BOXES = 1_000_000
# trun's flags for the per-sample fields each of its entries holds (duration, size, flags,
# composition offset); with none, its samples take their sizes from a default.
PER_SAMPLE_FIELDS = 0x100 | 0x200 | 0x400 | 0x800
# tfhd's optional fields before its default sample size (base offset, description, duration),
# as (flag, bytes), and the flag of the default size itself.
TFHD_FIELDS = ((0x01, 8), (0x02, 4), (0x08, 4))
TFHD_DEFAULT_SIZE = 0x10


@dataclass
class _Reading:
    file: BinaryIO
    file_size: int
    indexed: int = 0  # samples declared by tables of one size so far
    default_size: int = 1  # a fragment's samples' size, from trex or tfhd
    handler: bytes = b""  # the current track's (b"soun" for sound)


def oversized_table(path: Path) -> str | None:
    """Why `path`'s sample tables cannot be what its bytes hold, or None where they can (or
    where it is no MP4 or MOV file: FFmpeg judges it then)."""
    size = path.stat().st_size
    with path.open("rb") as file:
        head = file.read(8)
        if len(head) < 8 or head[4:8] not in FIRST_BOXES:
            return None
        try:
            return _inside(_Reading(file, size), 0, size, MOST_TOP_BOXES)
        except OverflowError as many:
            return f"it holds over {many.args[0]:,} boxes at one level"


def _boxes(file: BinaryIO, start: int, end: int, most: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, where its body starts, where it ends) of each box from `start` to `end`; stops
    at a malformed one (FFmpeg says what is wrong with it), raises OverflowError past `most`."""
    at = start
    for _ in range(most):
        if at + 8 > end:
            return
        file.seek(at)
        length, kind = struct.unpack(">I4s", file.read(8))
        header = 8
        if length == 1:
            raw = file.read(8)
            if len(raw) < 8:
                return
            length, header = struct.unpack(">Q", raw)[0], 16
        elif length == 0:
            length = end - at
        if length < header:
            return
        yield kind, at + header, min(at + length, end)
        at += length
    raise OverflowError(most)


def _inside(reading: _Reading, start: int, end: int, most: int) -> str | None:
    """The first table among the boxes from `start` to `end` that cannot be what it says."""
    file = reading.file
    for kind, body, box_end in _boxes(file, start, end, most):
        file.seek(body)
        fields = file.read(min(box_end - body, 24))
        if kind in LEADING:
            found = _inside(reading, body, box_end, MOST_BOXES)
            if found:
                return found
        elif kind == b"hdlr" and len(fields) >= 12:
            reading.handler = fields[8:12]
        elif kind == b"stsz" and len(fields) >= 12:
            _, each, count = struct.unpack(">III", fields[:12])
            if each and reading.handler != b"soun":
                found = _declared(reading, count, each)
                if found:
                    return found
        elif kind == b"trex" and len(fields) >= 20:
            reading.default_size = max(1, struct.unpack(">I", fields[16:20])[0])
        elif kind == b"tfhd" and len(fields) >= 8:
            flags = int.from_bytes(fields[1:4], "big")
            at = 8 + sum(width for flag, width in TFHD_FIELDS if flags & flag)
            if flags & TFHD_DEFAULT_SIZE and len(fields) >= at + 4:
                reading.default_size = max(1, struct.unpack(">I", fields[at : at + 4])[0])
        elif kind == b"trun" and len(fields) >= 8:
            flags = int.from_bytes(fields[1:4], "big")
            (count,) = struct.unpack(">I", fields[4:8])
            if not flags & PER_SAMPLE_FIELDS:
                found = _declared(reading, count, reading.default_size)
                if found:
                    return found
    return None


def _declared(reading: _Reading, count: int, each: int) -> str | None:
    """Whether `count` more samples of `each` bytes, indexed one by one, can be what the
    file holds."""
    reading.indexed += count
    if each * count > reading.file_size:
        unit = "byte" if each == 1 else "bytes"
        return (f"its sample table declares {count:,} samples of {each:,} {unit} in a file "
                f"of {reading.file_size:,} bytes")  # fmt: skip
    if reading.indexed > MOST_INDEXED:
        return (f"its sample tables declare over {MOST_INDEXED:,} samples of one size, more "
                "than any video bgm reads holds")  # fmt: skip
    return None
