"""What is wrong with a local path that cannot be read: a file that is missing is said as
such, and a link that leads round in a loop as that (it had been "not found")."""

from __future__ import annotations

import errno
import os
from pathlib import Path


def leads_round(path: Path) -> bool:
    """Whether following `path`'s links never ends (the system gives up: ELOOP)."""
    try:
        os.stat(path)
    except OSError as error:
        return error.errno == errno.ELOOP
    return False
