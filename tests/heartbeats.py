"""Heartbeats for tests of long work that must hear a cancel."""

from __future__ import annotations

from collections.abc import Callable

from services.errors import CancelledError


def cancelling_at(call: int) -> tuple[Callable[[], None], list[int]]:
    """A heartbeat that cancels at its `call`-th call, and the list of its calls."""
    calls: list[int] = []

    def heartbeat() -> None:
        calls.append(1)
        if len(calls) == call:
            raise CancelledError("cancelled")

    return heartbeat, calls
