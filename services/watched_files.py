"""Values read from files and read again when a file changes (certificates rotate, keys are
added and revoked while serving): one mtime check per use, no thread."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Generic, TypeVar

from services.errors import ConfigError

log = logging.getLogger("bgm")
T = TypeVar("T")


def _mtimes(paths: Sequence[Path]) -> tuple[int, ...]:
    stamps = []
    for path in paths:
        try:
            stamps.append(path.stat().st_mtime_ns)
        except OSError:
            stamps.append(0)
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
    missing) keeps the last good value and logs a warning; the next change is tried again."""

    def __init__(self, paths: Sequence[Path], load: Callable[[], T], what: str):
        self.paths, self.what = list(paths), what
        self._load = load
        self._lock = threading.Lock()
        self._stamp = _mtimes(self.paths)
        for path in self.paths:
            check_regular_file(path, what)
        try:
            self.value: T = load()
        except OSError as error:
            raise ConfigError(f"cannot read {what} ({error.filename}): {error.strerror}") from None

    def reloaded(self) -> T | None:
        """The new value when the files changed since the last read, else None."""
        stamp = _mtimes(self.paths)
        if stamp == self._stamp:
            return None
        with self._lock:
            if stamp == self._stamp:
                return None
            try:
                for path in self.paths:
                    check_regular_file(path, self.what)
                value = self._load()
            except (ConfigError, OSError, ValueError) as error:
                log.warning("%s changed but cannot be read yet (keeping the last): %s",
                            self.what, error)  # fmt: skip
                return None
            self.value, self._stamp = value, stamp
            log.info("%s reloaded from %s", self.what, ", ".join(map(str, self.paths)))
            return value

    def current(self) -> T:
        self.reloaded()
        return self.value
