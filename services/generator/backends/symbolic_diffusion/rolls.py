"""Diff-BGM's piano rolls as notes on the plan's beats: its own decoding (a note starts where
the onset channel passes 0.5 and lasts while the sustain channel does, velocity 80, never past
its window), placed at beats instead of its fixed 120 BPM, so the plan's tempo map carries the
piano and the cuts fall where the plan put them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from services.generator.backends.composer.arrangement import Note
from services.generator.backends.composer.theory import Key
from services.generator.backends.symbolic_diffusion.checkpoint import STEPS_PER_BEAT

VELOCITY = 80
THRESHOLD = 0.5
# The bass doubles the piano's lowest note of each beat in this register.
BASS_RANGE = (28, 52)
# Krumhansl-Kessler key profiles (major, minor), tonic first.
PROFILES = {
    "major": np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88]),
    "minor": np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17]),
}


def roll_notes(
    roll: np.ndarray, first_beat: int, end_beat: float, instrument: str = "piano"
) -> list[Note]:
    """Notes of one window's (2, steps, pitches) roll from `first_beat`, dropping what starts
    at or after `end_beat` (the piece's end) and ending the rest by it."""
    onset, sustain = roll[0] > THRESHOLD, roll[1] > THRESHOLD
    steps = onset.shape[0]
    notes = []
    for step, pitch in zip(*np.nonzero(onset), strict=True):
        length = 1
        while step + length < steps and sustain[step + length, pitch]:
            length += 1
        start = first_beat + step / STEPS_PER_BEAT
        if start >= end_beat:
            continue
        end = min(first_beat + (step + length) / STEPS_PER_BEAT, end_beat)
        notes.append(Note(instrument, int(pitch), start, end, VELOCITY))
    return notes


def bass_line(piano: Sequence[Note], instrument: str, beat_count: int) -> list[Note]:
    """One bass note per beat: the piano's lowest note sounding at the beat, brought into the
    bass register (so the bass never argues with the piano's harmony); held across beats
    while it stays the same."""
    lowest: dict[int, int] = {}
    for note in piano:
        for beat in range(int(np.ceil(note.start)), int(np.ceil(note.end))):
            if beat < beat_count and note.pitch < lowest.get(beat, 128):
                lowest[beat] = note.pitch
    low, high = BASS_RANGE
    notes: list[Note] = []
    for beat in sorted(lowest):
        pitch = lowest[beat]
        while pitch > high:
            pitch -= 12
        while pitch < low:
            pitch += 12
        if notes and notes[-1].pitch == pitch and notes[-1].end == beat:
            notes[-1].end = beat + 1.0
        else:
            notes.append(Note(instrument, pitch, float(beat), beat + 1.0, VELOCITY))
    return notes


def shift_into(found: Key, asked: Key) -> int:
    """Semitones (-6..5) that move music in `found` into `asked`: onto its tonic, or, where
    the modes differ, onto its relative (a minor piece asked for in a major key plays in the
    relative major's notes)."""
    relative = {("minor", "major"): 3, ("major", "minor"): -3}.get((found.mode, asked.mode), 0)
    return (asked.tonic - found.tonic - relative + 6) % 12 - 6


def estimated_key(notes: Sequence[Note], fallback: Key) -> Key:
    """The key whose profile best matches the notes' duration-weighted pitch classes."""
    weights = np.zeros(12)
    for note in notes:
        weights[note.pitch % 12] += note.end - note.start
    if not weights.any():
        return fallback
    best, best_score = fallback, -np.inf
    for mode, profile in PROFILES.items():
        for tonic in range(12):
            score = float(np.corrcoef(weights, np.roll(profile, tonic))[0, 1])
            if score > best_score:
                best, best_score = Key(tonic, mode), score
    return best
