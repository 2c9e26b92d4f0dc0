"""Making room for speech: under a voice the lead steps out, the busy parts move below the
voice's register, the drums thin to a pulse, and nothing crashes where a voice starts. Pads
and bass carry the music; the melody returns in the gaps. The rules are data below, for a
musician to adjust."""

from __future__ import annotations

from collections.abc import Sequence
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
    notes: Sequence[Note], plan: TimingPlan, roles: Roles, speech: Sequence[SpeechInterval]
) -> Thinned:
    """The notes with room made under each spoken stretch."""
    spans = [(plan.beat_at(max(0.0, i.start_s - BREATH_S)), plan.beat_at(i.end_s + BREATH_S))
             for i in speech]  # fmt: skip
    guards = [(plan.beat_at(i.start_s - ONSET_GUARD_S), plan.beat_at(i.start_s + ONSET_GUARD_S))
              for i in speech]  # fmt: skip
    silent = {p for part in SILENT_PARTS for p in roles.of(part)}
    lowered = {p for part in LOWERED_PARTS for p in roles.of(part)} - silent
    drums = set(roles.of("drums"))

    def inside(note: Note, stretches: list[tuple[float, float]]) -> bool:
        return any(note.start < end and note.end > start for start, end in stretches)

    kept: list[Note] = []
    for note in notes:
        if note.instrument in drums:
            if note.pitch not in PULSE_KEYS and (inside(note, spans) or inside(note, guards)):
                continue
            if inside(note, spans):
                note = Note(note.instrument, note.pitch, note.start, note.end,
                            max(1, round(note.velocity * PULSE_VELOCITY)))  # fmt: skip
        elif note.instrument in silent and inside(note, spans):
            continue
        elif note.instrument in lowered and inside(note, spans) and note.pitch >= VOICE_LOW:
            pitch = note.pitch
            while pitch >= VOICE_LOW:
                pitch -= 12
            if pitch < VOICE_FLOOR:
                continue
            note = Note(note.instrument, pitch, note.start, note.end, note.velocity)
        kept.append(note)
    return Thinned(kept, [_described(section.start_s, section.end_s, speech, silent, lowered,
                                     drums) for section in plan.sections])  # fmt: skip


def _described(start_s: float, end_s: float, speech: Sequence[SpeechInterval],
               silent: set[str], lowered: set[str], drums: set[str]) -> str:  # fmt: skip
    heard = [i for i in speech if i.start_s < end_s and i.end_s > start_s]
    if not heard:
        return ""
    what = [f"{', '.join(sorted(silent))} out" if silent else "",
            f"{', '.join(sorted(lowered))} below 200 Hz" if lowered else "",
            "drums to a soft pulse" if drums else ""]  # fmt: skip
    times = ", ".join(f"{max(i.start_s, start_s):.1f}-{min(i.end_s, end_s):.1f} s" for i in heard)
    return f"speech {times}: " + "; ".join(w for w in what if w)
