"""Rendering performed notes to audio with a SoundFont, one dry stereo signal per part, each
played centred: the mix places it (mixing.py), since a synthesizer's pan barely moves a stereo
preset (FluidSynth pans each side of a pair apart, and a pair panned to 82 had stayed within
1 dB of the centre).

Two synthesizers play the bank (bank.py says which): FluidSynth, which loads it once and plays
every part on its own MIDI channel into its own output pair, and tinysoundfont, one instance per
part. Both hand the parts back a block at a time, so a two-hour piece never holds a whole track
per part.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from ctypes import c_int, c_void_p
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from services.errors import BgmError
from services.generator.backends.composer.bank import SoundBank

# Voices per instrument for tinysoundfont, and FluidSynth's for the whole band: caps on the
# cost that the composer's bands stay under. Past a cap the synthesizer cuts a sounding note
# or its release (tinysoundfont, with none in release, drops the new note): at the old 10 and
# 48 the strings and brass lost whole chords and the strings their releases, which are loud
# and long (under tinysoundfont, what was cut from pop's strings lay only 3 dB under them).
# Strings holding three notes ask tinysoundfont for over 64 voices at times; MuseScore
# General's orchestral band (strings, brass and woodwinds, several voices a note) about 100 on
# average, 150 at most.
MAX_VOICES = 128
POLYPHONY = 256
# FluidSynth's output level (the mix sets the balance, mastering the loudness).
FLUID_GAIN = 0.6
# A key struck again while it sounds: its previous note fades over this (the string is
# struck anew; the bank's own release, 0.55 s for MuseScore General's piano, would leave a
# copy of the sample ringing under every repeated chord).
RESTRIKE_FADE_S = 0.1
# The SoundFont generator of the volume envelope's release time (timecents).
GEN_VOLENVRELEASE = 38
# Samples per block handed to the mix.
BLOCK_S = 1.0
# The percussion bank of a SoundFont.
DRUM_BANK = 128


class RenderError(BgmError):
    """The renderer cannot run (missing library or unusable SoundFont)."""

    status_code = "FAILED_PRECONDITION"


@dataclass(frozen=True)
class ScheduledNote:
    pitch: int
    velocity: int
    start_sample: int
    end_sample: int


@dataclass(frozen=True)
class Control:
    """A MIDI controller change (sustain pedal 64, expression 11, ...) at a sample."""

    sample: int
    controller: int
    value: int


@dataclass(frozen=True)
class RenderPart:
    """One instrument's performance: its notes and controller changes and its General MIDI
    program (a drum kit's number for drums)."""

    name: str
    notes: Sequence[ScheduledNote]
    program: int
    drums: bool
    controls: Sequence[Control] = field(default_factory=tuple)


# (sample, kind, a, b): kind 0 note-off, 1 controller, 2 note-on; at one sample note-offs
# come first, then controllers (a pedal lifted before the next chord sounds), then note-ons.
# A note-off's b says how the note stops: RELEASE, or RESTRIKE when its key is struck again
# while it sounds.
Event = tuple[int, int, int, int]
RELEASE, RESTRIKE = 0, 1
CC_SUSTAIN = 64
# Past every piece's last sample: a note-off there is never played.
PEDAL_NEVER_LIFTS = 2**62


def part_events(part: RenderPart) -> list[Event]:
    """The part's events in playing order, each note stopped where it stops (`_stops`)."""
    events: list[Event] = [(stop, 0, n.pitch, how) for n, stop, how in _stops(part)]
    events += [(c.sample, 1, c.controller, c.value) for c in part.controls
               if c.controller != CC_SUSTAIN]  # fmt: skip
    events += [(n.start_sample, 2, n.pitch, n.velocity) for n in part.notes]
    events.sort()
    return events


def _stops(part: RenderPart) -> list[tuple[ScheduledNote, int, int]]:
    """Every note with the sample it stops at and how (RELEASE or RESTRIKE).

    The sustain pedal is played here rather than by the synthesizer (tinysoundfont has none;
    FluidSynth's keeps every strike of a key sounding): a note let go while the pedal is down
    sounds on until it lifts. And a key struck again stops its previous note there, pedal or
    not, as a piano has one string per key; its note-off would otherwise silence the new
    strike too. A drum struck again rings on, so only its note-off moves.
    """
    downs: list[int] = []
    ups: list[int] = []
    for control in sorted(part.controls, key=lambda c: c.sample):
        if control.controller != CC_SUSTAIN:
            continue
        if control.value >= 64 and len(downs) == len(ups):
            downs.append(control.sample)
        elif control.value < 64 and len(downs) > len(ups):
            ups.append(control.sample)
    if len(downs) > len(ups):
        ups.append(PEDAL_NEVER_LIFTS)  # held to the end of the piece
    by_key: dict[int, list[ScheduledNote]] = {}
    for note in sorted(part.notes, key=lambda n: n.start_sample):
        by_key.setdefault(note.pitch, []).append(note)
    stops = []
    for strikes in by_key.values():
        for note, following in zip(strikes, [*strikes[1:], None], strict=True):
            stop, how = note.end_sample, RELEASE
            # Let go after the pedal went down and before it lifts (a note-off comes before
            # the pedal at one sample): held until it lifts.
            span = bisect.bisect_left(downs, stop) - 1
            if span >= 0 and stop < ups[span]:
                stop = ups[span]
            if following is not None and following.start_sample < stop:
                stop = following.start_sample
                how = RELEASE if part.drums else RESTRIKE
            stops.append((note, stop, how))
    return stops


Blocks = Iterator[tuple[int, int, list[np.ndarray]]]


class Synthesizer:
    """Plays parts with a bank at one sample rate; `blocks` yields (start, end, one dry
    (2 x samples) float32 array per part, channels first as the mix's processors take
    them) until `total_samples`, calling `heartbeat` (it raises to cancel) after each part's
    events as it prepares them (a two-hour part's take up to 0.4 s) and at every block."""

    bank: SoundBank
    sample_rate: int

    def blocks(
        self, parts: Sequence[RenderPart], total_samples: int, heartbeat: Callable[[], None]
    ) -> Blocks:
        raise NotImplementedError

    def has_program(self, bank_number: int, program: int) -> bool:
        raise NotImplementedError


def synthesizer(bank: SoundBank, sample_rate: int) -> Synthesizer:
    if not bank.path.is_file():
        what = "a folder, not a file" if bank.path.is_dir() else "no such file"
        raise RenderError(f"cannot read SoundFont {bank.path}: {what}")
    try:
        with bank.path.open("rb") as file:
            head = file.read(12)
    except OSError as error:
        raise RenderError(f"cannot read SoundFont {bank.path}: {error.strerror}") from None
    # Anything else had reached FluidSynth, which printed its own errors (and libinstpatch's
    # GLib criticals) before the refusal.
    if head[:4] != b"RIFF" or head[8:12] != b"sfbk":
        raise RenderError(f"{bank.path} is not a usable SoundFont: an .sf2 or .sf3 file is "
                          "RIFF data of the form 'sfbk'")  # fmt: skip
    stated, size = int.from_bytes(head[4:8], "little") + 8, bank.path.stat().st_size
    if stated != size:
        raise RenderError(f"{bank.path} is not a usable SoundFont: it says it holds {stated} "
                          f"bytes and holds {size} (cut short, or more than one file)")  # fmt: skip
    if bank.synthesizer == "fluidsynth":
        return FluidSynthesizer(bank, sample_rate)
    return TinySoundFontSynthesizer(bank, sample_rate)


def _block_length(sample_rate: int) -> int:
    return round(sample_rate * BLOCK_S)


# ---- FluidSynth -----------------------------------------------------------------------------

# MIDI channels, and so parts one FluidSynth instance renders apart.
MIDI_CHANNELS = 16
FLUID_MELODIC, FLUID_DRUM = 0, 1


class FluidSynthesizer(Synthesizer):
    """One FluidSynth instance plays every part of a piece, each on its own channel into its
    own output pair. Loading the bank takes about a second once per replica. Each render's
    fresh instance borrows a loaded copy of it (under a millisecond, where loading one took
    0.1-0.25 s with FluidSynth sharing the samples); a render at a time uses each copy, as
    FluidSynth counts the voices that use a bank's samples without a lock."""

    def __init__(self, bank: SoundBank, sample_rate: int):
        from ctypes import POINTER, c_float

        try:
            import fluidsynth
        except ImportError as error:
            raise RenderError(f"FluidSynth cannot be loaded: {error}") from None
        self.bank = bank
        self.sample_rate = sample_rate
        self._fluidsynth = fluidsynth
        # The output buffers go in as plain addresses: one array of them per call, with no
        # ctypes cast per buffer (thousands of calls a piece).
        self._process = fluidsynth.cfunc(
            "fluid_synth_process", c_int, ("synth", c_void_p, 1), ("len", c_int, 1),
            ("nfx", c_int, 1), ("fx", POINTER(c_void_p), 1), ("nout", c_int, 1),
            ("out", POINTER(c_void_p), 1),
        )  # fmt: skip
        self._set_channel_type = fluidsynth.cfunc(
            "fluid_synth_set_channel_type", c_int, ("synth", c_void_p, 1), ("chan", c_int, 1),
            ("type", c_int, 1),
        )  # fmt: skip
        self._voicelist = fluidsynth.cfunc(
            "fluid_synth_get_voicelist", None, ("synth", c_void_p, 1),
            ("buf", POINTER(c_void_p), 1), ("bufsize", c_int, 1), ("id", c_int, 1),
        )  # fmt: skip
        voice = ("voice", c_void_p, 1)
        self._voice_is_on = fluidsynth.cfunc("fluid_voice_is_on", c_int, voice)
        self._voice_channel = fluidsynth.cfunc("fluid_voice_get_channel", c_int, voice)
        self._voice_key = fluidsynth.cfunc("fluid_voice_get_key", c_int, voice)
        self._voice_gen_set = fluidsynth.cfunc(
            "fluid_voice_gen_set", None, voice, ("gen", c_int, 1), ("value", c_float, 1)
        )
        self._voice_update = fluidsynth.cfunc(
            "fluid_voice_update_param", None, voice, ("gen", c_int, 1)
        )
        self._add_sfont = fluidsynth.cfunc(
            "fluid_synth_add_sfont", c_int, ("synth", c_void_p, 1), ("sfont", c_void_p, 1)
        )
        self._remove_sfont = fluidsynth.cfunc(
            "fluid_synth_remove_sfont", c_int, ("synth", c_void_p, 1), ("sfont", c_void_p, 1)
        )
        self._sfont_by_id = fluidsynth.cfunc(
            "fluid_synth_get_sfont_by_id", c_void_p, ("synth", c_void_p, 1), ("id", c_int, 1)
        )
        self._sfont_preset = fluidsynth.cfunc(
            "fluid_sfont_get_preset", c_void_p, ("sfont", c_void_p, 1), ("bank", c_int, 1),
            ("prenum", c_int, 1),
        )  # fmt: skip
        self._restrike_release = 1200.0 * math.log2(RESTRIKE_FADE_S)
        # Loaded copies of the bank that no render is using; each stays loaded in the
        # instance that loaded it (its holder), which frees it with the process.
        self._idle: list[tuple[Any, int]] = []
        self._idle_lock = threading.Lock()
        self._anchor = self._load()
        self._idle.append(self._anchor)

    def _load(self) -> tuple[Any, int]:
        """A holder instance with a copy of the bank loaded, and the copy's address."""
        holder = self._fluidsynth.Synth(**{"synth.reverb.active": 0, "synth.chorus.active": 0})
        sfid = holder.sfload(str(self.bank.path))
        if sfid < 0:
            holder.delete()
            raise RenderError(f"{self.bank.path} is not a usable SoundFont")
        return holder, self._sfont_by_id(holder.synth, sfid)

    def _borrow(self) -> tuple[Any, int]:
        with self._idle_lock:
            if self._idle:
                return self._idle.pop()
        return self._load()

    def _give_back(self, loaded: tuple[Any, int]) -> None:
        with self._idle_lock:
            self._idle.append(loaded)

    def _new(self, groups: int) -> Any:
        """An instance with one output pair per part (FluidSynth mixes into every pair it has,
        used or not) and no bank."""
        return self._fluidsynth.Synth(
            gain=FLUID_GAIN,
            samplerate=float(self.sample_rate),
            channels=MIDI_CHANNELS,
            **{
                "synth.audio-groups": groups,
                "synth.audio-channels": groups,
                # The mix adds its own space (per-genre sends).
                "synth.reverb.active": 0,
                "synth.chorus.active": 0,
                "synth.polyphony": POLYPHONY,
            },
        )

    def has_program(self, bank_number: int, program: int) -> bool:
        _, sfont = self._anchor
        return self._sfont_preset(sfont, bank_number, program) is not None

    def blocks(
        self, parts: Sequence[RenderPart], total_samples: int, heartbeat: Callable[[], None]
    ) -> Blocks:
        if len(parts) > MIDI_CHANNELS:
            raise RenderError(f"at most {MIDI_CHANNELS} parts, not {len(parts)}")
        # A fresh instance per render: one reused keeps state that a reset leaves (the same
        # seed would not play the same twice).
        loaded = self._borrow()
        try:
            synth = self._new(max(1, len(parts)))
            sfont = loaded[1]
            try:
                sfid = self._add_sfont(synth.synth, sfont)
                yield from self._play(synth, sfid, parts, total_samples, heartbeat)
            finally:
                # Deleting an instance deletes the banks it holds, so this one is taken out
                # first; with no program set, no channel then looks for a preset (and warns).
                for channel in range(MIDI_CHANNELS):
                    synth.program_unset(channel)
                self._remove_sfont(synth.synth, sfont)
                synth.delete()
        finally:
            self._give_back(loaded)

    def _play(
        self,
        synth: Any,
        sfid: int,
        parts: Sequence[RenderPart],
        total: int,
        heartbeat: Callable[[], None],
    ) -> Blocks:
        handle = synth.synth
        for channel, part in enumerate(parts):
            self._set_channel_type(handle, channel, FLUID_DRUM if part.drums else FLUID_MELODIC)
            bank_number = DRUM_BANK if part.drums else 0
            if synth.program_select(channel, sfid, bank_number, part.program) != 0:
                name = self.bank.path.name
                raise RenderError(f"{name} has no preset {bank_number}:{part.program}")
        events = []
        for channel, part in enumerate(parts):
            events += [(sample, kind, channel, a, b) for sample, kind, a, b in part_events(part)]
            heartbeat()
        events.sort()
        outputs = 2 * len(parts)
        block = _block_length(self.sample_rate)
        buffer = np.zeros((outputs, block), dtype=np.float32)
        rows = [buffer.ctypes.data + r * block * 4 for r in range(outputs)]
        voices = (c_void_p * (POLYPHONY + 1))()
        cursor = 0
        for block_start in range(0, total, block):
            heartbeat()
            block_end = min(block_start + block, total)
            buffer[:] = 0.0
            position = block_start
            while cursor < len(events) and events[cursor][0] < block_end:
                sample, kind, channel, a, b = events[cursor]
                if sample > position:
                    self._render(handle, rows, position - block_start, sample - position)
                    position = sample
                if kind == 2:
                    synth.noteon(channel, a, b)
                elif kind == 1:
                    synth.cc(channel, a, b)
                else:
                    if b == RESTRIKE:
                        self._fade_key(handle, voices, channel, a)
                    synth.noteoff(channel, a)
                cursor += 1
            if block_end > position:
                self._render(handle, rows, position - block_start, block_end - position)
            length = block_end - block_start
            yield (
                block_start,
                block_end,
                [buffer[2 * i : 2 * i + 2, :length].copy() for i in range(len(parts))],
            )

    def _fade_key(self, handle: Any, voices: Any, channel: int, key: int) -> None:
        """Shorten the release of the key's sounding voices to RESTRIKE_FADE_S (before its
        note-off)."""
        self._voicelist(handle, voices, len(voices), -1)
        for voice in voices:
            if not voice:
                break
            if (
                self._voice_key(voice) == key
                and self._voice_channel(voice) == channel
                and self._voice_is_on(voice)
            ):
                self._voice_gen_set(voice, GEN_VOLENVRELEASE, self._restrike_release)
                self._voice_update(voice, GEN_VOLENVRELEASE)

    def _render(self, handle: Any, rows: list[int], offset: int, length: int) -> None:
        """FluidSynth adds `length` samples of every channel group into the block buffer's
        rows (their addresses), from `offset`."""
        skip = offset * 4
        pointers = (c_void_p * len(rows))(*[row + skip for row in rows])
        self._process(handle, length, 0, None, len(rows), pointers)


# ---- tinysoundfont --------------------------------------------------------------------------


class TinySoundFontSynthesizer(Synthesizer):
    """tinysoundfont (from PyPI, no system library): one instance per part, each loading the
    bank from bytes read once."""

    def __init__(self, bank: SoundBank, sample_rate: int):
        try:
            import tinysoundfont
        except ImportError as error:
            raise RenderError(
                "tinysoundfont is not installed: run `pip install --no-deps tinysoundfont` "
                "(its only requirement, PyAudio, is for live playback, which bgm never uses)"
            ) from error
        self._module = tinysoundfont
        try:
            self._soundfont = bank.path.read_bytes()
        except OSError as error:
            raise RenderError(f"cannot read SoundFont {bank.path}: {error.strerror}") from None
        self.bank = bank
        self.sample_rate = sample_rate
        # Load once up front so an unusable file fails here, not half-way through a render.
        self._synth(RenderPart("probe", (), 0, False))

    def _load(self) -> tuple[Any, int]:
        synth = self._module.Synth(samplerate=self.sample_rate)
        try:
            return synth, synth.sfload(self._soundfont, max_voices=MAX_VOICES)
        except Exception as error:  # tinysoundfont raises a bare Exception on bad data
            raise RenderError(f"{self.bank.path} is not a usable SoundFont ({error})") from None

    def has_program(self, bank_number: int, program: int) -> bool:
        synth, sfid = self._load()
        return synth.sfpreset_name(sfid, bank_number, program) is not None

    def _synth(self, part: RenderPart) -> Any:
        synth, sfid = self._load()
        bank_number = DRUM_BANK if part.drums else 0
        try:
            synth.program_select(0, sfid, bank_number, part.program, is_drums=part.drums)
        except Exception as error:
            raise RenderError(
                f"{self.bank.path.name} has no preset {bank_number}:{part.program} ({error})"
            ) from None
        return synth

    def blocks(
        self, parts: Sequence[RenderPart], total_samples: int, heartbeat: Callable[[], None]
    ) -> Blocks:
        voices = []
        for part in parts:
            voices.append((self._synth(part), part_events(part), [0]))
            heartbeat()
        block = _block_length(self.sample_rate)
        buffers = [memoryview(bytearray(block * 8)) for _ in parts]
        for block_start in range(0, total_samples, block):
            heartbeat()
            block_end = min(block_start + block, total_samples)
            length = block_end - block_start
            audio = []
            for (synth, events, cursor), buffer in zip(voices, buffers, strict=True):
                _advance(synth, events, cursor, block_start, block_end, buffer)
                samples = np.frombuffer(buffer, dtype=np.float32).reshape(-1, 2)
                audio.append(np.ascontiguousarray(samples[:length].T))
            yield block_start, block_end, audio


def _fill(synth: Any, view: memoryview) -> None:
    for font in synth.soundfonts.values():
        font.render(view, False)


def _advance(
    synth: Any,
    events: list[Event],
    cursor: list[int],
    block_start: int,
    block_end: int,
    buffer: memoryview,
) -> None:
    """Play one part's events that fall in [block_start, block_end) into its block buffer."""
    position = block_start
    while cursor[0] < len(events) and events[cursor[0]][0] < block_end:
        sample, kind, a, b = events[cursor[0]]
        if sample > position:
            _fill(synth, buffer[(position - block_start) * 8 : (sample - block_start) * 8])
            position = sample
        if kind == 2:
            synth.noteon(0, a, b)
        elif kind == 1:
            synth.control_change(0, a, b)
        else:
            synth.noteoff(0, a)
        cursor[0] += 1
    if block_end > position:
        _fill(synth, buffer[(position - block_start) * 8 : (block_end - block_start) * 8])
