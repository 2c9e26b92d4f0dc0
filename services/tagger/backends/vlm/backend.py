"""The `vlm` and `openai` tagger backends: semantics from a vision-language model, timing from
the picture.

As in Diff-BGM's split, dynamic features drive rhythm and semantic ones melody and
atmosphere: the `vision` analysis provides cuts, motion, segments and the BPM range; the model
sees frames sampled per segment and names the scene, the music, its genres, moods and
instruments (and, if asked, a caption and moods per segment). Its words are mapped onto the
fixed vocabulary; what maps replaces the picture's tags of that kind, what does not stays in
the description. When its answer cannot be used, the analysis keeps the picture's tags and
says why in `semantics.fallback_reason` and a warning.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from services.config import TaggerConfig
from services.domain import Segment, Semantics, VideoAnalysis
from services.media.video import decodable_pixels, frames_at
from services.progress import Heartbeat, ProgressCallback
from services.tagger.backend import AnalysisRequest, BackendInfo
from services.tagger.backends.vision import PictureBasis, VisionTagger
from services.tagger.backends.vlm.answer import UnusableAnswer, VlmAnswer, instruction, parse_answer
from services.tagger.backends.vlm.models import SegmentFrames, VisionLanguageModel
from services.tagger.backends.vlm.normalise import collect, map_phrases, normalise
from services.tagger.tagging import choose_tags, describe_music
from services.tagger.text_hints import PromptMatch

VERSION = "1.0"


def frame_times(
    segments: list[Segment], per_segment: int, max_frames: int
) -> list[tuple[int, list[float]]]:
    """(segment index, frame times) for the segments shown: `per_segment` frames evenly inside
    each, fewer when that would pass `max_frames`; with more segments than `max_frames`, one
    frame for each of `max_frames` segments spread over the video."""
    count = len(segments)
    if count > max_frames:
        chosen = sorted({round(i) for i in np.linspace(0, count - 1, max_frames)})
        return [(i, [(segments[i].start_s + segments[i].end_s) / 2]) for i in chosen]
    each = max(1, min(per_segment, max_frames // count))
    return [
        (i, [s.start_s + (j + 0.5) / each * (s.end_s - s.start_s) for j in range(each)])
        for i, s in enumerate(segments)
    ]


class VlmTagger:
    def __init__(self, config: TaggerConfig, model: VisionLanguageModel, name: str = "vlm"):
        self.config = config
        self.vision = VisionTagger(config)
        self.vocabulary = self.vision.vocabulary
        self.model = model
        self.name = name

    def describe(self) -> BackendInfo:
        return BackendInfo(name=self.name, version=f"{VERSION} ({self.model.name})",
                           vocabulary=self.vocabulary)  # fmt: skip

    def warm_up(self) -> None:
        self.vision.warm_up()

    def analyze(
        self, request: AnalysisRequest, progress: ProgressCallback | None = None
    ) -> VideoAnalysis:
        report = progress or (lambda fraction: None)
        analysis, basis = self.vision.analyze_picture(request, lambda f: report(0.5 * f))
        settings = self.config.vlm
        shown = frame_times(analysis.segments, settings.frames_per_segment, settings.max_frames)
        frames = iter(frames_at(request.video_path, analysis.rotation,
                                [t for _, times in shown for t in times],
                                settings.frame_size,
                                decodable_pixels(analysis.width, analysis.height),
                                Heartbeat(report, 0.5)))  # fmt: skip
        groups = [
            SegmentFrames(
                f"Segment {index + 1} ({analysis.segments[index].start_s:.1f}-"
                f"{analysis.segments[index].end_s:.1f} s):",
                [next(frames) for _ in times],
            )
            for index, times in shown
        ]
        report(0.55)
        vocabulary = self.vocabulary
        asked = instruction(
            list(vocabulary.genres), list(vocabulary.moods), list(vocabulary.instruments),
            len(analysis.segments), settings.segment_captions)  # fmt: skip
        reply = self.model.answer(groups, asked, Heartbeat(report, 0.55))
        report(0.95)
        try:
            result = self._with_answer(analysis, basis, parse_answer(reply, len(analysis.segments)))
        except UnusableAnswer as error:
            result = self._fallback(analysis, str(error))
        report(1.0)
        return result

    def _with_answer(
        self, analysis: VideoAnalysis, basis: PictureBasis, answer: VlmAnswer
    ) -> VideoAnalysis:
        text_model = self.vision.text_model()
        vocabulary = self.vocabulary
        found = [normalise("genre", answer.genres, vocabulary, text_model),
                 normalise("mood", answer.moods, vocabulary, text_model),
                 normalise("instrument", answer.instruments, vocabulary, text_model)]  # fmt: skip
        semantic = [PromptMatch(t.kind, t.tag, t.similarity) for n in found for t in n.tags]
        unmapped = [phrase for n in found for phrase in n.unmapped]
        if not semantic:
            named = ", ".join([*answer.genres, *answer.moods, *answer.instruments])
            raise UnusableAnswer(
                f"none of the model's tags is in the vocabulary ({named or 'it named none'})"
            )
        tags = choose_tags(vocabulary, basis.features, basis.prompt_matches, semantic)
        captions = {c.segment: c for c in answer.segments}
        caption_moods = map_phrases("mood", [m for c in answer.segments for m in c.moods],
                                    vocabulary, text_model)  # fmt: skip
        count = int(vocabulary.selection["segment_moods"])
        segments = []
        for index, segment in enumerate(analysis.segments):
            caption = captions.get(index)
            if caption is None:
                segments.append(segment)
                continue
            moods = collect(caption.moods, caption_moods)
            unmapped.extend(moods.unmapped)
            segments.append(dataclasses.replace(
                segment, caption=caption.caption,
                moods=[t.tag for t in moods.tags][:count] or segment.moods))  # fmt: skip
        unmapped = list(dict.fromkeys(unmapped))
        parts = [answer.scene, answer.music or describe_music(tags, basis.energy_arc)]
        if unmapped:
            parts.append(f"Also suggested: {', '.join(unmapped)}.")
        return dataclasses.replace(
            analysis,
            tags=tags,
            segments=segments,
            description=" ".join(p for p in parts if p),
            backend=self.name,
            semantics=Semantics(
                source="vlm", model=self.model.name, scene=answer.scene, unmapped=unmapped
            ),
        )

    def _fallback(self, analysis: VideoAnalysis, reason: str) -> VideoAnalysis:
        return dataclasses.replace(
            analysis,
            backend=self.name,
            semantics=Semantics(source="picture", model=self.model.name, fallback_reason=reason),
            warnings=[
                *analysis.warnings,
                f"the model's answer could not be used ({reason}); the tags are the picture's",
            ],
        )
