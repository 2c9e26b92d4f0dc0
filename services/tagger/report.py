"""Human-facing views of a `VideoAnalysis`: a terminal summary and a picture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from services.domain import MusicTags, VideoAnalysis

_SOURCE_MARK = {"picture": "picture", "prompt": "prompt", "both": "prompt+picture", "user": "user",
                "vlm": "vlm"}  # fmt: skip


def print_tags(tags: MusicTags, console: Console) -> None:
    """Genres, moods and instruments, each with where it came from."""
    origin: dict[tuple[str, str], str] = {
        (o.kind, o.tag): _SOURCE_MARK[o.source] for o in tags.origins
    }
    for kind, names in (
        ("genre", tags.genres),
        ("mood", tags.moods),
        ("instrument", tags.instruments),
    ):
        listed = ", ".join(f"{escape(n)} [dim]({origin.get((kind, n), '?')})[/dim]" for n in names)
        console.print(f"[bold]{kind.capitalize() + 's':<12}[/bold]{listed}")


def print_summary(analysis: VideoAnalysis, console: Console) -> None:
    a = analysis
    console.print(
        f"[bold]Video[/bold]  {a.duration_s:.2f} s, {a.width}x{a.height}, "
        f"{a.fps:g} fps, rotation {a.rotation}°, "
        f"{'with' if a.has_audio else 'no'} audio"
    )
    cuts = ", ".join(f"{c.time_s:.2f}{'f' if c.kind == 'fade' else ''}" for c in a.cuts)
    console.print(
        f"[bold]Cuts[/bold]   {len(a.cuts)}: {cuts or 'none'}"
        + ("  (f = fade)" if any(c.kind == "fade" for c in a.cuts) else "")
    )
    table = Table(title="Segments", show_lines=False)
    captions = any(segment.caption for segment in a.segments)
    for column in ("#", "start", "end", "energy", "moods", *(["caption"] if captions else [])):
        table.add_column(column)
    for i, segment in enumerate(a.segments, 1):
        table.add_row(
            str(i),
            f"{segment.start_s:.2f}",
            f"{segment.end_s:.2f}",
            f"{segment.energy:.2f}",
            escape(", ".join(segment.moods)),
            *([escape(segment.caption)] if captions else []),
        )
    console.print(table)
    if a.speech:
        stretches = ", ".join(f"{i.start_s:.2f}-{i.end_s:.2f}" for i in a.speech)
        console.print(f"[bold]Speech[/bold] {len(a.speech)}: {stretches} s")
    elif a.loudness.values:
        console.print("[bold]Speech[/bold] none heard")
    tags = a.tags
    print_tags(tags, console)
    console.print(
        f"[bold]{'Tempo':<12}[/bold]{tags.bpm} BPM (range {tags.bpm_min}-"
        f"{tags.bpm_max})   [bold]Key[/bold] {escape(tags.key)}   "
        f"[bold]Energy[/bold] {tags.energy:.2f}"
    )
    console.print(f"[bold]{'Music':<12}[/bold]{escape(a.description)}")
    print_model_and_warnings(a, console)


def print_model_and_warnings(analysis: VideoAnalysis, console: Console) -> None:
    """Which model named the tags (or why its answer was not used), and any warnings."""
    semantics = analysis.semantics
    if semantics.model:
        # When its answer was not used, a warning says why.
        used = ": its tags are used" if semantics.source == "vlm" else ""
        console.print(f"[bold]{'Model':<12}[/bold]{escape(semantics.model)}{used}")
    for warning in analysis.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}")


def filmstrip(start_s: float, end_s: float, tile_s: float) -> list[tuple[float, float, float]]:
    """Where a segment's thumbnail goes when one picture takes `tile_s` seconds of the axis:
    (start, end, share of the picture's width kept) per copy. As many whole copies as fit,
    centred; in a segment narrower than one copy, the middle of the picture, cropped."""
    length = end_s - start_s
    if length <= 0 or tile_s <= 0:
        return []
    if length < tile_s:
        return [(start_s, end_s, length / tile_s)]
    count = int(length // tile_s)
    margin = (length - count * tile_s) / 2
    return [(start_s + margin + k * tile_s, start_s + margin + (k + 1) * tile_s, 1.0)
            for k in range(count)]  # fmt: skip


def save_plot(analysis: VideoAnalysis, path: Path) -> None:
    """Thumbnails per segment above the motion curve, with cuts and segment moods."""
    import cv2
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a = analysis
    segments = a.segments
    fig, (strip, curve) = plt.subplots(
        2, 1, figsize=(14, 6.5), sharex=True, height_ratios=[1, 2.2], constrained_layout=True
    )
    # A filmstrip on the time axis: each segment's thumbnail, at its own aspect ratio, repeated
    # across the segment (cropped, never squeezed, where the segment is narrower).
    strip.set_yticks([])
    strip.set_ylim(0, 1)
    strip.set_xlim(0, a.duration_s)
    fig.canvas.draw()  # lays the axes out, so their size in pixels is known
    box = strip.get_window_extent()
    seconds_per_pixel = a.duration_s / max(box.width, 1.0)
    for i, segment in enumerate(segments):
        if segment.thumbnail_jpeg:
            image = cv2.imdecode(np.frombuffer(segment.thumbnail_jpeg, np.uint8), cv2.IMREAD_COLOR)
            if image is not None:
                rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
                tile_s = box.height * rgb.shape[1] / rgb.shape[0] * seconds_per_pixel
                for start, end, kept in filmstrip(segment.start_s, segment.end_s, tile_s):
                    cut = round(rgb.shape[1] * (1 - kept) / 2)
                    shown = rgb[:, cut : rgb.shape[1] - cut] if cut else rgb
                    strip.imshow(shown, extent=(start, end, 0, 1), aspect="auto")
        if len(segments) <= 24:
            strip.text(segment.start_s, 1.02, str(i + 1), fontsize=8, va="bottom")
    times = np.arange(len(a.motion.values)) / a.motion.hz
    palette = plt.get_cmap("tab20")
    for i, segment in enumerate(segments):
        curve.axvspan(segment.start_s, segment.end_s, color=palette(i % 20), alpha=0.18)
        curve.text(
            (segment.start_s + segment.end_s) / 2,
            1.02,
            "\n".join(segment.moods),
            ha="center",
            va="bottom",
            fontsize=8,
        )
        curve.hlines(
            segment.energy,
            segment.start_s,
            segment.end_s,
            colors="black",
            linestyles="dotted",
            linewidth=1,
        )
    curve.plot(times, a.motion.values, color="tab:blue", linewidth=1.2, label="motion energy")
    for cut in a.cuts:
        curve.axvline(
            cut.time_s,
            color="tab:red" if cut.kind == "hard" else "tab:purple",
            linewidth=0.6 + 1.4 * cut.strength,
            alpha=0.8,
        )
    strip.set_xlim(0, a.duration_s)
    curve.set_ylim(0, 1.25)
    curve.set_xlabel("time (s)")
    curve.set_ylabel("motion energy (0..1)")
    tags = a.tags
    curve.set_title(
        f"{', '.join(tags.genres)} | {', '.join(tags.moods)} | "
        f"{tags.bpm} BPM, {tags.key} | cuts in red (fades purple), "
        "dotted = segment energy",
        fontsize=10,
    )
    fig.suptitle(a.description, fontsize=11)
    fig.savefig(path, dpi=110)
    plt.close(fig)
