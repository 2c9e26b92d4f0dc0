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
    (SET_UP, up to its first event of another kind) moves later, and the meter with it, so
    that its bars still start on the music's downbeats. The silence is whole bars of MIDI's
    default 4/4 (its nearest number at the opening tempo, one at least) at a tempo that makes
    them last `seconds`, and the opening tempo returns where the music starts: a DAW's bar
    lines fall on the music's downbeats, and its meter changes on bar lines (moved by the
    opening tempo's ticks alone, the music's first meter had come 7.056 beats in)."""
    if seconds <= 0:
        return midi
    song = mido.MidiFile(file=io.BytesIO(midi))
    conductor = next(
        (t for t in song.tracks if any(m.type == "set_tempo" for m in _at_first_tick(t))),
        song.tracks[0],
    )
    opening = next(
        (m.tempo for m in _at_first_tick(conductor) if m.type == "set_tempo"), DEFAULT_TEMPO
    )
    bar_ticks = 4 * song.ticks_per_beat
    bars = max(1, round(mido.second2tick(seconds, song.ticks_per_beat, opening) / bar_ticks))
    ticks = bars * bar_ticks
    for track in song.tracks:
        set_up = len(_at_first_tick(track, SET_UP))
        if set_up < len(track):
            track[set_up] = track[set_up].copy(time=track[set_up].time + ticks)
    lead_in = round(seconds * 1e6 / (4 * bars))
    tempos = [i for i, m in enumerate(_at_first_tick(conductor)) if m.type == "set_tempo"]
    if tempos:
        conductor[tempos[0]] = conductor[tempos[0]].copy(tempo=lead_in)
    else:
        conductor.insert(0, mido.MetaMessage("set_tempo", tempo=lead_in, time=0))
    set_up = len(_at_first_tick(conductor, SET_UP))
    moved = conductor[set_up].time - ticks if set_up < len(conductor) else 0
    conductor.insert(set_up, mido.MetaMessage("set_tempo", tempo=opening, time=ticks))
    if set_up + 1 < len(conductor):
        conductor[set_up + 1] = conductor[set_up + 1].copy(time=moved)
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
