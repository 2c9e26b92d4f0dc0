"""Notes and the timing plan as a multi-track Standard MIDI File (one track per instrument)."""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import mido

from services.generator.backends.composer.arrangement import Note
from services.generator.backends.composer.theory import Key
from services.generator.backends.composer.timing import TimingPlan

TICKS_PER_QUARTER = 480
DRUM_CHANNEL = 9
CC_VOLUME = 7
CC_PAN = 10
# The loudest part's channel volume: General MIDI's default, so that no track plays louder
# than an untouched one and the others sit under it as in the mix.
LOUDEST_VOLUME = 100
# The key signature of each key, by the tonic's pitch class (the spelling with the fewest
# accidentals; mido's names).
SIGNATURES = {
    "major": ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"),
    "minor": ("Cm", "C#m", "Dm", "Ebm", "Em", "Fm", "F#m", "Gm", "G#m", "Am", "Bbm", "Bm"),
}


class _BeatingBuffer(io.BytesIO):
    """A buffer that calls `heartbeat` at each write: mido writes a file a track at a time,
    so a cancel is heard between tracks (a two-hour piece's file takes seconds)."""

    def __init__(self, heartbeat: Callable[[], None]):
        super().__init__()
        self.heartbeat = heartbeat

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.heartbeat()
        return super().write(data)


@dataclass(frozen=True)
class Track:
    """An instrument's track: its program, its channel, and where the mix set it (channel
    volume and pan, 0..127)."""

    instrument: str
    program: int
    channel: int
    volume: int
    pan: int


def channel_volumes(gains: Sequence[float]) -> list[int]:
    """Channel volumes (CC7) that set the parts apart as the mix's gains do: General MIDI
    players and SoundFont synthesizers attenuate by 40 log10(v / 127) dB."""
    loudest = max(gains)
    return [max(1, round(LOUDEST_VOLUME * math.sqrt(gain / loudest))) for gain in gains]


class _Clock:
    """Plan beats to MIDI ticks. Tick 0 is the first sample: a pickup before the first beat
    (a whole number of 64th notes, as the timing plan chooses it) comes first."""

    def __init__(self, plan: TimingPlan):
        self.per_beat = round(TICKS_PER_QUARTER * plan.meter.quarters)
        self.lead = plan.lead_beats

    def tick(self, beat: float) -> int:
        return round((beat + self.lead) * self.per_beat)


def _tempo_track(
    plan: TimingPlan, clock: _Clock, keys: Sequence[tuple[float, Key]]
) -> mido.MidiTrack:
    """A tempo at every beat whose length changes (the first from tick 0); the meter from the
    first downbeat, and before it the pickup as a bar of its own (_pickup_meter); the key
    signature from tick 0 and wherever a section changes key."""
    track = mido.MidiTrack()
    events: list[tuple[int, mido.MetaMessage]] = []
    previous_key = None
    for beat, key in keys:
        if key != previous_key:
            tick = 0 if previous_key is None else max(0, clock.tick(beat))
            signature = SIGNATURES[key.mode][key.tonic]
            events.append((tick, mido.MetaMessage("key_signature", key=signature)))
            previous_key = key
    beats = plan.beats_s
    quarters = plan.meter.quarters
    previous = None
    for i in range(len(beats)):
        if len(beats) > 1:
            period = beats[i + 1] - beats[i] if i + 1 < len(beats) else beats[-1] - beats[-2]
        else:
            period = 60.0 / plan.base_bpm
        microseconds = round(period / quarters * 1e6)
        if microseconds != previous:
            tick = 0 if i == 0 else clock.tick(i)
            events.append((tick, mido.MetaMessage("set_tempo", tempo=microseconds)))
            previous = microseconds
    downbeat_tick = clock.tick(plan.first_downbeat)
    if downbeat_tick > 0:
        numerator, denominator = _pickup_meter(round(downbeat_tick / (TICKS_PER_QUARTER / 16)))
        events.append(
            (0, mido.MetaMessage("time_signature", numerator=numerator, denominator=denominator))
        )
    meter = plan.meter
    events.append(
        (
            downbeat_tick,
            mido.MetaMessage(
                "time_signature", numerator=meter.numerator, denominator=meter.denominator
            ),
        )
    )
    _append_sorted(track, events)
    return track


