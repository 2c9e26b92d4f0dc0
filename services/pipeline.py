"""`bgm score`: the whole job in one process, with the tagger's and the generator's backends
called directly and the gateway's delivery (checks, mastering, outputs) around them.

The gateway service does the same through the services' gRPC contracts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from services.config import RequestLimits
from services.domain import (
    CandidateScore,
    MusicBrief,
    MusicPlan,
    OutputOptions,
    UserControls,
    VideoAnalysis,
)
from services.gateway.controls import make_brief
from services.gateway.delivery import check_request, master_music, write_outputs
from services.gateway.mastering import LoudnessReport
from services.generator.backend import GeneratorBackend
from services.generator.candidates import candidate_jobs, ranked
from services.progress import ProgressCallback
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


class ScorePipeline:
    """The whole job in one process, with the tagger and generator as local backends."""

    def __init__(
        self,
        tagger: TaggerBackend,
        generator: GeneratorBackend,
        vocabulary: Vocabulary,
        limits: RequestLimits,
    ):
        self.tagger = tagger
        self.generator = generator
        self.vocabulary = vocabulary
        self.limits = limits

    def score(
        self,
        video: Path,
        controls: UserControls,
        options: OutputOptions,
        progress: ProgressCallback | None = None,
    ) -> ScoreResult:
        report = progress or (lambda fraction: None)
        timings: dict[str, float] = {}
        started = time.perf_counter()
        controls = check_request(
            video, controls, options, self.generator.describe(), self.vocabulary, self.limits
        )
        timings["checks"] = time.perf_counter() - started

        mark = time.perf_counter()
        analysis = self.tagger.analyze(
            AnalysisRequest(video, prompt=controls.prompt),
            progress=lambda fraction: report(0.35 * fraction),
        )
        timings["analysis"] = time.perf_counter() - mark

        mark = time.perf_counter()
        brief = make_brief(
            analysis,
            controls,
            self.vocabulary,
            options.sample_rate,
            stems=options.stems_dir is not None,
        )
        jobs = candidate_jobs(
            brief, controls.candidates, lambda fraction: report(0.35 + 0.45 * fraction)
        )
        musics, ranking = ranked(brief, self.generator.generate_batch(jobs))
        music = musics[ranking[0].candidate] if ranking else musics[0]
        timings["composition"] = time.perf_counter() - mark

        mark = time.perf_counter()
        mastered = master_music(video, music, options)
        report(0.9)
        timings["mastering"] = time.perf_counter() - mark

        mark = time.perf_counter()
        written = write_outputs(video, music, mastered, options)
        timings["writing"] = time.perf_counter() - mark
        timings["total"] = time.perf_counter() - started
        report(1.0)
        return ScoreResult(analysis, brief, music.plan, mastered.report, written, timings,
                           ranking)  # fmt: skip
