"""Rendering notes to audio with a SoundFont through TinySoundFont, one stem per instrument."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.errors import BgmError


class RenderError(BgmError):
    """The renderer cannot run (missing library or unusable SoundFont)."""

    status_code = "FAILED_PRECONDITION"


def default_soundfont() -> Path:
    """TimGM6mb.sf2, the General MIDI SoundFont that ships inside pretty_midi."""
    import pretty_midi

    return Path(pretty_midi.__file__).with_name("TimGM6mb.sf2")


@dataclass(frozen=True)
class ScheduledNote:
    pitch: int
    velocity: int
    start_sample: int
    end_sample: int


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

    def _synth(self, program: int, drums: bool):  # type: ignore[no-untyped-def]
        synth = self._module.Synth(samplerate=self.sample_rate)
        try:
            soundfont_id = synth.sfload(self._soundfont)
        except Exception as error:  # tinysoundfont raises a bare Exception on bad data
            raise RenderError(f"{self.path} is not a usable SoundFont ({error})") from None
        synth.program_select(0, soundfont_id, 128 if drums else 0, 0 if drums else program,
                             is_drums=drums)
        return synth

    def render(self, notes: Sequence[ScheduledNote], program: int, drums: bool,
               total_samples: int, cancelled: Callable[[], None] | None = None) -> np.ndarray:
        """Stereo float32 audio (total_samples x 2) of one instrument's notes."""
        synth = self._synth(program, drums)
        # (sample, is_on, pitch, velocity); at the same sample, note-offs come first.
        events = sorted(
            [(n.start_sample, 1, n.pitch, n.velocity) for n in notes]
            + [(n.end_sample, 0, n.pitch, 0) for n in notes]
        )
        buffer = memoryview(bytearray(total_samples * 8))
        position = 0
        for sample, is_on, pitch, velocity in events:
            sample = min(sample, total_samples)
            if sample > position:
                synth.generate_simple(sample - position, buffer=buffer[position * 8:sample * 8])
                position = sample
                if cancelled is not None:
                    cancelled()
            if is_on:
                synth.noteon(0, pitch, velocity)
            else:
                synth.noteoff(0, pitch)
        if total_samples > position:
            synth.generate_simple(total_samples - position, buffer=buffer[position * 8:])
        return np.frombuffer(buffer, dtype=np.float32).reshape(total_samples, 2).copy()
