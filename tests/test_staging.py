"""What a request stages on the server: names a caller cannot break, limits inline bytes obey,
temporary output names no two requests share (issue 15)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from services.contract import local_video, staged_name, staged_suffix
from services.errors import ResourceExhaustedError
from services.gateway.outputs import temporary_path
from services.gen.bgm.v1 import common_pb2
from services.media.sources import SourcePolicy


@pytest.mark.parametrize(
    "name, suffix",
    [
        ("clip.mp4", ".mp4"),
        ("holiday.MOV", ".MOV"),
        ("clip." + "x" * 300, ".video"),  # was OSError: File name too long, INTERNAL
        ("clip.m\x00p4", ".mp4"),  # a NUL is dropped, not passed to the file system
        ("clip.mp/../../x", ".video"),
        ("no-extension", ".video"),
        ("", ".video"),
    ],
)
def test_a_staged_copy_keeps_only_a_plain_short_extension(name, suffix):
    assert staged_suffix(name) == suffix


def test_a_long_or_odd_file_name_stages_fine(tmp_path: Path):
    source = common_pb2.VideoSource(data=b"\x00\x00\x00\x18ftypmp42", file_name="a." + "y" * 300)
    path = asyncio.run(local_video(source, SourcePolicy(), tmp_path, max_inline_bytes=1 << 20))
    assert path == tmp_path / "a.video" and path.read_bytes().endswith(b"mp42")


@pytest.mark.parametrize(
    ("name", "staged"),
    [("holiday clip.MP4", "holiday clip.MP4"), ("../../etc/passwd", "passwd.video"),
     (".bgm-owner", "bgm-owner.video"), ("", "upload.video"), ("ü/été 2024.mov", "été 2024.mov"),
     ("a*b?c.mkv", "a_b_c.mkv")],
)  # fmt: skip
def test_a_staged_copy_is_named_as_the_caller_knows_it(name, staged):
    assert staged_name(name, "upload") == staged


@pytest.mark.parametrize("letter", ["\U0001d49c", "é", "x"])
def test_a_name_of_wide_letters_stages_within_a_file_names_bytes(tmp_path: Path, letter):
    """64 letters of 4 bytes are 256 bytes, over a file name's 255: staging it had failed
    as INTERNAL (OSError: File name too long)."""
    source = common_pb2.VideoSource(
        data=b"\x00\x00\x00\x18ftypmp42", file_name=letter * 64 + ".mp4"
    )
    path = asyncio.run(local_video(source, SourcePolicy(), tmp_path, max_inline_bytes=1 << 20))
    assert path.parent == tmp_path and path.suffix == ".mp4" and path.stem.startswith(letter)
    assert len(path.name.encode()) <= 255 and path.read_bytes().endswith(b"mp42")


def test_inline_bytes_obey_the_upload_limit(tmp_path: Path):
    source = common_pb2.VideoSource(data=b"x" * 1001, file_name="clip.mp4")
    with pytest.raises(ResourceExhaustedError, match="over the upload limit of 1000"):
        asyncio.run(local_video(source, SourcePolicy(), tmp_path, max_inline_bytes=1000))
    assert list(tmp_path.iterdir()) == []


def test_temporary_output_names_are_unique_per_call(tmp_path: Path):
    final = tmp_path / "scored.mp4"
    names = {temporary_path(final) for _ in range(4)}
    assert len(names) == 4
    assert all(n.parent == tmp_path and n.suffix == ".mp4" for n in names)
