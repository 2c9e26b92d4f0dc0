"""Progress reports, which are also how long work hears that its caller went away.

Shared by the tagger's and the generator's backends; plain Python, no gRPC.
"""

from __future__ import annotations

import time
from collections.abc import Callable

# Called with the fraction of the work done, 0..1. It may raise to cancel the work.
ProgressCallback = Callable[[float], None]

# How often a Heartbeat passes on to the progress callback.
HEARTBEAT_S = 0.05


class Heartbeat:
    """For loops that can afford to be asked often: calling it passes `fraction` on to the
    progress callback at most every HEARTBEAT_S, so a cancel (the callback raises) is heard
    within that however long the loop runs."""

    def __init__(self, progress: ProgressCallback, fraction: float = 0.0):
        self.progress = progress
        self.fraction = fraction
        self._last = time.monotonic()

    def __call__(self) -> None:
        now = time.monotonic()
        if now - self._last >= HEARTBEAT_S:
            self._last = now
            self.progress(self.fraction)

    def advance(self, fraction: float) -> None:
        """Report `fraction` now; the heartbeats after it repeat it (never an earlier one)."""
        self.fraction = fraction
        self._last = time.monotonic()
        self.progress(fraction)
