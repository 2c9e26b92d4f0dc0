"""What a request stages on the server: names a caller cannot break, limits inline bytes obey,
temporary output names no two requests share (issue 15)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from services.contract import local_video, staged_name, staged_suffix
from services.errors import InvalidInputError, ResourceExhaustedError
from services.gateway.outputs import staged_outputs, temporary_path
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


def test_a_killed_writers_temporary_files_go_with_the_next_output_of_their_name(tmp_path: Path):
    """A process killed outright (SIGKILL, the OOM killer) leaves its hidden temporary file
    beside the output for good, as large as the output. The next output of that name takes
    away those nothing has written for STALE_PARTIAL_S, and leaves a live writer's, another
    output's and any other file alone."""
    import os
    import time

    from services.gateway.outputs import STALE_PARTIAL_S

    final = tmp_path / "scored [1].mp4"
    killed, live = temporary_path(final), temporary_path(final)
    others = [temporary_path(tmp_path / "other.mp4"),
              temporary_path(tmp_path / "scored [1].wav"),
              tmp_path / ".scored [1].partial-notes.txt",
              tmp_path / ".scored [1].partial-keep-me.mp4"]  # fmt: skip
    for path in (killed, live, *others):
        path.write_bytes(b"\x00" * 1000)
    long_ago = time.time() - STALE_PARTIAL_S - 60
    for path in (killed, *others):
        os.utime(path, (long_ago, long_ago))
    with staged_outputs() as staging:
        staging.temporary(final).write_bytes(b"\x00\x00\x00\x18ftypmp42")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [final.name, live.name, *(p.name for p in others)]
    )


def test_a_folder_where_an_output_goes_refuses_them_all(tmp_path: Path):
    """A caller can make a folder stems/drums.wav (an earlier request's output_uri): a later
    request whose drums stem goes there had renamed its main file into place, then failed
    as INTERNAL (IsADirectoryError), leaving that file behind."""
    main, stem = tmp_path / "scored.wav", tmp_path / "stems" / "drums.wav"
    stem.mkdir(parents=True)
    refused = pytest.raises(InvalidInputError, match=r"drums\.wav: a folder is where this output")
    with refused, staged_outputs() as staging:
        for final in (main, stem):
            temporary = temporary_path(final)
            temporary.write_bytes(b"RIFF")
            staging.files.append((temporary, final))
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["drums.wav", "stems"]


def test_outputs_whose_folder_was_removed_do_not_bring_it_back(tmp_path: Path):
    """A request's folder removed while its outputs were being written (the request ended
    meanwhile): renaming them into place had made the folder again, and the gateway left it
    behind (empty) in its staging."""
    folder = tmp_path / "request"
    folder.mkdir()
    with pytest.raises(FileNotFoundError), staged_outputs() as staging:
        final = folder / "scored.mp4"
        temporary = temporary_path(final)
        temporary.write_bytes(b"\x00\x00\x00\x18ftypmp42")
        staging.files.append((temporary, final))
        shutil.rmtree(folder)
    assert list(tmp_path.iterdir()) == []
