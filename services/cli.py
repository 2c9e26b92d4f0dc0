"""The `bgm` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from services.config import load_config
from services.errors import BgmError

# Exit status for input the program refuses (matches argparse's usage errors).
EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1


@contextmanager
def progress_bar(label: str, console: Console) -> Iterator[Callable[[float], None]]:
    """A progress bar on a terminal; silent when output is piped or captured."""
    if not console.is_terminal:
        yield lambda fraction: None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(label, total=1.0)
        yield lambda fraction: progress.update(task, completed=fraction)


def _analyze(args: argparse.Namespace) -> int:
    from services.tagger.backend import AnalysisRequest, create_tagger_backend
    from services.tagger.report import print_summary, save_plot

    config = load_config(args.config)
    stdout = Console()
    stderr = Console(stderr=True)
    backend = create_tagger_backend(config.tagger)
    request = AnalysisRequest(video_path=Path(args.video), prompt=args.prompt or "")
    with progress_bar(f"analysing {Path(args.video).name}", stderr) as report:
        analysis = backend.analyze(request, progress=report)
    if args.plot:
        save_plot(analysis, Path(args.plot))
    if args.json:
        sys.stdout.write(json.dumps(analysis.to_json_dict(), indent=2) + "\n")
    else:
        print_summary(analysis, stdout)
        if args.plot:
            stdout.print(f"plot saved to {args.plot}")
    return 0


def _score(args: argparse.Namespace) -> int:
    from services.domain import UserControls
    from services.gateway.pipeline import OutputOptions, ScorePipeline
    from services.gateway.report import print_score_summary
    from services.generator.backend import create_generator_backend
    from services.tagger.backend import create_tagger_backend
    from services.tagger.vocabulary import load_vocabulary

    config = load_config(args.config)
    controls = UserControls(
        genres=args.genre or [],
        moods=args.mood or [],
        instruments=args.instrument or [],
        bpm=args.bpm,
        key=args.key,
        negative=args.negative or [],
        prompt=args.prompt or "",
        seed=args.seed,
    )
    options = OutputOptions(
        output=Path(args.output),
        midi=Path(args.midi) if args.midi else None,
        stems_dir=Path(args.stems) if args.stems else None,
        sample_rate=args.sample_rate,
        lufs=args.lufs,
        keep_original_audio=args.keep_original_audio,
    )
    stderr = Console(stderr=True)
    pipeline = ScorePipeline(
        create_tagger_backend(config.tagger),
        create_generator_backend(config.generator),
        load_vocabulary(),
    )
    with progress_bar(f"scoring {Path(args.video).name}", stderr) as report:
        result = pipeline.score(Path(args.video), controls, options, progress=report)
    print_score_summary(result, Console())
    return 0


def _sample(args: argparse.Namespace) -> int:
    from services.media.synth import sample_shots, write_video

    video = write_video(args.output, sample_shots(), width=640, height=360, fps=30.0)
    Console().print(
        f"wrote {video.path}: {video.duration_s:.1f} s, cuts at "
        f"{', '.join(f'{c:g}' for c in video.cuts_s)} s"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bgm", description="Background music fitted to video.")
    parser.add_argument("--config", help="YAML config file (default: $BGM_CONFIG, else built-in)")
    commands = parser.add_subparsers(dest="command", required=True)

    analyze = commands.add_parser("analyze", help="analyse a video: cuts, motion, segments, tags")
    analyze.add_argument("video", help="video file")
    analyze.add_argument("--json", action="store_true", help="print the whole analysis as JSON")
    analyze.add_argument("--plot", metavar="OUT.png", help="save a picture of the analysis")
    analyze.add_argument(
        "--prompt", metavar="TEXT", help="free-text hints, e.g. 'cosy baking vlog'"
    )
    analyze.set_defaults(run=_analyze)

    score = commands.add_parser("score", help="score a video: its own music, fitted to its cuts")
    score.add_argument("video", help="video file")
    score.add_argument(
        "-o",
        "--output",
        required=True,
        help="OUT.wav/.flac/.mp3/.ogg (audio) or OUT.mp4/.mov/.mkv/.webm (video)",
    )
    score.add_argument("--midi", metavar="FILE.mid", help="also write the MIDI")
    score.add_argument("--stems", metavar="DIR", help="also write one WAV per instrument")
    score.add_argument(
        "--keep-original-audio",
        action="store_true",
        help="mix the video's own sound over the music, ducking the music",
    )
    score.add_argument("--genre", action="append", help="a genre (repeatable)")
    score.add_argument("--mood", action="append", help="a mood (repeatable)")
    score.add_argument("--instrument", action="append", help="an instrument (repeatable)")
    score.add_argument(
        "--negative",
        action="append",
        metavar="TAG",
        help="a genre, mood or instrument to leave out (repeatable)",
    )
    score.add_argument("--bpm", type=float, help="exact tempo, 30..300")
    score.add_argument("--key", help='key, e.g. "D minor"')
    score.add_argument("--prompt", metavar="TEXT", help="free-text hints")
    score.add_argument("--seed", type=int, default=0, help="same seed, same music (default 0)")
    score.add_argument(
        "--lufs",
        type=float,
        default=-14.0,
        help="integrated loudness target (default -14); true peak <= -1 dBTP",
    )
    score.add_argument("--sample-rate", type=int, default=48000, choices=(44100, 48000))
    score.set_defaults(run=_score)

    sample = commands.add_parser("sample", help="write the project's sample video")
    sample.add_argument("output", help="where to write it (.mp4)")
    sample.set_defaults(run=_sample)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except BgmError as error:
        Console(stderr=True).print(
            f"[red]error[/red] ({error.status_code}): {error}", highlight=False
        )
        return EXIT_FAILURE if error.status_code == "INTERNAL" else EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
