"""The `symbolic-diffusion` generator backend: Diff-BGM's piano-roll diffusion model, from its
own checkpoint folder, inside our timing, rendering and delivery.

The composer plans the piece in 4/4 (tempo map, bars, cuts on beats, sections) and writes its
rhythm section; Diff-BGM writes the piano, one 8-bar window at a time, conditioned on the
video's per-beat pictures and captions; its notes are placed on the plan's beats, so the cuts
land where the composer put them, and the composer's renderer plays the result at the exact
length. Windows of one piece, and of pieces asked for together, are denoised in batches.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence

import numpy as np
import torch

from services.config import ComposerConfig, SymbolicDiffusionConfig
from services.domain import GeneratedMusic, Look, MusicBrief, Segment
from services.errors import BgmError, ConfigError, InvalidInputError
from services.generator.backend import (
    GenerationJob,
    GeneratorInfo,
    JobResult,
    ProgressCallback,
    alone,
    finish_jobs,
    kept,
    start_jobs,
    validate_brief,
)
from services.generator.backends import OUTPUTS
from services.generator.backends.composer.arrangement import Note, Roles
from services.generator.backends.composer.backend import ComposerGenerator, Score
from services.generator.backends.symbolic_diffusion.checkpoint import (
    BEATS_PER_WINDOW,
    STEPS_PER_BEAT,
    load_diffbgm,
)
from services.generator.backends.symbolic_diffusion.conditions import (
    ConditionEncoders,
    per_beat,
    windows_of,
)
from services.generator.backends.symbolic_diffusion.rolls import (
    bass_line,
    estimated_key,
    roll_notes,
    shift_into,
)
from services.generator.backends.symbolic_diffusion.sampler import sample
from services.local_models import device_and_dtype
from services.progress import Heartbeat

VERSION = "0.1"
PIANO = "piano"
# What it plays: Diff-BGM's piano, and the composer's bass and drums where the brief asks for
# more than piano (it had offered every instrument of the vocabulary, and played these three
# whatever was asked).
INSTRUMENTS = (PIANO, "bass", "drums")
# Progress: planning up to PLANNED, denoising up to DENOISED, then rendering.
PLANNED, DENOISED = 0.05, 0.7


class SymbolicDiffusionGenerator:
    def __init__(self, config: SymbolicDiffusionConfig, composer: ComposerConfig):
        if config.model_path is None:
            raise ConfigError("the symbolic-diffusion backend needs a Diff-BGM checkpoint "
                              "folder (--generator-model PATH or "
                              "generator.symbolic_diffusion.model_path)")  # fmt: skip
        self.config = config
        device, dtype = device_and_dtype(
            config.device,
            config.dtype,
            prefer_bf16=False,
            key="generator.symbolic_diffusion.device",
        )
        self.model = load_diffbgm(config.model_path, config.checkpoint, device, dtype)
        self.encoders = ConditionEncoders(config.image_model_path, config.text_model_path,
                                          self.model.params["d_cond"], device, dtype)  # fmt: skip
        self.composer = ComposerGenerator(composer)
        n_steps = int(self.model.params["n_steps"])
        self.steps = min(config.steps or n_steps, n_steps)

    def describe(self) -> GeneratorInfo:
        composer = self.composer.describe()
        return dataclasses.replace(
            composer, name="symbolic-diffusion", version=f"{VERSION} (Diff-BGM)",
            max_duration_s=self.config.max_duration_s, structures=("free",), batches=True,
            instruments=INSTRUMENTS, outputs=OUTPUTS["symbolic-diffusion"],
        )  # fmt: skip

    def tracks(self, brief: MusicBrief) -> int:
        # Its band (piano, and the composer's bass and drums) is drawn from the composer's.
        return self.composer.tracks(brief)

    def generate(
        self, brief: MusicBrief, progress: ProgressCallback | None = None
    ) -> GeneratedMusic:
        return alone(self, brief, progress)

    def generate_batch(self, jobs: Sequence[GenerationJob]) -> list[JobResult]:
        started = start_jobs(jobs, self._start)
        windows = [(p, w) for p in started if isinstance(p, _Piece) for w in range(p.windows)]
        size = self.config.max_batch
        for first in range(0, len(windows), size):
            live = [m for m in windows[first : first + size] if m[0].error is None]
            if live:
                self._denoise(live)
        results = finish_jobs(started, self._finish)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return results

    def _start(self, job: GenerationJob) -> _Piece:
        brief = job.brief
        validate_brief(brief, self.describe(), self.composer.vocabulary)
        if PIANO in brief.negative:
            raise InvalidInputError("the symbolic-diffusion generator's music is Diff-BGM's "
                                    "piano: it cannot leave the piano out",
                                    field="brief.negative")  # fmt: skip
        heartbeat = Heartbeat(job.progress)
        score = self.composer.compose(brief, heartbeat, meter="4/4")
        plan = score.plan
        first_beats = list(range(plan.first_downbeat, len(plan.beats_s), BEATS_PER_WINDOW))
        neutral = Look(0.5, 0.5, 0.5, 0.5)
        whole = Segment(0.0, brief.duration_s, brief.tags.energy, neutral, list(brief.tags.moods))
        segments = brief.segments or [whole]
        visual, caption = self.encoders.segment_features(segments, _description(brief))
        beats = plan.beats_s
        conditions = {
            "visual": windows_of(per_beat(visual, segments, beats), first_beats),
            "caption": windows_of(per_beat(caption, segments, beats), first_beats),
        }
        heartbeat.progress(PLANNED)
        return _Piece(job, score, first_beats, conditions)

    def _denoise(self, members: list[tuple[_Piece, int]]) -> None:
        """One batch of windows; progress goes to each piece in it."""
        model = self.model.model
        with torch.inference_mode():
            caption = torch.stack([p.conditions["caption"][w] for p, w in members])
            projected = model.caption_enc(caption.to(model.caption_enc.weight))
        conditions = {
            "caption": projected,
            "visual": torch.stack([p.conditions["visual"][w] for p, w in members]).to(projected),
        }
        seeds = [p.job.brief.seed * 1009 + w for p, w in members]
        in_batch = Counter(p for p, _ in members)

        def on_step(step: int, total: int) -> None:
            for piece, count in in_batch.items():
                piece.report((piece.windows_done + count * step / total) / piece.windows)
            if all(piece.error is not None for piece in in_batch):
                raise _Abandoned

        try:
            rolls = sample(self.model, conditions, seeds, self.steps,
                           self.config.guidance_scale, on_step)  # fmt: skip
        except _Abandoned:
            return
        for (piece, window), roll in zip(members, rolls, strict=True):
            piece.rolls[window] = roll
        for piece, count in in_batch.items():
            piece.windows_done += count

    def _finish(self, piece: _Piece) -> GeneratedMusic:
        score = piece.score
        final = score.plan.final_beat
        # With a planned final chord the piano stops there too, its notes on the final beat
        # ringing as long as the composer's final chord.
        last = len(score.plan.beats_s) if final is None else final + 1 / STEPS_PER_BEAT
        piano = [note for window, first in enumerate(piece.first_beats)
                 for note in roll_notes(piece.rolls[window], first, last)]  # fmt: skip
        key = estimated_key(piano, score.home)
        if score.brief.key_is_fixed:
            # Diff-BGM writes in a key of its own: moved into the user's (the plan had named
            # the key it found, the result the one asked for, the music neither).
            shift = shift_into(key, score.home)
            piano = [dataclasses.replace(n, pitch=_in_midi_range(n.pitch + shift)) for n in piano]
            key = score.home
        if final is not None:
            for note in piano:
                if note.start >= final:
                    note.end = max(note.end, score.arrangement.end_beat)
        music = self.composer.render(_with_piano(score, piano), piece.render_progress)
        return dataclasses.replace(music, plan=dataclasses.replace(
            music.plan, key=key.name,
            sections=[dataclasses.replace(s, chords=[], key=key.name) for s in music.plan.sections],
        ))  # fmt: skip


def _in_midi_range(pitch: int) -> int:
    """`pitch` moved an octave back into MIDI's 0..127 where a shift (at most 6) took it out."""
    return pitch - 12 if pitch > 127 else pitch + 12 if pitch < 0 else pitch


