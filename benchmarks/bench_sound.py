"""Benchmark of the composer's sound (issue 14): speed with the full bank and the mix, memory,
each genre's mix as numbers, and a listening page.

    python benchmarks/bench_sound.py                 # speed, per-genre figures
    python benchmarks/bench_sound.py --two-hours     # also a two-hour piece's peak memory
    python benchmarks/bench_sound.py --banks         # also every bank found, compared
    python benchmarks/bench_sound.py --reel out/reel # also the demo reel (HTML + MP3s)
    python benchmarks/bench_sound.py --no-speed --reel out/reel --reel-video my.mp4

Speed: bench_composer's 3-minute pop brief (drums, bass, piano, synth, strings: 5
instruments), 48 kHz, composed, performed, rendered and mixed by `ComposerGenerator.generate`,
pinned to one core, best of three; with the full bank (FluidSynth), and with TimGM6mb through
tinysoundfont. "Dry" is the same TimGM6mb render without the mix (the synthesizer's parts
summed), as the composer rendered before it had one.

Per genre, on bench_music's irregular video (seed 1), the generator's mix before mastering:
- loudness range (LRA, EBU Tech 3342: short-term loudness of 3 s windows every 0.1 s by
  pyloudnorm's BS.1770 meter, gated at -70 LUFS and 20 LU below the mean; the 95th minus the
  10th percentile), integrated loudness;
- crest factor: peak over RMS, dB;
- spectral balance: the energy share below 250 Hz, from 250 Hz to 4 kHz, and above 4 kHz;
- each part's loudness (its stem's), in LU from the melody's, beside the level its role asks
  for.
"""

from __future__ import annotations

import argparse
import dataclasses
import html
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bench_composer  # noqa: E402
import bench_music  # noqa: E402

from services.config import ComposerConfig, TaggerConfig  # noqa: E402
from services.gateway.mastering import master  # noqa: E402
from services.generator.backends.composer import bank as bank_module  # noqa: E402
from services.generator.backends.composer.backend import ComposerGenerator  # noqa: E402
from services.generator.backends.composer.balance import stem_levels  # noqa: E402
from services.generator.backends.composer.production import GS_KITS  # noqa: E402
from services.generator.backends.composer.styles import STYLES  # noqa: E402
from services.generator.beatcheck import genre_brief  # noqa: E402
from services.media.audio import write_audio_file  # noqa: E402
from services.progress import Heartbeat  # noqa: E402
from services.tagger.backend import AnalysisRequest  # noqa: E402
from services.tagger.backends.vision import VisionTagger  # noqa: E402


def best_of(runs: int, job) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        job()
        times.append(time.perf_counter() - start)
    return min(times)


def generator_with(full: bool) -> ComposerGenerator:
    if full:
        return ComposerGenerator(ComposerConfig())
    return ComposerGenerator(ComposerConfig(soundfont_path=bank_module.timgm6mb()))


def speed_section() -> None:
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    brief = bench_composer.synthetic_brief(180.0)
    print("Compose, perform, render and mix a 3-minute piece (5 instruments, 48 kHz), one core:")
    full = generator_with(True)
    took = best_of(3, lambda: full.generate(brief))
    print(f"  {full.describe().sound:<45} {took:6.2f} s  {180 / took:5.0f}x real time")
    # TimGM6mb through tinysoundfont, with the mix and dry.
    with (
        mock.patch.object(bank_module, "fluidsynth_available", lambda: False),
        # Its advice (install libfluidsynth) would say the machine lacks what it has.
        mock.patch.object(bank_module.SoundBank, "advice", ""),
    ):
        small = generator_with(False)
        took = best_of(3, lambda: small.generate(brief))
        print(f"  {small.describe().sound + ', mixed':<45} {took:6.2f} s  {180 / took:5.0f}x")

    with bench_composer.dry_timgm6mb() as dry:
        took = best_of(3, lambda: dry.generate(brief))
        print(f"  {dry.describe().sound + ', dry':<45} {took:6.2f} s  {180 / took:5.0f}x")
    print()


def in_fresh_process(body: str, what: str) -> list[str]:
    """Run `body` in a fresh Python process (its memory its own) with bench_composer as `bc`,
    and return the words of its last line of output."""
    script = f"""
import os, sys, time
sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / "benchmarks")!r}]
import bench_composer as bc
from services.config import ComposerConfig
from services.generator.backends.composer.backend import ComposerGenerator
def peak_mb():
    # VmHWM: unlike ru_maxrss, not inherited from the benchmark that forked this process.
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
"""
    result = subprocess.run([sys.executable, "-c", script + body], capture_output=True,
                            text=True)  # fmt: skip
    if result.returncode:
        print(result.stderr)
        raise SystemExit(f"{what} failed")
    return result.stdout.strip().splitlines()[-1].split()


