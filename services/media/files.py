"""What is wrong with a local path that cannot be read: a file that is missing is said as
such, and a link that leads round in a loop as that (it had been "not found")."""

from __future__ import annotations

import errno
import os
from pathlib import Path

# What a path whose links lead round in a loop is said to be, wherever one is refused.
LOOPED = "a link that leads round in a loop, to no file"


def leads_round(path: Path) -> bool:
    """Whether following `path`'s links never ends (the system gives up: ELOOP)."""
    try:
        os.stat(path)
    except OSError as error:
        return error.errno == errno.ELOOP
    return False
