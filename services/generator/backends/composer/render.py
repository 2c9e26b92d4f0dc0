"""Rendering notes to audio with a SoundFont through TinySoundFont, one stem per instrument."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.errors import BgmError


class RenderError(BgmError):
    """The renderer cannot run (missing library or unusable SoundFont)."""

    status_code = "FAILED_PRECONDITION"


def default_soundfont() -> Path:
    """TimGM6mb.sf2, the General MIDI SoundFont that ships inside pretty_midi."""
    import pretty_midi

    return Path(pretty_midi.__file__).with_name("TimGM6mb.sf2")


# Voices per instrument. Past this the oldest (release tails, by then) are cut: it bounds the
# cost of dense parts without audible loss.
MAX_VOICES = 10


@dataclass(frozen=True)
class ScheduledNote:
    pitch: int
    velocity: int
    start_sample: int
    end_sample: int


@dataclass(frozen=True)
class RenderPart:
    """One instrument's notes, its General MIDI program and its level in the mix."""

    name: str
    notes: Sequence[ScheduledNote]
    program: int
    drums: bool
    gain: float
    # MIDI pan, 0 (left) .. 64 (centre) .. 127 (right).
    pan: int = 64


class SoundFontRenderer:
    def __init__(self, soundfont: Path | None, sample_rate: int):
        try:
            import tinysoundfont
        except ImportError as error:
            raise RenderError(
                "tinysoundfont is not installed: run `pip install --no-deps tinysoundfont` "
                "(its only requirement, PyAudio, is for live playback, which bgm never uses)"
            ) from error
        self._module = tinysoundfont
        path = soundfont or default_soundfont()
        try:
            self._soundfont = path.read_bytes()
        except OSError as error:
            raise RenderError(f"cannot read SoundFont {path}: {error.strerror}") from None
        self.path = path
        self.sample_rate = sample_rate
        # Load once up front so an unusable file fails here, not half-way through a render.
        self._synth(program=0, drums=False)

    def _synth(self, program: int, drums: bool, gain_db: float = 0.0, pan: int = 64) -> Any:
        synth = self._module.Synth(gain=gain_db, samplerate=self.sample_rate)
        try:
            soundfont_id = synth.sfload(self._soundfont, max_voices=MAX_VOICES)
        except Exception as error:  # tinysoundfont raises a bare Exception on bad data
            raise RenderError(f"{self.path} is not a usable SoundFont ({error})") from None
        synth.program_select(
            0, soundfont_id, 128 if drums else 0, 0 if drums else program, is_drums=drums
        )
        synth.control_change(0, 10, pan)  # MIDI CC 10: pan, 0 left .. 64 centre .. 127 right
        return synth

    def render(
        self,
        parts: Sequence[RenderPart],
        total_samples: int,
        keep_stems: bool,
        progress: Callable[[float], None] | None = None,
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The mix (total_samples x 2, float32) of every part, and each part's own audio when
        `keep_stems`. All parts advance together a block at a time, so memory holds the mix
        (and the stems asked for), never a whole extra track per part. Without stems the
        parts are summed by the synthesizer itself, straight into one buffer."""
        mix = np.zeros((total_samples, 2), dtype=np.float32)
        stems = {}
        voices = []
        for part in parts:
            if keep_stems:
                stems[part.name] = np.zeros((total_samples, 2), dtype=np.float32)
            # (sample, is_on, pitch, velocity); at the same sample, note-offs come first.
            events = sorted(
                [(n.start_sample, 1, n.pitch, n.velocity) for n in part.notes]
                + [(n.end_sample, 0, n.pitch, 0) for n in part.notes]
            )
            synth = self._synth(
                part.program, part.drums, gain_db=20 * math.log10(part.gain), pan=part.pan
            )
            voices.append((part.name, synth, events, [0]))
        block = self.sample_rate * 5
        buffer = memoryview(bytearray(block * 8))
        block_audio = np.frombuffer(buffer, dtype=np.float32).reshape(-1, 2)
        for block_start in range(0, total_samples, block):
            block_end = min(block_start + block, total_samples)
            length = block_end - block_start
            if not keep_stems:
                block_audio[:length] = 0.0
            for name, synth, events, cursor in voices:
                _advance(
                    synth, events, cursor, block_start, block_end, buffer, mix_into=not keep_stems
                )
                if keep_stems:
                    stems[name][block_start:block_end] = block_audio[:length]
                    mix[block_start:block_end] += block_audio[:length]
            if not keep_stems:
                mix[block_start:block_end] = block_audio[:length]
            if progress is not None:
                progress(block_end / total_samples)
        return mix, stems


def _fill(synth: Any, view: memoryview, mix_into: bool) -> None:
    """Synthesize into `view`, adding to what is there when `mix_into`."""
    for font in synth.soundfonts.values():
        font.render(view, mix_into)


def _advance(
    synth: Any,
    events: list[tuple[int, int, int, int]],
    cursor: list[int],
    block_start: int,
    block_end: int,
    buffer: memoryview,
    mix_into: bool,
) -> None:
    """Play one part's events that fall in [block_start, block_end) into the block buffer."""
    position = block_start
    while cursor[0] < len(events) and events[cursor[0]][0] < block_end:
        sample, is_on, pitch, velocity = events[cursor[0]]
        if sample > position:
            _fill(
                synth, buffer[(position - block_start) * 8 : (sample - block_start) * 8], mix_into
            )
            position = sample
        if is_on:
            synth.noteon(0, pitch, velocity)
        else:
            synth.noteoff(0, pitch)
        cursor[0] += 1
    if block_end > position:
        _fill(synth, buffer[(position - block_start) * 8 : (block_end - block_start) * 8], mix_into)
