"""The one-screen summary `bgm score` and `bgm client score` print at the end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from services.domain import CandidateScore, MusicPlan, MusicTags, OutputOptions, VideoAnalysis
from services.media.audio import output_kind
from services.pipeline import ScoreResult
from services.tagger.report import print_model_and_warnings, print_tags

# The loudness reached this far under its target is reported as missed.
LOUDNESS_MISSED_LU = 0.5


def _print_summary(
    console: Console,
    analysis: VideoAnalysis | None,
    tags: MusicTags,
    plan: MusicPlan,
    bpm_is_fixed: bool,
    loudness: Any,
    written: list[Path],
    ranking: list[CandidateScore],
    options: OutputOptions,
    sound: str = "",
) -> None:
    """`sound`: what the generator rendered with, where it is known here."""
    if analysis is not None:
        console.print(
            f"[bold]Video[/bold]       {analysis.duration_s:.2f} s, "
            f"{_counted(len(analysis.cuts), 'cut')}, "
            f"{_counted(len(analysis.segments), 'segment')}"
        )
        print_model_and_warnings(analysis, console)
    print_tags(tags, console)
    if plan.instruments:
        # The tags' instruments are what the picture and the user asked for; the band is what
        # plays (a rock piece's tags had listed strings, piano, pads and brass only).
        console.print(f"[bold]{'Band':<12}[/bold]{escape(', '.join(plan.instruments))}")
    tempos = [s.bpm for s in plan.sections]
    spread = (f" (sections {min(tempos):.1f}-{max(tempos):.1f})"
              if tempos and max(tempos) - min(tempos) > 0.05 else "")  # fmt: skip
    fixed = " [dim](user, exact)[/dim]" if bpm_is_fixed else ""
    keys = list(dict.fromkeys(s.key for s in plan.sections if s.key and s.key != plan.key))
    lift = f" (then {escape(', '.join(keys))})" if keys else ""
    console.print(
        f"[bold]{'Tempo':<12}[/bold]{plan.bpm:.1f} BPM{spread}{fixed}, {escape(plan.meter)}, "
        f"{escape(plan.key)}{lift}, style {escape(plan.genre)}, "
        f"{_counted(len(plan.bars_s), 'bar')}, ending: {escape(plan.ending)}"
    )
    a = plan.alignment
    if a.cut_count:
        console.print(
            f"[bold]{'Cuts':<12}[/bold]{a.on_beat_count}/{a.cut_count} on a beat, "
            f"{a.on_bar_count} on a bar line; distance to beat median "
            f"{a.median_ms:.1f} ms, worst {a.worst_ms:.1f} ms"
        )
    # A target louder than the limiter can reach under its ceiling (about -9 LUFS for most
    # pieces) is said to be missed, not only shown beside what was reached.
    short = loudness.target_lufs - loudness.integrated_lufs > LOUDNESS_MISSED_LU
    console.print(
        f"[bold]{'Loudness':<12}[/bold]{loudness.integrated_lufs:.1f} LUFS (target "
        f"{loudness.target_lufs:g}"
        + (f", not reached under the {loudness.true_peak_limit_dbtp:g} dBTP ceiling"
           if short else "")
        + f"), true peak {loudness.true_peak_dbtp:.1f} dBTP"
        # (Without the video's own sound kept, what ducked is the music under the speech
        # it left out: said on the Speech line, not as "under the original sound".)
        + (", ducked under the original sound"
           if loudness.ducked and options.keep_original_audio else "")
    )  # fmt: skip
    if analysis is not None and analysis.speech:
        spoken_s = sum(i.end_s - i.start_s for i in analysis.speech)
        arranged = sum(1 for section in plan.sections if section.thinning)
        console.print(
            f"[bold]{'Speech':<12}[/bold]{len(analysis.speech)} stretches, {spoken_s:.1f} s; "
            + (f"the arrangement steps aside in {_counted(arranged, 'section')}" if arranged
               else "the arrangement plays on")
            + ("; the music ducks under it" if loudness.ducked else "")
        )  # fmt: skip
    for score in ranking:
        measures = [f"tempo {score.tempo_fit:.2f}"]
        if score.cut_accent is not None:
            measures.append(f"cuts {score.cut_accent:.2f}")
        if score.energy_follow is not None:
            measures.append(f"energy {score.energy_follow:.2f}")
        chosen = " [green](delivered)[/green]" if score.rank == 1 else ""
        console.print(
            f"[bold]{f'Ranked {score.rank}':<12}[/bold]candidate {score.candidate + 1} of "
            f"{len(ranking)}, score {score.score:.3f}: {', '.join(measures)}{chosen}"
        )
    has_audio = analysis.has_audio if analysis is not None else None
    console.print(f"[bold]{'Sound':<12}[/bold]{sound_line(has_audio, options)}")
    if sound:
        console.print(f"[bold]{'Rendered':<12}[/bold]{escape(sound)}")
    for path in written:
        console.print(f"[bold]{'Wrote':<12}[/bold]{escape(str(path))}")


def sound_line(has_audio: bool | None, options: OutputOptions) -> str:
    """What became of the video's own sound."""
    if options.keep_original_audio:
        return "the video's own sound under the music (--speech says how the music ducks)"
    if output_kind(options.output) == "audio":
        return "the music alone (an audio file)"
    if has_audio is False:
        return "the music (the video had no sound of its own)"
    return ("the music replaces the video's own sound (--keep-original-audio keeps it under "
            "the music)")  # fmt: skip


def print_score_summary(
    result: ScoreResult, options: OutputOptions, console: Console, start_up_s: float, wall_s: float
) -> None:
    _print_summary(
        console,
        result.analysis,
        result.brief.tags,
        result.plan,
        result.brief.bpm_is_fixed,
        result.loudness,
        result.written,
        result.ranking,
        options,
        result.sound,
    )
    t = result.timings
    console.print(
        f"[dim]{wall_s:.1f} s in all: start-up {start_up_s:.1f}, analysis {t['analysis']:.1f}, "
        f"composition {t['composition']:.1f}, mastering {t['mastering']:.1f}, writing "
        f"{t['writing']:.1f}[/dim]"
    )


def print_remote_summary(
    outcome: Any, options: OutputOptions, console: Console, wall_s: float
) -> None:
    from services.contract import (
        analysis_from_proto,
        plan_from_proto,
        ranking_from_proto,
        tags_from_proto,
    )

    result = outcome.result
    assert result is not None  # score_remote refuses a stream that ends without one
    analysis = analysis_from_proto(outcome.analysis) if outcome.analysis is not None else None
    plan = plan_from_proto(result.plan)
    # A user BPM is the only way the range closes to one value.
    fixed = result.tags.bpm_min == result.tags.bpm_max
    _print_summary(
        console,
        analysis,
        tags_from_proto(result.tags),
        plan,
        fixed,
        result.loudness,
        outcome.written or [Path(u) for u in result.output_uris],
        ranking_from_proto(result.ranking),
        options,
    )
    console.print(f"[dim]{wall_s:.1f} s in all, {result.seconds:.1f} s of it on the server[/dim]")


def _counted(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
