"""`bgm score`: the whole job in one process, with the tagger's and the generator's backends
called directly and the gateway's delivery (checks, mastering, outputs) around them.

The gateway service does the same through the services' gRPC contracts.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from services.config import RequestLimits, SpeechDuckingConfig
from services.domain import (
    CandidateScore,
    GeneratedMusic,
    LevelCurve,
    MotionCurve,
    MusicBrief,
    MusicPlan,
    OutputOptions,
    SpeechInterval,
    UserControls,
    VideoAnalysis,
)
from services.edge import check_work
from services.errors import InvalidInputError
from services.gateway.controls import make_brief
from services.gateway.delivery import (
    check_request,
    master_music,
    speech_ducking,
    with_default_rate,
    write_outputs,
)
from services.gateway.mastering import LoudnessReport
from services.generator.backend import GeneratorBackend
from services.generator.candidates import candidate_jobs, ranked
from services.media.midi import delayed
from services.progress import Heartbeat, ProgressCallback
from services.rules import speech_matters
from services.tagger.backend import AnalysisRequest, TaggerBackend
from services.vocabulary import Vocabulary


@dataclass(frozen=True)
class ScoreResult:
    analysis: VideoAnalysis
    brief: MusicBrief
    plan: MusicPlan
    loudness: LoudnessReport
    written: list[Path]
    # Seconds spent per stage.
    timings: dict[str, float] = field(default_factory=dict)
    # With several candidates: each one's fit, best first (the delivered music is the first).
    ranking: list[CandidateScore] = field(default_factory=list)
    # What the generator renders with (its Describe's `sound`; "" where it does not say).
    sound: str = ""


@dataclass(frozen=True)
class Part:
    """A stretch of a video to score, seconds from its start (end None: to the end)."""

    start_s: float
    end_s: float | None = None

    def end_in(self, length_s: float) -> float:
        """Where the stretch ends in a video of `length_s`; refused unless it lies inside it
        and lasts at least MIN_PART_S."""
        end = length_s if self.end_s is None else self.end_s
        if not 0.0 <= self.start_s < end <= length_s + 1e-6:
            raise InvalidInputError(
                f"--start {self.start_s:g} / --end {end:g} must satisfy 0 <= start < end <= "
                f"{length_s:.2f} (the video's length)"
            )
        if end - self.start_s < MIN_PART_S:
            raise InvalidInputError(f"a part must last at least {MIN_PART_S:g} s")
        return end

    def of(self, analysis: VideoAnalysis) -> VideoAnalysis:
        """The analysis of this stretch alone, its times from the stretch's start."""
        end = self.end_in(analysis.duration_s)
        start, length = self.start_s, end - self.start_s
        segments = [
            dataclasses.replace(s, start_s=max(s.start_s, start) - start,
                                end_s=min(s.end_s, end) - start)
            for s in analysis.segments if s.end_s > start and s.start_s < end
        ]  # fmt: skip
        if segments:
            segments[-1] = dataclasses.replace(segments[-1], end_s=length)
        cuts = [dataclasses.replace(c, time_s=c.time_s - start)
                for c in analysis.cuts if start < c.time_s < end]  # fmt: skip
        hz = analysis.motion.hz
        motion = MotionCurve(hz, analysis.motion.values[round(start * hz) : round(end * hz)])
        speech = [SpeechInterval(max(i.start_s, start) - start, min(i.end_s, end) - start)
                  for i in analysis.speech if i.end_s > start and i.start_s < end]  # fmt: skip
        level_hz = analysis.loudness.hz
        loudness = LevelCurve(level_hz, analysis.loudness.values[
            round(start * level_hz) : round(end * level_hz)])  # fmt: skip
        return dataclasses.replace(analysis, duration_s=length, segments=segments, cuts=cuts,
                                   motion=motion, speech=speech, loudness=loudness)  # fmt: skip

    def placed(self, music: GeneratedMusic, whole_s: float) -> GeneratedMusic:
        """The part's music at its place in the whole video's length, silence around it: the
        audio, the stems and the MIDI, so that they line up on one timeline."""
        rate = music.sample_rate
        before = round(self.start_s * rate)
        total = round(whole_s * rate)

        def padded(audio: np.ndarray) -> np.ndarray:
            out = np.zeros((total, audio.shape[1]), dtype=np.float32)
            out[before : before + len(audio)] = audio[: total - before]
            return out

        stems = {name: padded(audio) for name, audio in music.stems.items()}
        midi = delayed(music.midi, self.start_s) if music.midi else music.midi
        return dataclasses.replace(music, audio=padded(music.audio), stems=stems, midi=midi)


