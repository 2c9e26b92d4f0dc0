"""Benchmark of the symbolic-diffusion backend (Diff-BGM) on a checkpoint folder.

    python benchmarks/bench_symbolic.py --model DIR --image-model CLIP --text-model BERT
    python benchmarks/bench_symbolic.py --tiny            # a tiny random checkpoint built here
    python benchmarks/bench_symbolic.py --released-size   # random weights, its released size

Prints, for one request and for a batch of requests generated together: 8-bar windows,
seconds per denoising step (per batch of windows), the real-time factor and peak memory (the
process's resident memory; on CUDA also the GPU's allocated peak). `--released-size` builds
Diff-BGM's released architecture (41.5 M parameters) with random weights beside the tiny CLIP
and BERT: what a real checkpoint costs to run, without its weights.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from services.config import ComposerConfig, SymbolicDiffusionConfig
from services.domain import Cut, Look, MusicBrief, MusicTags, Segment
from services.generator.backend import GenerationJob
from services.generator.backends.symbolic_diffusion import backend as symbolic
from services.generator.backends.symbolic_diffusion.tiny import TINY_PARAMS, tiny_diffbgm

sys.path.insert(0, str(Path(__file__).parent))
from bench_tagger import gpu_peak_note, peak_rss_mb

# Diff-BGM's released params.json, less what only training reads.
RELEASED = {**TINY_PARAMS, "channels": 64, "attention_levels": [2, 3], "n_res_blocks": 2,
            "channel_multipliers": [1, 2, 4, 4], "n_heads": 4, "d_cond": 512}  # fmt: skip


def bench_brief(seconds: float, seed: int) -> MusicBrief:
    look = Look(0.5, 0.5, 0.5, 0.5)
    tags = MusicTags(genres=["pop"], moods=["happy"], instruments=["piano", "bass", "drums"],
                     bpm=120, bpm_min=110, bpm_max=130, key="C major", energy=0.6)  # fmt: skip
    half = seconds / 2
    return MusicBrief(
        tags=tags, duration_s=seconds, sample_rate=44100, seed=seed,
        segments=[Segment(0.0, half, 0.4, look, ["happy"], caption="a city street at night"),
                  Segment(half, seconds, 0.8, look, [], caption="a car drives fast")],
        cuts=[Cut(half, "hard", 1.0)],
    )  # fmt: skip


class StepCounter:
    """Counts denoising steps and batches of windows."""

    def __init__(self) -> None:
        self.batches = self.windows = 0
        self.seconds = 0.0
        sample = symbolic.sample

        def counted(loaded: Any, conditions: Any, seeds: Any, *rest: Any) -> Any:
            self.batches += 1
            self.windows += len(seeds)
            started = time.perf_counter()
            result = sample(loaded, conditions, seeds, *rest)
            self.seconds += time.perf_counter() - started
            return result

        symbolic.sample = counted  # type: ignore[assignment]


def run(label: str, generator: symbolic.SymbolicDiffusionGenerator, counter: StepCounter,
        briefs: list[MusicBrief]) -> None:  # fmt: skip
    counter.batches = counter.windows = 0
    counter.seconds = 0.0
    jobs = [GenerationJob(brief, lambda fraction: None) for brief in briefs]
    started = time.perf_counter()
    results = generator.generate_batch(jobs)
    took = time.perf_counter() - started
    failed = [r for r in results if isinstance(r, Exception)]
    if failed:
        raise SystemExit(f"generation failed: {failed[0]}")
    music_s = sum(b.duration_s for b in briefs)
    steps = generator.steps - 1 if generator.steps == generator.model.params["n_steps"] else (
        generator.steps)  # fmt: skip
    print(f"  {label}")
    print(f"    8-bar windows, batches  {counter.windows:5d}, {counter.batches}")
    print(f"    generate                {took:8.2f} s   ({took / len(briefs):.2f} s a request)")
    print(f"    denoising               {counter.seconds:8.2f} s   (the rest: planning, "
          "conditions, rendering)")  # fmt: skip
    print(f"    per denoising step      {counter.seconds / (steps * counter.batches) * 1000:8.1f}"
          " ms (a batch of windows)")  # fmt: skip
    print(f"    real-time factor        {music_s / took:8.2f}   (seconds of music per second)")
    print(f"    peak memory             {peak_rss_mb():8.0f} MB (process){gpu_peak_note()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="Diff-BGM checkpoint folder")
    parser.add_argument("--image-model", type=Path, help="CLIP folder")
    parser.add_argument("--text-model", type=Path, help="BERT folder")
    parser.add_argument("--tiny", action="store_true", help="a tiny random checkpoint")
    parser.add_argument("--released-size", action="store_true",
                        help="its released architecture with random weights")  # fmt: skip
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each piece")
    parser.add_argument("--steps", type=int, default=50, help="denoising steps (1000 = DDPM)")
    parser.add_argument("--batch", type=int, default=4, help="requests generated together")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        model, image, text = args.model, args.image_model, args.text_model
        if args.tiny or args.released_size:
            tiny = tiny_diffbgm(Path(folder), params=RELEASED if args.released_size else None)
            model, image, text = tiny.model, tiny.image_model, tiny.text_model
        if model is None:
            parser.error("give --model DIR (with --image-model, --text-model), --tiny or "
                         "--released-size")  # fmt: skip
        config = SymbolicDiffusionConfig(model_path=model, image_model_path=image,
                                         text_model_path=text, steps=args.steps,
                                         max_batch=64)  # fmt: skip
        started = time.perf_counter()
        generator = symbolic.SymbolicDiffusionGenerator(config, ComposerConfig())
        loaded = time.perf_counter() - started
        parameters = sum(p.numel() for p in generator.model.model.parameters()) / 1e6
        print(f"Diff-BGM ({parameters:.1f} M parameters) at {model}: {args.seconds:g} s pieces, "
              f"{generator.steps} steps")  # fmt: skip
        print(f"  load                      {loaded:8.2f} s   (peak {peak_rss_mb():.0f} MB)")
        # Once untimed: the first call pays for lazy initialisation.
        generator.generate(bench_brief(4.0, seed=99))
        counter = StepCounter()
        run("1 request", generator, counter, [bench_brief(args.seconds, seed=0)])
        briefs = [bench_brief(args.seconds, seed=seed) for seed in range(args.batch)]
        run(f"batch of {args.batch} requests", generator, counter, briefs)


if __name__ == "__main__":
    main()
