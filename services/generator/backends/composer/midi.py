"""Notes and the timing plan as a multi-track Standard MIDI File (one track per instrument)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import mido

from services.generator.backends.composer.arrangement import Note
from services.generator.backends.composer.timing import TimingPlan

TICKS_PER_BEAT = 480
DRUM_CHANNEL = 9


@dataclass(frozen=True)
class Track:
    instrument: str
    program: int
    channel: int


def _tempo_track(plan: TimingPlan, pickup: bool) -> mido.MidiTrack:
    """Tempo at every beat whose length changes; a time signature at every bar that differs
    from the one before. A pickup beat carries the silence before the first beat."""
    track = mido.MidiTrack()
    events: list[tuple[int, mido.MetaMessage]] = []
    offset = TICKS_PER_BEAT if pickup else 0
    beats = plan.beats_s
    if pickup:
        microseconds = max(1, round(beats[0] * 1e6))
        events.append((0, mido.MetaMessage("set_tempo", tempo=microseconds)))
    previous = None
    for i in range(len(beats)):
        period = beats[i + 1] - beats[i] if i + 1 < len(beats) else beats[-1] - beats[-2]
        microseconds = round(period * 1e6)
        if microseconds != previous:
            events.append(
                (offset + i * TICKS_PER_BEAT, mido.MetaMessage("set_tempo", tempo=microseconds))
            )
            previous = microseconds
    bar_ends = [*plan.bar_starts[1:], len(beats)]
    last_length = None
    for start, end in zip(plan.bar_starts, bar_ends, strict=True):
        length = end - start
        if length != last_length and length > 0:
            events.append(
                (
                    offset + start * TICKS_PER_BEAT,
                    mido.MetaMessage("time_signature", numerator=length, denominator=4),
                )
            )
            last_length = length
    _append_sorted(track, events)
    return track


def _append_sorted(track: mido.MidiTrack, events: list[tuple[int, mido.Message]]) -> None:
    events.sort(key=lambda item: (item[0], item[1].type == "note_on"))
    now = 0
    for tick, message in events:
        # Set in place: copy(time=...) would validate every message a second time.
        message.time = tick - now
        track.append(message)
        now = tick


def midi_bytes(
    notes_by_instrument: Mapping[str, Sequence[Note]], plan: TimingPlan, tracks: Sequence[Track]
) -> bytes:
    pickup = plan.beats_s[0] > 1e-6
    offset = TICKS_PER_BEAT if pickup else 0
    song = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
    song.tracks.append(_tempo_track(plan, pickup))
    for track_info in tracks:
        track = mido.MidiTrack()
        track.append(mido.MetaMessage("track_name", name=track_info.instrument))
        events: list[tuple[int, mido.Message]] = []
        if track_info.channel != DRUM_CHANNEL:
            events.append(
                (
                    0,
                    mido.Message(
                        "program_change", channel=track_info.channel, program=track_info.program
                    ),
                )
            )
        for note in notes_by_instrument.get(track_info.instrument, ()):
            on = offset + round(note.start * TICKS_PER_BEAT)
            off = max(on + 1, offset + round(note.end * TICKS_PER_BEAT))
            events.append(
                (
                    on,
                    mido.Message(
                        "note_on",
                        channel=track_info.channel,
                        note=note.pitch,
                        velocity=note.velocity,
                    ),
                )
            )
            events.append(
                (
                    off,
                    mido.Message(
                        "note_off", channel=track_info.channel, note=note.pitch, velocity=0
                    ),
                )
            )
        _append_sorted(track, events)
        song.tracks.append(track)
    buffer = io.BytesIO()
    song.save(file=buffer)
    return buffer.getvalue()