def two_hours_section() -> None:
    """A two-hour piece in a fresh process, for its peak memory."""
    took, peak_mb = in_fresh_process(
        """
generator = ComposerGenerator(ComposerConfig())
start = time.perf_counter()
music = generator.generate(bc.synthetic_brief(7200.0))
print(f"{time.perf_counter() - start:.0f} {peak_mb():.0f}")
""",
        "the two-hour piece",
    )
    mix_mb = 7200 * 48000 * 2 * 4 / 2**20
    print(f"A two-hour piece (48 kHz, no stems): {took} s, peak memory {peak_mb} MB "
          f"(the mix itself: {mix_mb:.0f} MB)\n")  # fmt: skip


def energy_shares(audio: np.ndarray, rate: int) -> list[float]:
    """The energy below 250 Hz, from 250 Hz to 4 kHz and above 4 kHz, as shares."""
    spectrum = np.abs(np.fft.rfft(audio.mean(axis=1))) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1 / rate)
    total = spectrum.sum()
    return [float(spectrum[(freqs >= lo) & (freqs < hi)].sum() / total)
            for lo, hi in ((0, 250), (250, 4000), (4000, rate))]  # fmt: skip


def banks_section() -> None:
    """Every bank found, each in a fresh process pinned to one core: loading it, the 3-minute
    piece (best of three) through FluidSynth and the mix, the process's peak memory and the
    piece's spectral balance."""
    banks = [path for path in bank_module.FULL_BANKS if path.is_file()]
    banks.append(bank_module.timgm6mb())
    print("Banks (FluidSynth and the mix; the 3-minute piece, one core, a fresh process each):")
    print(f"  {'bank':<30} {'load':>7} {'3-minute piece':>16} {'memory':>9}   low / mid / high")
    for path in banks:
        with tempfile.TemporaryDirectory() as folder:
            audio_file = Path(folder) / "piece.npy"
            load, took, peak = (float(word) for word in in_fresh_process(
                f"""
import numpy as np
os.sched_setaffinity(0, {{min(os.sched_getaffinity(0))}})
start = time.perf_counter()
generator = ComposerGenerator(ComposerConfig(soundfont_path={str(path)!r}))
load = time.perf_counter() - start
brief = bc.synthetic_brief(180.0)
times = []
for _ in range(3):
    start = time.perf_counter()
    music = generator.generate(brief)
    times.append(time.perf_counter() - start)
np.save({str(audio_file)!r}, music.audio)
print(load, min(times), peak_mb())
""",
                f"the 3-minute piece with {path.name}",
            ))  # fmt: skip
            low, mid, high = energy_shares(np.load(audio_file), 48000)
        print(f"  {path.name:<30} {load:6.2f}s {took:6.2f} s ({180 / took:3.0f}x) {peak:6.0f} MB"
              f"   {low:4.0%} / {mid:4.0%} / {high:4.0%}")  # fmt: skip
    print()


def loudness_range(meter, mono: np.ndarray, rate: int) -> float | None:
    window, hop = 3 * rate, rate // 10
    levels = []
    for start in range(0, len(mono) - window + 1, hop):
        level = meter.integrated_loudness(mono[start : start + window])
        if np.isfinite(level) and level > -70.0:
            levels.append(level)
    if len(levels) < 2:
        return None
    energies = 10 ** (np.array(levels) / 10)
    relative = 10 * np.log10(energies.mean()) - 20.0
    kept = [level for level in levels if level > relative]
    return float(np.percentile(kept, 95) - np.percentile(kept, 10))


def genre_section(analysis, generator: ComposerGenerator) -> None:
    import pyloudnorm

    print(f"Per genre, on bench_music's irregular video, seed 1 ({generator.describe().sound};"
          " the generator's mix, before mastering):")  # fmt: skip
    print(f"  {'genre':<11} {'LUFS':>6} {'LRA':>5} {'crest':>6}   low / mid / high   mix")
    balance = []
    for genre in STYLES:
        brief = dataclasses.replace(genre_brief(analysis, genre, seed=1), stems=True)
        music = generator.generate(brief)
        roles = generator.compose(brief, Heartbeat(lambda fraction: None)).roles
        levels = stem_levels(music.stems, music.sample_rate, roles, STYLES[genre].production)
        balance.append((genre, levels))
        audio = music.audio
        rate = music.sample_rate
        meter = pyloudnorm.Meter(rate)
        lufs = meter.integrated_loudness(audio)
        lra = loudness_range(meter, audio, rate)
        rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
        crest = 20 * np.log10(float(np.abs(audio).max()) / rms)
        shares = energy_shares(audio, rate)
        chain = ", ".join(STYLES[genre].production.chain)
        lra_text = f"{lra:5.1f}" if lra is not None else "    -"
        print(f"  {genre:<11} {lufs:6.1f} {lra_text} {crest:5.1f}dB  "
              f"{shares[0]:4.0%} / {shares[1]:4.0%} / {shares[2]:4.0%}   {chain}")  # fmt: skip
    print("\nEach part's loudness in the same pieces (its stem, BS.1770 gated), LU from the"
          " melody's; in brackets the level the balance asks for (balance.levels):")  # fmt: skip
    for genre, levels in balance:
        heard = (f"{name} {level:+.1f} ({asked:+.1f})" for name, (level, asked) in levels.items())
        print(f"  {genre:<11} " + ", ".join(heard))
    print()