def _pickup_meter(sixty_fourths: int) -> tuple[int, int]:
    """A pickup of so many 64th notes as a time signature in its plainest terms, down to
    quarters (48/64 as 3/4, 40/64 as 5/8): notation programs and DAWs read x/64 badly or
    not at all."""
    numerator, denominator = sixty_fourths, 64
    while numerator % 2 == 0 and denominator > 4:
        numerator, denominator = numerator // 2, denominator // 2
    return numerator, denominator


def _append_sorted(track: mido.MidiTrack, events: list[tuple[int, mido.Message]]) -> None:
    events.sort(key=lambda item: (item[0], item[1].type == "note_on"))
    now = 0
    for tick, message in events:
        # Set in place: copy(time=...) would validate every message a second time.
        message.time = tick - now
        track.append(message)
        now = tick


def _check_data_bytes(
    instrument: str, changes: Sequence[tuple[float, int, int]], notes: Sequence[Note]
) -> None:
    """Every pitch, velocity, controller and value must fit a MIDI data byte (0..127)."""
    values = [v for _, controller, value in changes for v in (controller, value)]
    values += [v for note in notes for v in (note.pitch, note.velocity)]
    if values and not 0 <= min(values) <= max(values) <= 127:
        raise ValueError(f"{instrument}: a MIDI data byte outside 0..127")


def midi_bytes(
    notes_by_instrument: Mapping[str, Sequence[Note]],
    plan: TimingPlan,
    tracks: Sequence[Track],
    keys: Sequence[tuple[float, Key]],
    controls: Mapping[str, Sequence[tuple[float, int, int]]],
    heartbeat: Callable[[], None],
) -> bytes:
    """`keys`: (beat, key) where each section starts. `controls`: per instrument, (beat,
    controller, value) changes (the performance's pedal and expression). A drum track's
    program is its kit (GS kits on channel 10). Each track starts with its program, volume
    and pan, so a General MIDI player with the same bank hears the mix's balance (without
    its processing). `heartbeat` is called often (it raises to cancel)."""
    clock = _Clock(plan)
    song = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_QUARTER)
    song.tracks.append(_tempo_track(plan, clock, keys))
    for track_info in tracks:
        track = mido.MidiTrack()
        track.append(mido.MetaMessage("track_name", name=track_info.instrument))
        channel = track_info.channel
        events: list[tuple[int, mido.Message]] = [
            (0, mido.Message("program_change", channel=channel, program=track_info.program)),
            (0, mido.Message("control_change", channel=channel, control=CC_VOLUME,
                             value=track_info.volume)),
            (0, mido.Message("control_change", channel=channel, control=CC_PAN,
                             value=track_info.pan)),
        ]  # fmt: skip
        changes = controls.get(track_info.instrument, ())
        notes = notes_by_instrument.get(track_info.instrument, ())
        _check_data_bytes(track_info.instrument, changes, notes)
        # Checked above for the whole track: mido's check of every message was a tenth of a
        # 3-minute piece's render.
        for beat, controller, value in changes:
            message = mido.Message(
                "control_change", skip_checks=True, channel=track_info.channel,
                control=controller, value=value,
            )  # fmt: skip
            events.append((max(0, clock.tick(beat)), message))
        for note in notes:
            heartbeat()
            on = max(0, clock.tick(note.start))
            off = max(on + 1, clock.tick(note.end))
            events.append(
                (
                    on,
                    mido.Message(
                        "note_on",
                        skip_checks=True,
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
                        "note_off",
                        skip_checks=True,
                        channel=track_info.channel,
                        note=note.pitch,
                        velocity=0,
                    ),
                )
            )
        _append_sorted(track, events)
        song.tracks.append(track)
    buffer = _BeatingBuffer(heartbeat)
    song.save(file=buffer)
    return buffer.getvalue()
