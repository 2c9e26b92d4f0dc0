"""Standard MIDI Files as the outputs carry them."""

from __future__ import annotations

import io

import mido

# MIDI's tempo where a file sets none (120 BPM), microseconds a quarter note.
DEFAULT_TEMPO = 500_000
# What a track sets up at its first tick, which stays there when the music moves later: the
# tempo in force from the file's start, names, the programs and controllers its notes play
# with.
SET_UP = frozenset({
    "set_tempo", "key_signature", "track_name", "instrument_name", "program_change",
    "control_change", "pitchwheel", "sysex",
})  # fmt: skip


def delayed(midi: bytes, seconds: float) -> bytes:
    """The file with its music `seconds` later, silence before it (a part of a video, placed
    at its time, as its audio is): every event after what a track sets up at its first tick
    (SET_UP, up to its first event of another kind) moves by the ticks that last `seconds`
    at the opening tempo. The meter moves with the music, so that its bars still start on
    the music's downbeats."""
    if seconds <= 0:
        return midi
    song = mido.MidiFile(file=io.BytesIO(midi))
    opening = next(
        (m.tempo for track in song.tracks for m in _at_first_tick(track) if m.type == "set_tempo"),
        DEFAULT_TEMPO,
    )
    ticks = round(mido.second2tick(seconds, song.ticks_per_beat, opening))
    for track in song.tracks:
        set_up = len(_at_first_tick(track, SET_UP))
        if set_up < len(track):
            track[set_up] = track[set_up].copy(time=track[set_up].time + ticks)
    out = io.BytesIO()
    song.save(file=out)
    return out.getvalue()


def _at_first_tick(
    track: mido.MidiTrack, kinds: frozenset[str] | None = None
) -> list[mido.Message | mido.MetaMessage]:
    """The track's leading events at tick 0 (of `kinds`, up to the first of another kind)."""
    leading = []
    for message in track:
        if message.time > 0 or (kinds is not None and message.type not in kinds):
            break
        leading.append(message)
    return leading