# The shortest part of a video worth scoring.
MIN_PART_S = 1.0


class ScorePipeline:
    """The whole job in one process, with the tagger and generator as local backends."""

    def __init__(
        self,
        tagger: TaggerBackend,
        generator: GeneratorBackend,
        vocabulary: Vocabulary,
        limits: RequestLimits,
        speech_ducking: SpeechDuckingConfig | None = None,
    ):
        self.tagger = tagger
        self.generator = generator
        self.vocabulary = vocabulary
        self.limits = limits
        self.speech_ducking = speech_ducking or SpeechDuckingConfig()

    def score(
        self,
        video: Path,
        controls: UserControls,
        options: OutputOptions,
        progress: ProgressCallback | None = None,
        part: Part | None = None,
    ) -> ScoreResult:
        """Score `video`; with `part`, music for that stretch only, placed there in the
        output (silence, or the video's own sound, elsewhere)."""
        report = progress or (lambda fraction: None)
        timings: dict[str, float] = {}
        started = time.perf_counter()
        info = self.generator.describe()
        options = with_default_rate(options, info)
        controls = check_request(
            video, controls, options, info, self.vocabulary, self.limits, Heartbeat(report)
        ).controls
        timings["checks"] = time.perf_counter() - started

        mark = time.perf_counter()
        # Music that replaces the video's sound has no use for its speech: the tagger does
        # not listen (the gateway asks its tagger the same).
        listen = speech_matters(controls.speech, options.keep_original_audio)
        analysis = self.tagger.analyze(
            AnalysisRequest(video, prompt=controls.prompt, listen=listen),
            progress=lambda fraction: report(0.35 * fraction),
        )
        timings["analysis"] = time.perf_counter() - mark
        whole_s = analysis.duration_s
        # Ducking follows the whole video's speech: the part's music is placed in it.
        ducking = speech_ducking(analysis, controls, options, self.speech_ducking)
        if part is not None:
            analysis = part.of(analysis)

        mark = time.perf_counter()
        brief = make_brief(
            analysis,
            controls,
            self.vocabulary,
            info,
            options.sample_rate,
            stems=options.stems_dir is not None,
            keep_original_audio=options.keep_original_audio,
        )
        jobs = candidate_jobs(
            brief, controls.candidates, lambda fraction: report(0.35 + 0.45 * fraction)
        )
        check_work(brief.duration_s, len(jobs), self.limits, self.generator.tracks(brief))
        results = self.generator.generate_batch(jobs)
        musics, ranking = ranked(brief, results, Heartbeat(report, 0.8))
        music = musics[ranking[0].candidate] if ranking else musics[0]
        if part is not None:
            music = part.placed(music, whole_s)
        timings["composition"] = time.perf_counter() - mark

        mark = time.perf_counter()
        heartbeat = Heartbeat(report, 0.8)
        mastered = master_music(video, music, options, heartbeat, ducking)
        heartbeat.advance(0.9)
        timings["mastering"] = time.perf_counter() - mark

        mark = time.perf_counter()
        written, loudness = write_outputs(video, music, mastered, options, heartbeat)
        timings["writing"] = time.perf_counter() - mark
        timings["total"] = time.perf_counter() - started
        report(1.0)
        return ScoreResult(analysis, brief, music.plan, loudness, written, timings,
                           ranking, info.sound)  # fmt: skip