def _description(brief: MusicBrief) -> str:
    """What the captions say where the tagger wrote none: the user's words, or the tags."""
    tags = brief.tags
    return brief.prompt or (f"{' '.join(tags.moods[:3])} {tags.genres[0]} music with "
                            f"{', '.join(tags.instruments) or 'piano'}").strip()  # fmt: skip


def _with_piano(score: Score, piano: list[Note]) -> Score:
    """The composer's score with Diff-BGM's piano for its melody and harmony; when the brief
    asks for more than piano, the composer's drums and a bass that doubles the piano's lowest
    notes (the composer's own bass would follow other chords)."""
    roles = score.roles
    more_than_piano = any(i != PIANO for i in score.brief.tags.instruments)
    drums = [i for i in roles.of("drums") if i != PIANO] if more_than_piano else []
    bass = [i for i in roles.of("bass") if i != PIANO] if more_than_piano else []
    band = [PIANO, *bass, *drums]
    beat_count = len(score.plan.beats_s)
    notes = [*piano, *(n for n in score.notes if n.instrument in drums)]
    for player in bass[:1]:
        notes += bass_line(piano, player, beat_count)
    parts = {"melody": (PIANO,), "comping": (PIANO,), "bass": tuple(bass[:1]),
             "drums": tuple(drums)}  # fmt: skip
    arrangement = dataclasses.replace(
        score.arrangement, notes=notes,
        section_instruments=[list(band) for _ in score.arrangement.section_instruments],
    )  # fmt: skip
    return dataclasses.replace(score, band=band, roles=Roles(parts), notes=notes,
                               arrangement=arrangement)  # fmt: skip


class _Abandoned(Exception):
    """Every piece in a batch was cancelled: stop denoising it."""


class _Piece:
    """A job being generated: its score, its windows' conditions and rolls, and whether it
    was cancelled."""

    def __init__(self, job: GenerationJob, score: Score, first_beats: list[int],
                 conditions: dict[str, torch.Tensor]):  # fmt: skip
        self.job, self.score, self.first_beats = job, score, first_beats
        self.conditions = conditions
        self.windows = len(first_beats)
        self.rolls: list[np.ndarray] = [np.zeros(0)] * self.windows
        self.windows_done = 0
        self.error: BgmError | None = None

    def report(self, fraction: float) -> None:
        if self.error is not None:
            return
        try:
            self.job.progress(PLANNED + (DENOISED - PLANNED) * fraction)
        except BgmError as error:
            self.error = kept(error)

    def render_progress(self, fraction: float) -> None:
        self.job.progress(DENOISED + (1.0 - DENOISED) * fraction)
