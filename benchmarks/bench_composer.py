"""Benchmark of the composer and of `bgm score`: speed, beat accuracy, length and loudness.

    python benchmarks/bench_composer.py            # everything
    python benchmarks/bench_composer.py --long     # also a two-hour piece (time, memory)

Compose-and-render is timed on one core (the process pinned to one CPU), best of three. The
end-to-end `bgm score` run is a fresh `bgm` process on the whole machine, as a user runs it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import av
import numpy as np
import pyloudnorm
from scipy.signal import resample_poly

from services.config import ComposerConfig, RequestLimits, TaggerConfig
from services.domain import Cut, Look, MusicBrief, MusicTags, OutputOptions, Segment, UserControls
from services.generator.backends.composer import bank as bank_module
from services.generator.backends.composer.backend import ComposerGenerator
from services.generator.backends.composer.mixing import Mixer
from services.generator.backends.composer.styles import STYLES
from services.generator.beatcheck import check_beats, genre_brief
from services.media.synth import beat_shots, write_video
from services.pipeline import ScorePipeline
from services.tagger.backend import AnalysisRequest
from services.tagger.backends.vision import VisionTagger
from services.vocabulary import load_vocabulary

sys.path.insert(0, str(Path(__file__).parent))
from bench_tagger import CACHE, best_of, peak_rss_mb, pin_to_one_core, speed_video


def synthetic_brief(duration_s: float, seed: int = 0) -> MusicBrief:
    """A pop brief on a timeline with a cut every 3 to 9 seconds and varied energy."""
    rng = np.random.default_rng(seed)
    starts = [0.0]
    while starts[-1] < duration_s - 9.0:
        starts.append(starts[-1] + float(rng.uniform(3.0, 9.0)))
    look = Look(0.5, 0.5, 0.5, 0.5)
    ends = [*starts[1:], duration_s]
    segments = [
        Segment(a, b, float(rng.uniform(0.2, 0.9)), look, ["happy"])
        for a, b in zip(starts, ends, strict=True)
    ]
    tags = MusicTags(
        genres=["pop"],
        moods=["happy", "uplifting"],
        instruments=["piano", "bass", "drums", "synth", "strings"],
        bpm=112,
        bpm_min=95,
        bpm_max=128,
        key="C major",
        energy=0.6,
    )
    return MusicBrief(
        tags=tags,
        segments=segments,
        cuts=[Cut(s, "hard", 0.8) for s in starts[1:]],
        duration_s=duration_s,
        sample_rate=48000,
        seed=1,
        # The five instruments asked for, as issue 14's figure is set: pop's own pad (in its
        # core since music review 7) had made it six.
        negative=["pads"],
    )


@contextlib.contextmanager
def dry_timgm6mb() -> Iterator[ComposerGenerator]:
    """The composer as issue 13 measured it: TimGM6mb through tinysoundfont, no mix (the
    parts summed at their gains, no bus). The default sound (issue 14) is the full bank
    through FluidSynth, with the mix."""

    def dry_mix(self, start, dry, known=None):
        # Stems where asked for: the parts' balance measures them (`known` as Mixer.mix).
        given = known or {}
        parts = [given[i] if i in given else a * np.float32(p.gain)
                 for i, (p, a) in enumerate(zip(self.parts, dry, strict=True))]  # fmt: skip
        return sum(parts), parts if self.stems else []

    with (
        mock.patch.object(bank_module, "fluidsynth_available", lambda: False),
        mock.patch.object(Mixer, "mix", dry_mix),
        mock.patch.object(Mixer, "bus", lambda self, start, mix, stems: (mix, list(stems))),
        # Its advice (install libfluidsynth) is about the default sound, not this measure.
        mock.patch.object(bank_module.SoundBank, "advice", ""),
    ):
        yield ComposerGenerator(ComposerConfig(soundfont_path=bank_module.timgm6mb()))


def compose_section(generator: ComposerGenerator) -> None:
    brief = synthetic_brief(180.0)
    took = best_of(3, lambda: generator.generate(brief))
    print("Compose and render a 3-minute piece (pop, 5 instruments, 48 kHz), one core:")
    print(f"  time                          {took:6.2f} s   ({180.0 / took:5.0f}x real time)")


def score_section() -> None:
    video = speed_video(1280, 720)
    out = CACHE / "scored-60s.mp4"
    # --force: every run (and each of the three) writes the same output again.
    command = [sys.executable, "-m", "services.cli", "score", str(video), "-o", str(out),
               "--force"]  # fmt: skip
    took = best_of(3, lambda: subprocess.run(command, check=True, stdout=subprocess.DEVNULL))
    print(f"`bgm score` 60 s 1280x720 H.264 -> MP4, whole process, {os.cpu_count()} cores:")
    print(f"  time                          {took:6.2f} s   ({60.0 / took:5.1f}x real time)")


def beats_section(tagger: VisionTagger, generator: ComposerGenerator) -> None:
    video = write_video(CACHE / "beat.mp4", beat_shots(), audio=False)
    analysis = tagger.analyze(AnalysisRequest(video.path))
    print(
        f"librosa beat tracker on each genre with drums ({analysis.duration_s:.0f} s video, "
        f"{len(analysis.cuts)} cuts, 44.1 kHz):"
    )
    print("  genre        sections within 2%   worst tempo error   cuts within 50 ms")
    for genre in STYLES:
        if genre == "ambient":
            continue
        brief = genre_brief(analysis, genre)
        music = generator.generate(brief)
        check = check_beats(music.audio, 44100, music.plan, analysis.cuts_s)
        print(
            f"  {genre:<12} {check.sections_within_2pct:>3}/{check.sections_checked:<3}"
            f"{'':13}{check.worst_tempo_error:6.1%}{'':13}"
            f"{check.cuts_within_50ms}/{check.cuts}"
        )


def output_section(pipeline: ScorePipeline) -> None:
    video = write_video(CACHE / "outputs.mp4", beat_shots()[:4])
    duration_s = pipeline.tagger.analyze(AnalysisRequest(video.path)).duration_s
    print(f"Outputs of `bgm score` on a {duration_s:.2f} s video (target -14 LUFS):")
    print("  file     samples (expected)      LUFS    true peak  clipped")
    for extension in (".wav", ".flac", ".mp3", ".ogg", ".mp4", ".mkv"):
        out = CACHE / f"out{extension}"
        pipeline.score(video.path, UserControls(), OutputOptions(out))
        with av.open(str(out)) as container:
            stream = container.streams.audio[0]
            rate = stream.rate
            resampler = av.AudioResampler(format="fltp", layout="stereo", rate=rate)
            chunks = [
                c.to_ndarray() for f in container.decode(stream) for c in resampler.resample(f)
            ]
        audio = np.concatenate(chunks, axis=1).T
        expected = round(duration_s * rate)
        lufs = pyloudnorm.Meter(rate).integrated_loudness(audio.astype(np.float64))
        peak = 20 * np.log10(np.abs(resample_poly(audio, 4, 1, axis=0)).max())
        clipped = int(np.sum(np.abs(audio) >= 1.0))
        print(
            f"  {extension:<7} {len(audio):>9} ({expected:>9}) {lufs:9.2f} "
            f"{peak:8.2f} dBTP {clipped:>5}"
        )


def long_section() -> None:
    result = subprocess.run(
        [sys.executable, __file__, "--two-hours-only"],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    print(result.stdout.rstrip())


def two_hours() -> None:
    generator = ComposerGenerator(ComposerConfig())
    brief = synthetic_brief(7200.0)
    started = time.perf_counter()
    music = generator.generate(brief)
    took = time.perf_counter() - started
    print("A two-hour piece (pop, 5 instruments, 48 kHz), whole machine:")
    print(f"  samples                       {len(music.audio)} (expected {round(7200.0 * 48000)})")
    print(f"  time                          {took:6.1f} s   ({7200 / took:5.0f}x real time)")
    print(f"  peak memory (whole process)   {peak_rss_mb():6.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--long", action="store_true", help="also compose a two-hour piece")
    parser.add_argument("--two-hours-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    CACHE.mkdir(parents=True, exist_ok=True)
    if args.two_hours_only:
        two_hours()
        return
    tagger = VisionTagger(TaggerConfig())
    generator = ComposerGenerator(ComposerConfig())
    score_section()
    beats_section(tagger, generator)
    output_section(ScorePipeline(tagger, generator, load_vocabulary(), RequestLimits()))
    if args.long:
        long_section()
    # Last: pinning to one core lasts for the rest of this process.
    pin_to_one_core()
    compose_section(generator)


if __name__ == "__main__":
    main()