# The demo reel's pieces are mastered to the gateway's default loudness, so that no genre or
# bank sounds better for being louder (unmastered, the genres lay 3.4 LU apart).
REEL_LUFS = -14.0


def reel_folder(folder: Path) -> str | None:
    """Why the demo reel cannot be written into `folder` (made if missing), or None: found
    before anything is rendered (a file there had ended a run in a traceback after 90 s)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        return f"--reel {folder}: {error.strerror or error}"
    return None


def reel_section(analysis, folder: Path, seconds: float, video: str) -> None:
    """One short piece per genre, per bank found, and a page to compare them in a browser."""
    banks = [path for path in bank_module.FULL_BANKS if path.is_file()]
    banks.append(bank_module.timgm6mb())
    generators = {path.name: ComposerGenerator(ComposerConfig(soundfont_path=path))
                  for path in banks}  # fmt: skip
    rows = []
    for genre in STYLES:
        brief = genre_brief(analysis, genre, seed=1, duration_s=seconds)
        cells = []
        plan = None
        for name, generator in generators.items():
            music = generator.generate(brief)
            plan = music.plan
            file = f"{genre}-{name.replace('.', '-')}.mp3"
            mastered = master(music.audio, music.sample_rate, target_lufs=REEL_LUFS)
            write_audio_file(folder / file, mastered.audio, music.sample_rate)
            cells.append(f'<td><audio controls preload="none" src="{html.escape(file)}">'
                         "</audio></td>")  # fmt: skip
        assert plan is not None
        notes = (f"{', '.join(brief.tags.moods) or 'no mood'}; {plan.key}, "
                 f"{plan.bpm:.0f} BPM, {plan.meter}; {', '.join(plan.instruments)}")  # fmt: skip
        mix = ", ".join(STYLES[genre].production.chain)
        if "drums" in plan.instruments:
            kit = STYLES[genre].production.kit
            mix += f"; GS {GS_KITS.get(kit, 'drum')} kit ({kit})"
        rows.append(f"<tr><th>{html.escape(genre)}</th>{''.join(cells)}"
                    f"<td>{html.escape(notes)}</td><td>{html.escape(mix)}</td></tr>")  # fmt: skip
    heads = "".join(f"<th>{html.escape(name)}</th>" for name in generators)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>bgm demo reel</title>
<style>body{{font-family:sans-serif}} td,th{{padding:4px 8px;text-align:left;
vertical-align:middle}} tr:nth-child(even){{background:#f4f4f4}}</style></head>
<body><h1>bgm demo reel</h1>
<p>One {seconds:g} s piece per genre for the same video ({html.escape(video)}, seed 1),
rendered with each sound bank found and mastered to {REEL_LUFS:g} LUFS, as the gateway
masters by default.</p>
<table><tr><th>genre</th>{heads}<th>tags</th><th>mix</th></tr>
{chr(10).join(rows)}
</table></body></html>
"""
    (folder / "index.html").write_text(page)
    print(f"Demo reel: {folder / 'index.html'} ({len(rows)} genres x {len(generators)} banks)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--two-hours", action="store_true", help="a two-hour piece's memory")
    parser.add_argument("--banks", action="store_true", help="compare the banks found")
    parser.add_argument("--reel", type=Path, metavar="DIR", help="write the demo reel here")
    parser.add_argument("--reel-seconds", type=float, default=20.0)
    parser.add_argument(
        "--reel-video",
        type=Path,
        metavar="FILE",
        help="the demo reel's video (default: bench_music's irregular cuts)",
    )
    parser.add_argument("--no-speed", action="store_true")
    args = parser.parse_args()
    if args.reel:
        if not 0 < args.reel_seconds <= 600:
            parser.error("--reel-seconds: from above 0 to 600")
        if (why := reel_folder(args.reel)) is not None:
            parser.error(why)
    tagger = VisionTagger(TaggerConfig())
    irregular = next(c for c in bench_music.video_cases() if c.name == "irregular")
    analysis = tagger.analyze(AnalysisRequest(bench_music.video_path(irregular)))
    generator = ComposerGenerator(ComposerConfig())
    print(f"Machine: {os.cpu_count()} cores; {generator.describe().sound}\n")
    genre_section(analysis, generator)
    if args.reel:
        if args.reel_video is None:
            reel_section(analysis, args.reel, args.reel_seconds, "bench_music's irregular cuts")
        else:
            chosen = tagger.analyze(AnalysisRequest(args.reel_video))
            reel_section(chosen, args.reel, args.reel_seconds, args.reel_video.name)
    if args.two_hours:
        two_hours_section()
    if args.banks:
        banks_section()
    if not args.no_speed:
        speed_section()


if __name__ == "__main__":
    main()
