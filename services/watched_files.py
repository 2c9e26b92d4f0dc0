"""Values read from files and read again when a file changes (certificates rotate, keys are
added and revoked while serving): one mtime check per use, no thread."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Generic, TypeVar

from services.errors import ConfigError

log = logging.getLogger("bgm")
T = TypeVar("T")


# A file that cannot be read yet is tried again when it changes, or after this long: a
# rewrite finished within the clock tick of the read that caught it half-way leaves no other
# sign (and trying at every use had logged a warning for every call while it lasted).
RETRY_S = 1.0


def _stamps(paths: Sequence[Path]) -> tuple[tuple[int, int, int], ...]:
    """Each file's modification time, size and inode (a rewrite within one clock tick of
    the last still changes its size, or its inode if it was renamed into place)."""
    stamps = []
    for path in paths:
        try:
            stat = path.stat()
            stamps.append((stat.st_mtime_ns, stat.st_size, stat.st_ino))
        except OSError:
            stamps.append((0, 0, 0))
    return tuple(stamps)


def check_regular_file(path: Path, what: str) -> None:
    """A file the services read (config, keys, certificates) that exists is a file: a FIFO
    put in one's place (or a device) had been read without end, holding a server's start, or
    while serving every call of the gateway."""
    if path.exists() and not path.is_file():
        raise ConfigError(f"cannot read {what} {path}: not a file")


class WatchedFiles(Generic[T]):
    """`load()` of `paths`, read at once (a bad file stops the start) and again after any of
    them changes. A re-read that fails (a rotation caught half-written, a file briefly
    missing) keeps the last good value and logs a warning; it is tried again at the next
    change, or RETRY_S later."""

    def __init__(self, paths: Sequence[Path], load: Callable[[], T], what: str):
        self.paths, self.what = list(paths), what
        self._load = load
        self._lock = threading.Lock()
        self._stamp = _stamps(self.paths)
        # The stamp that could not be read, and when it was last tried.
        self._unreadable: tuple[tuple[tuple[int, int, int], ...], float] | None = None
        for path in self.paths:
            check_regular_file(path, what)
        try:
            self.value: T = load()
        except OSError as error:
            raise ConfigError(f"cannot read {what} ({error.filename}): {error.strerror}") from None

    def reloaded(self) -> T | None:
        """The new value when the files changed since the last read, else None."""
        stamp = _stamps(self.paths)
        if stamp == self._stamp or self._waiting(stamp):
            return None
        with self._lock:
            if stamp == self._stamp or self._waiting(stamp):
                return None
            try:
                for path in self.paths:
                    check_regular_file(path, self.what)
                value = self._load()
            except (ConfigError, OSError, ValueError) as error:
                self._unreadable = (stamp, time.monotonic())
                log.warning("%s changed but cannot be read yet (keeping the last): %s",
                            self.what, error)  # fmt: skip
                return None
            self.value, self._stamp, self._unreadable = value, stamp, None
            log.info("%s reloaded from %s", self.what, ", ".join(map(str, self.paths)))
            return value

    def _waiting(self, stamp: tuple[tuple[int, int, int], ...]) -> bool:
        """Whether `stamp` is the one that could not be read, tried less than RETRY_S ago."""
        return (
            self._unreadable is not None
            and self._unreadable[0] == stamp
            and time.monotonic() - self._unreadable[1] < RETRY_S
        )

    def current(self) -> T:
        self.reloaded()
        return self.value
