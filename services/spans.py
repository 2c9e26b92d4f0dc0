"""Stretches of a timeline with the short ones merged into a neighbour: the tagger's segments
(shots shorter than its minimum) and the composer's sections (shorter than two bars)."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence

Span = tuple[float, float]


def merged_spans(
    bounds: Sequence[float],
    shortest: float,
    pick: Callable[[Span, list[Span]], int],
    keep_first: bool = False,
) -> list[Span]:
    """The stretches between consecutive `bounds`, each shorter than `shortest` merged into
    one of its neighbours (`pick` gives its index among them, the one before first), the
    shortest first (the leftmost of equals). With `keep_first` the first stretch is never
    merged for being short, though a neighbour may join it. The stretches wait in a heap, so
    thousands cost milliseconds (a scan per merge had taken 3.6 s for the 14,400 cuts the
    tagger's limits allow)."""
    # A stretch keeps the index of its first bound: order, and neighbours by index.
    spans = {i: (bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)}
    before = {i: i - 1 for i in spans}
    after = {i: i + 1 for i in spans}
    waiting = [(end - start, i) for i, (start, end) in spans.items() if i or not keep_first]
    heapq.heapify(waiting)
    while len(spans) > 1 and waiting:
        length, short = heapq.heappop(waiting)
        span = spans.get(short)
        if span is None or span[1] - span[0] != length:
            continue  # merged since it waited
        if length >= shortest:
            break
        neighbours = [i for i in (before[short], after[short]) if i in spans]
        target = neighbours[pick(span, [spans[i] for i in neighbours])]
        lo, hi = sorted((short, target))
        spans[lo] = (spans[lo][0], spans.pop(hi)[1])
        after[lo] = after[hi]
        if after[hi] in spans:
            before[after[hi]] = lo
        if lo or not keep_first:
            heapq.heappush(waiting, (spans[lo][1] - spans[lo][0], lo))
    return [spans[i] for i in sorted(spans)]
