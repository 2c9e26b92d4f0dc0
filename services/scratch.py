"""Per-request scratch folders that a killed process does not leave behind.

Each folder holds a marker file saying whose it is (service, host, process) that the process
keeps locked for the folder's life. A lock dies with its process, however the process ends,
so at start-up a service removes the folders in its root that carry its own marker, from this
host, and are no longer locked: their process was killed before it could clean up. Folders
without a marker, another service's or another host's are left alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import socket
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

from services.errors import ConfigError

log = logging.getLogger("bgm")

MARKER = ".bgm-owner"


@contextlib.contextmanager
def scratch_folder(root: Path, owner: str) -> Iterator[Path]:
    """A new folder in `root` for one request, removed when the request ends however it
    ends (and at the next start-up if the process is killed)."""
    root.mkdir(parents=True, exist_ok=True)
    folder = root / uuid.uuid4().hex
    folder.mkdir()
    descriptor = os.open(folder / MARKER, os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        stamp = {"owner": owner, "host": socket.gethostname(), "pid": os.getpid()}
        os.write(descriptor, json.dumps(stamp).encode())
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        os.close(descriptor)


def sweep(root: Path, owner: str, key: str) -> int:
    """Check that `root` (the config's `key`) can hold scratch folders, making it if need be,
    and remove what killed processes of `owner` left in it; the number removed. A staging
    folder that was a file or on a read-only disk had passed start-up and failed every
    request INTERNAL."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".bgm-probe-{uuid.uuid4().hex}"
        os.close(os.open(probe, os.O_CREAT | os.O_WRONLY, 0o600))
        probe.unlink()
    except OSError as error:
        raise ConfigError(f"{key}: {root} cannot hold scratch folders "
                          f"({error.strerror or error})") from None  # fmt: skip
    removed = 0
    # Request folders, and those one level down (a tenant's folder holds its requests').
    candidates = [*root.iterdir()]
    candidates += [child for folder in candidates if folder.is_dir()
                   and not (folder / MARKER).exists() for child in folder.iterdir()]  # fmt: skip
    for folder in candidates:
        if _abandoned(folder, owner):
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    if removed:
        log.info("removed %d folder(s) that killed %s processes left in %s", removed, owner, root)
    return removed


def _abandoned(folder: Path, owner: str) -> bool:
    try:
        descriptor = os.open(folder / MARKER, os.O_RDONLY)
    except OSError:
        return False  # no marker (or not a folder): not ours to judge
    try:
        try:
            stamp = json.loads(os.read(descriptor, 4096) or b"{}")
        except ValueError:
            return False  # being written by a live process
        if stamp.get("owner") != owner or stamp.get("host") != socket.gethostname():
            return False
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # its process is alive
        return True
    finally:
        os.close(descriptor)


def folder_bytes(folder: Path) -> int:
    """What the plain files under `folder` hold; one removed while they are counted (a
    request's folder, going as its request ends) counts nothing."""
    total = 0
    for root, _, names in os.walk(folder):
        for name in names:
            with contextlib.suppress(OSError):
                mode = os.lstat(os.path.join(root, name))
                if stat.S_ISREG(mode.st_mode):
                    total += mode.st_size
    return total
