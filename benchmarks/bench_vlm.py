"""Benchmark of the tagger's `vlm` backend on any model folder.

    python benchmarks/bench_vlm.py --model PATH [--minutes 1] [--frames 16] [--tokens 512]
    python benchmarks/bench_vlm.py --tiny qwen2-vl   # or qwen2.5-vl, smolvlm: built here

Prints seconds per analysed minute of video (the whole analysis, and the model's part of it)
and peak memory (the process's resident memory; on CUDA also the GPU's allocated peak), for a
generated 640x360 video with a cut every 5 s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from services.config import TaggerConfig, VlmConfig
from services.media.synth import Shot, write_video
from services.tagger.backend import AnalysisRequest
from services.tagger.backends.vision import VisionTagger
from services.tagger.backends.vlm.backend import VlmTagger, frame_times
from services.tagger.backends.vlm.models import LocalVlm, SegmentFrames
from services.tagger.backends.vlm.tiny import BUILDERS

sys.path.insert(0, str(Path(__file__).parent))
from bench_tagger import gpu_peak_note, peak_rss_mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="vision-language model folder")
    parser.add_argument("--tiny", choices=sorted(BUILDERS), help="build and time a tiny model")
    parser.add_argument("--minutes", type=float, default=1.0, help="length of the video")
    parser.add_argument("--frames", type=int, default=16, help="most frames shown to the model")
    parser.add_argument("--per-segment", type=int, default=2, help="frames per segment")
    parser.add_argument("--size", type=int, default=448, help="longer side of each frame, px")
    parser.add_argument("--tokens", type=int, default=512, help="most new tokens")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        model_path = BUILDERS[args.tiny](Path(folder)) if args.tiny else args.model
        if model_path is None:
            parser.error("give --model PATH or --tiny FAMILY")
        shots = [Shot(5.0, speed=0.1 + 0.8 * (i % 3) / 2, hue=(i * 0.37) % 1.0)
                 for i in range(max(1, round(args.minutes * 12)))]  # fmt: skip
        video = write_video(Path(folder) / "bench.mp4", shots, width=640, height=360)
        settings = VlmConfig(model_path=model_path, max_frames=args.frames,
                             frames_per_segment=args.per_segment, frame_size=args.size,
                             max_new_tokens=args.tokens)  # fmt: skip
        started = time.perf_counter()
        model = LocalVlm(settings)
        loaded = time.perf_counter() - started
        answering: list[float] = []
        answer = model.answer

        def timed(
            segments: list[SegmentFrames], instruction: str, heartbeat: Callable[[], None]
        ) -> str:
            mark = time.perf_counter()
            reply = answer(segments, instruction, heartbeat)
            answering.append(time.perf_counter() - mark)
            return reply

        model.answer = timed  # type: ignore[method-assign]
        backend = VlmTagger(TaggerConfig(vlm=settings), model)
        request = AnalysisRequest(video.path)
        backend.analyze(request)  # once untimed: first calls pay for lazy set-up
        answering.clear()
        mark = time.perf_counter()
        analysis = backend.analyze(request)
        total = time.perf_counter() - mark
        mark = time.perf_counter()
        VisionTagger(TaggerConfig()).analyze(request)
        picture = time.perf_counter() - mark
        minutes = video.duration_s / 60
        shown = sum(len(times) for _, times in frame_times(analysis.segments, args.per_segment,
                                                             args.frames))  # fmt: skip
        print(f"{backend.describe().version}: {video.duration_s:.0f} s video, "
              f"{len(analysis.segments)} segments, {shown} frames of {args.size} px, "
              f"up to {args.tokens} new tokens")  # fmt: skip
        print(f"  load                        {loaded:8.2f} s")
        print(f"  analysis, per video minute  {total / minutes:8.2f} s")
        print(f"    of which the model        {answering[0] / minutes:8.2f} s")
        print(f"    the vision analysis alone {picture / minutes:8.2f} s")
        print(f"  peak memory                 {peak_rss_mb():8.0f} MB (process){gpu_peak_note()}")
        semantics = analysis.semantics
        used = "used" if semantics.source == "vlm" else f"not used ({semantics.fallback_reason})"
        print(f"  the model's answer          {used}")


if __name__ == "__main__":
    main()
