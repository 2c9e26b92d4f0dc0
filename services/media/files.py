"""What is wrong with a local path that cannot be read: a file that is missing is said as
such, and a link that leads round in a loop as that (it had been "not found"). Light to
import: `bgm` refuses a missing video before it loads the media libraries."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from services.errors import InvalidVideoError, MediaNotFoundError, PermissionDeniedError

# What a path whose links lead round in a loop is said to be, wherever one is refused.
LOOPED = "a link that leads round in a loop, to no file"
# What an existing path that is neither a plain file nor a folder is, by its mode (a link
# only by lstat's).
SPECIAL_FILES = ((stat.S_ISLNK, "a symbolic link: name the file itself"),
                 (stat.S_ISFIFO, "a pipe"), (stat.S_ISCHR, "a device"),
                 (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket"))  # fmt: skip


def special_kind(mode: int) -> str | None:
    """What a path of this mode is, if not a plain file or a folder (SPECIAL_FILES)."""
    return next((kind for test, kind in SPECIAL_FILES if test(mode)), None)


def leads_round(path: Path) -> bool:
    """Whether following `path`'s links never ends (the system gives up: ELOOP)."""
    try:
        os.stat(path)
    except OSError as error:
        return error.errno == errno.ELOOP
    return False


def check_readable_video(path: Path) -> None:
    """Refuses `path` unless it is a file with something in it that may be read."""
    try:
        if not path.exists():
            if leads_round(path):
                raise InvalidVideoError("not_a_video", f"{path.name} is {LOOPED}")
            raise MediaNotFoundError(f"video not found: {path.name}")
        if not path.is_file():
            raise InvalidVideoError("not_a_video", f"{path.name} is not a file")
        if path.stat().st_size == 0:
            raise InvalidVideoError("empty", f"{path.name} is empty (0 bytes)")
        path.open("rb").close()
    except PermissionError:
        # The file, or a folder on its way: the raw errno had come out of the probe further
        # on (`bgm score`: exit 1, as for a failure of its own).
        raise PermissionDeniedError(f"cannot read video {path.name}: permission denied") from None
