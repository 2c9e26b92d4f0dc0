"""The one-screen summary `bgm score` prints at the end."""

from __future__ import annotations

from rich.console import Console

from services.gateway.pipeline import ScoreResult
from services.tagger.report import print_tags


def print_score_summary(result: ScoreResult, console: Console) -> None:
    tags = result.brief.tags
    plan = result.plan
    analysis = result.analysis
    console.print(
        f"[bold]Video[/bold]       {analysis.duration_s:.2f} s, {len(analysis.cuts)} "
        f"cuts, {len(analysis.segments)} segments"
    )
    print_tags(tags, console)
    tempos = [s.bpm for s in plan.sections]
    spread = (
        f" (sections {min(tempos):.1f}-{max(tempos):.1f})"
        if max(tempos) - min(tempos) > 0.05
        else ""
    )
    fixed = " [dim](user, exact)[/dim]" if result.brief.bpm_is_fixed else ""
    console.print(
        f"[bold]{'Tempo':<12}[/bold]{plan.bpm:.1f} BPM{spread}{fixed}, {plan.key}, "
        f"style {plan.genre}, {len(plan.bars_s)} bars, ending: {plan.ending}"
    )
    a = plan.alignment
    if a.cut_count:
        console.print(
            f"[bold]{'Cuts':<12}[/bold]{a.on_beat_count}/{a.cut_count} on a beat, "
            f"{a.on_bar_count} on a bar line; distance to beat median "
            f"{a.median_ms:.1f} ms, worst {a.worst_ms:.1f} ms"
        )
    loudness = result.loudness
    console.print(
        f"[bold]{'Loudness':<12}[/bold]{loudness.integrated_lufs:.1f} LUFS (target "
        f"{loudness.target_lufs:g}), true peak {loudness.true_peak_dbtp:.1f} dBTP"
        + (", ducked under the original sound" if loudness.ducked else "")
    )
    for path in result.written:
        console.print(f"[bold]{'Wrote':<12}[/bold]{path}")
    t = result.timings
    console.print(
        f"[dim]{t['total']:.1f} s: analysis {t['analysis']:.1f}, composition "
        f"{t['composition']:.1f}, mastering {t['mastering']:.1f}, writing "
        f"{t['writing']:.1f}[/dim]"
    )
