"""Benchmark: does each genre sound like its genre to a tagger that is not this project's code?

The composer scores two of bench_music's videos (irregular cuts, slow shots) in every genre
with seeds 1 and 2, at 44.1 kHz, mastered as the gateway masters them (-14 LUFS, -1 dBTP).
musicnn's published taggers (genre_tags.py, in its own environment: ./dev.sh genre-tagger)
listen to each piece: MSD_musicnn (50 last.fm tags of the Million Song Dataset, genres among
them) and MTT_musicnn (50 MagnaTagATune tags, instruments among them).

Per genre it prints the tag that names the genre in the taggers' vocabularies (OWN_TAG), its
rank among the 50 on the genre's pieces (probabilities averaged over the pieces), the genre
whose pieces score that tag highest, and both models' top tags. Both vocabularies come from
songs, mostly sung: an instrumental hip-hop beat is rarely tagged "Hip-Hop" first, so the
column "highest on" (which of the genres the tag singles out) says more than the rank.

    ./dev.sh genre-tagger                          # once: musicnn and TensorFlow
    .venv/bin/python benchmarks/bench_genre.py     # about 4 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bench_music  # noqa: E402

from services.config import ComposerConfig, TaggerConfig  # noqa: E402
from services.gateway.mastering import master  # noqa: E402
from services.generator.backends.composer.backend import ComposerGenerator  # noqa: E402
from services.generator.backends.composer.styles import STYLES  # noqa: E402
from services.generator.beatcheck import genre_brief  # noqa: E402
from services.tagger.backend import AnalysisRequest  # noqa: E402
from services.tagger.backends.vision import VisionTagger  # noqa: E402

GENRE_VENV = Path(os.environ.get("BGM_GENRE_VENV", ROOT / ".venv-genre"))
VIDEOS = ("irregular", "slow")
SEEDS = (1, 2)
# The tag that names each genre, and the model whose vocabulary has it; None where neither
# does (no "cinematic", "soundtrack" or "corporate" in either).
OWN_TAG: dict[str, tuple[str, str] | None] = {
    "ambient": ("MSD_musicnn", "ambient"),
    "cinematic": None,
    "orchestral": ("MTT_musicnn", "classical"),
    "electronic": ("MSD_musicnn", "electronic"),
    "pop": ("MSD_musicnn", "pop"),
    "rock": ("MSD_musicnn", "rock"),
    "hip-hop": ("MSD_musicnn", "Hip-Hop"),
    "lo-fi": ("MSD_musicnn", "chillout"),
    "acoustic": ("MSD_musicnn", "acoustic"),
    "folk": ("MSD_musicnn", "folk"),
    "corporate": None,
}


def render(folder: Path) -> dict[str, list[Path]]:
    """Every genre's pieces as WAV files, mastered."""
    tagger = VisionTagger(TaggerConfig())
    generator = ComposerGenerator(ComposerConfig())
    print(f"Rendering with {generator.describe().sound}: {len(STYLES)} genres x "
          f"{len(VIDEOS)} videos x {len(SEEDS)} seeds")  # fmt: skip
    pieces: dict[str, list[Path]] = {genre: [] for genre in STYLES}
    for case in bench_music.video_cases():
        if case.name not in VIDEOS:
            continue
        analysis = tagger.analyze(AnalysisRequest(bench_music.video_path(case)))
        for genre in STYLES:
            for seed in SEEDS:
                music = generator.generate(genre_brief(analysis, genre, seed=seed))
                mastered = master(music.audio, music.sample_rate, target_lufs=-14.0)
                path = folder / f"{genre}-{case.name}-{seed}.wav"
                soundfile.write(path, mastered.audio, music.sample_rate)
                pieces[genre].append(path)
    return pieces


def listen(pieces: dict[str, list[Path]]) -> dict[str, dict[str, dict[str, float]]]:
    """Each genre's tag probabilities per model, averaged over its pieces."""
    python = GENRE_VENV / "bin" / "python"
    if not python.exists():
        sys.exit(f"no tagger environment at {GENRE_VENV}: run ./dev.sh genre-tagger first")
    files = [str(path) for paths in pieces.values() for path in paths]
    result = subprocess.run([str(python), str(ROOT / "benchmarks" / "genre_tags.py"), *files],
                            capture_output=True, text=True)  # fmt: skip
    if result.returncode != 0:
        sys.exit(f"genre_tags.py failed:\n{result.stderr[-3000:]}")
    heard = json.loads(result.stdout)
    averaged: dict[str, dict[str, dict[str, float]]] = {}
    for genre, paths in pieces.items():
        each = [heard[str(path)] for path in paths]
        averaged[genre] = {
            model: {tag: float(np.mean([piece[model][tag] for piece in each])) for tag in tags}
            for model, tags in each[0].items()
        }
    return averaged


def top(tags: dict[str, float], count: int) -> str:
    ranked = sorted(tags.items(), key=lambda item: -item[1])[:count]
    return ", ".join(f"{tag} {p:.2f}" for tag, p in ranked)


def report(averaged: dict[str, dict[str, dict[str, float]]]) -> None:
    print(f"\n{'genre':<11} {'own tag':<22} {'rank':>5} {'p':>5}  {'highest on':<11}  "
          "MSD top 3 | MTT top 3")  # fmt: skip
    first = singled_out = named = 0
    for genre, models in averaged.items():
        own = OWN_TAG[genre]
        if own is None:
            columns = f"{'-':<22} {'':>5} {'':>5}  {'':<11}"
        else:
            model, tag = own
            named += 1
            tags = models[model]
            rank = 1 + sum(p > tags[tag] for p in tags.values())
            highest = max(averaged, key=lambda other: averaged[other][model][tag])
            first += rank == 1
            singled_out += highest == genre
            columns = (f"{model[:3] + ' ' + tag:<22} {rank:>5} {tags[tag]:5.2f}  "
                       f"{highest:<11}")  # fmt: skip
        print(f"{genre:<11} {columns}  {top(models['MSD_musicnn'], 3)} | "
              f"{top(models['MTT_musicnn'], 3)}")  # fmt: skip
    print(f"\nOwn tag ranked first: {first} of {named} genres; own tag highest on the genre's "
          f"own pieces: {singled_out} of {named}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, metavar="DIR", help="keep the pieces here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        report(listen(render(folder)))


if __name__ == "__main__":
    main()
