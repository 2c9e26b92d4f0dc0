"""Making room for speech: under a voice the lead steps out, the busy parts move below the
voice's register, the drums thin to a pulse, and nothing crashes where a voice starts. Pads
and bass carry the music; the melody returns in the gaps. The rules are data below, for a
musician to adjust."""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from services.domain import SpeechInterval
from services.generator.backends.composer.arrangement import Note, Roles
from services.generator.backends.composer.styles import (
    ACOUSTIC_KICK,
    HAT,
    KICK,
    PEDAL_HAT,
    SHAKER,
)
from services.generator.backends.composer.timing import TimingPlan

# A voice's breath either side of what the VAD heard, seconds.
BREATH_S = 0.25
# Parts that stop under speech (the lead).
SILENT_PARTS = ("melody",)
# Parts that move below the voice's register (about 200 Hz: MIDI 55) under speech, by
# octaves, or drop out where that would sink below VOICE_FLOOR.
LOWERED_PARTS = ("comping", "pulse")
VOICE_LOW = 55
VOICE_FLOOR = 36
# Drums keep only these under speech (a soft pulse), at this share of their velocity.
PULSE_KEYS = (KICK, ACOUSTIC_KICK, HAT, PEDAL_HAT, SHAKER)
PULSE_VELOCITY = 0.7
# Nothing but the pulse sounds this close to where a voice starts (no crash on a word).
ONSET_GUARD_S = 0.2


@dataclass(frozen=True)
class Thinned:
    notes: list[Note]
    # Per planned section: what was thinned and when ("" = nothing).
    sections: list[str]


def around_speech(
    notes: Sequence[Note],
    plan: TimingPlan,
    roles: Roles,
    speech: Sequence[SpeechInterval],
    heartbeat: Callable[[], None],
) -> Thinned:
    """The notes with room made under each spoken stretch (`heartbeat` is called as it
    goes: it raises to cancel)."""
    heard = _joined([(i.start_s, i.end_s) for i in speech])
    spans = _joined([(plan.beat_at(max(0.0, a - BREATH_S)), plan.beat_at(b + BREATH_S))
                     for a, b in heard])  # fmt: skip
    guards = _joined([(plan.beat_at(a - ONSET_GUARD_S), plan.beat_at(a + ONSET_GUARD_S))
                      for a, _ in heard])  # fmt: skip
    silent = {p for part in SILENT_PARTS for p in roles.of(part)}
    lowered = {p for part in LOWERED_PARTS for p in roles.of(part)} - silent
    drums = set(roles.of("drums"))

    kept: list[Note] = []
    for index, note in enumerate(notes):
        if index % 1024 == 0:
            heartbeat()
        if note.instrument in drums:
            if note.pitch not in PULSE_KEYS and (_inside(note, spans) or _inside(note, guards)):
                continue
            if _inside(note, spans):
                note = Note(note.instrument, note.pitch, note.start, note.end,
                            max(1, round(note.velocity * PULSE_VELOCITY)))  # fmt: skip
        elif note.instrument in silent and _inside(note, spans):
            continue
        elif note.instrument in lowered and _inside(note, spans) and note.pitch >= VOICE_LOW:
            pitch = note.pitch
            while pitch >= VOICE_LOW:
                pitch -= 12
            if pitch < VOICE_FLOOR:
                continue
            note = Note(note.instrument, pitch, note.start, note.end, note.velocity)
        kept.append(note)
    sections = []
    for section in plan.sections:
        heartbeat()
        sections.append(_described(section.start_s, section.end_s, heard, silent, lowered, drums))
    return Thinned(kept, sections)


def _joined(stretches: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The stretches in order, overlapping ones joined: each starts after the one before
    ends, so bisection finds what a time falls in (thousands of spoken stretches are as
    cheap as a few)."""
    joined: list[tuple[float, float]] = []
    for start, end in sorted(stretches):
        if joined and start <= joined[-1][1]:
            joined[-1] = (joined[-1][0], max(joined[-1][1], end))
        else:
            joined.append((start, end))
    return joined


def _inside(note: Note, stretches: list[tuple[float, float]]) -> bool:
    """Whether the note sounds in any of the (joined) stretches: the last one that starts
    before the note ends reaches furthest."""
    last = bisect.bisect_left(stretches, (note.end, -math.inf)) - 1
    return last >= 0 and stretches[last][1] > note.start


def _described(start_s: float, end_s: float, heard: list[tuple[float, float]],
               silent: set[str], lowered: set[str], drums: set[str]) -> str:  # fmt: skip
    low = max(0, bisect.bisect_right(heard, (start_s, math.inf)) - 1)
    high = bisect.bisect_left(heard, (end_s, -math.inf))
    inside = [(a, b) for a, b in heard[low:high] if b > start_s]
    if not inside:
        return ""
    what = [f"{', '.join(sorted(silent))} out" if silent else "",
            f"{', '.join(sorted(lowered))} below 200 Hz" if lowered else "",
            "drums to a soft pulse" if drums else ""]  # fmt: skip
    times = ", ".join(f"{max(a, start_s):.1f}-{min(b, end_s):.1f} s" for a, b in inside)
    return f"speech {times}: " + "; ".join(w for w in what if w)
