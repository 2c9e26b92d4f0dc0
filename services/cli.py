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
