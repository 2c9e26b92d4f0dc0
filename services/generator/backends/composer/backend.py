"""The `composer` generator backend: cut-aligned symbolic music rendered with a SoundFont."""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from services.config import ComposerConfig
from services.domain import (
    GeneratedMusic,
    Look,
    MusicBrief,
    MusicPlan,
    PlannedSection,
)
from services.errors import InvalidInputError
from services.generator.backend import (
    GenerationJob,
    GeneratorInfo,
    JobResult,
    ProgressCallback,
    cut_alignment,
    one_by_one,
    validate_brief,
)
from services.generator.backends import OUTPUTS, SAMPLE_RATES
from services.generator.backends.composer import balance
from services.generator.backends.composer.arrangement import (
    LONGEST_TIE_S,
    SUSTAINING,
    Arrangement,
    Composer,
    Note,
    Roles,
    SectionForm,
    SectionVideo,
    asked_instruments,
    assign_roles,
    choose_band,
    on_kit,
    section_forms,
)
from services.generator.backends.composer.bank import find_bank
from services.generator.backends.composer.midi import (
    DRUM_CHANNEL,
    Track,
    channel_volumes,
    midi_bytes,
)
from services.generator.backends.composer.mixing import Mixer, MixPart, stage
from services.generator.backends.composer.performance import (
    Performance,
    perform,
    shaped,
    strummers,
    with_ghost_notes,
)
from services.generator.backends.composer.render import (
    DRUM_BANK,
    RenderPart,
    Synthesizer,
    synthesizer,
)
from services.generator.backends.composer.speech import around_speech
from services.generator.backends.composer.styles import KICKS, MELODY_PAN, PANS, STYLES, Style
from services.generator.backends.composer.theory import Key
from services.generator.backends.composer.timing import (
    METERS,
    HitPoint,
    Meter,
    TimingPlan,
    distinct_hits,
    plan_timing,
)
from services.media.audio import fade_out
from services.progress import Heartbeat
from services.vocabulary import load_vocabulary

VERSION = "2.0"
# The loudest sample the mix may reach (mastering sets the final level).
MAX_PEAK = 0.9
# Progress: planning up to ARRANGING, writing the parts and performing them up to PERFORMED,
# the mix up to MIXED, then the headroom and the MIDI file.
ARRANGING, PERFORMED, MIXED = 0.05, 0.15, 0.95
# How often a genre that plays in several meters takes its usual one.
USUAL_METER_CHANCE = 0.7
# Length of the fade that ends a piece too short for a cadence.
FADE_S = 2.0


@dataclass
class Score:
    """What the composer decided for one brief, before it is performed and rendered; a
    backend that writes some parts itself replaces them here (`notes`, `band`, `roles`)."""

    brief: MusicBrief
    style: Style
    band: list[str]
    roles: Roles
    plan: TimingPlan
    forms: list[SectionForm]
    arrangement: Arrangement
    home: Key
    notes: list[Note]
    rng: np.random.Generator


class ComposerGenerator:
    def __init__(self, config: ComposerConfig):
        self.config = config
        self.vocabulary = load_vocabulary()
        self._mood_modes = {
            name: mood.mode for name, mood in self.vocabulary.moods.items() if mood.mode
        }
        self.bank = find_bank(config.soundfont_path)
        self._synthesizers: dict[int, Synthesizer] = {}
        self._kits: dict[int, int] = {}
        # Load the bank now: a bad path fails at start-up, not on the first request.
        self._synthesizer(48000)

    def _synthesizer(self, sample_rate: int) -> Synthesizer:
        if sample_rate not in self._synthesizers:
            self._synthesizers[sample_rate] = synthesizer(self.bank, sample_rate)
        return self._synthesizers[sample_rate]

    def _kit(self, kit: int) -> int:
        """The genre's drum kit, or the standard kit where the bank lacks it."""
        if kit not in self._kits:
            has = self._synthesizer(48000).has_program(DRUM_BANK, kit)
            self._kits[kit] = kit if has else 0
        return self._kits[kit]

    def describe(self) -> GeneratorInfo:
        return GeneratorInfo(
            name="composer",
            version=VERSION,
            max_duration_s=self.config.max_duration_s,
            sample_rates=SAMPLE_RATES,
            outputs=OUTPUTS["composer"],
            genres=tuple(STYLES),
            instruments=tuple(self.vocabulary.instruments),
            # "composer" is what it does anyway.
            structures=("free", "composer"),
            sound=self.bank.description,
            sound_advice=self.bank.advice,
        )

    def tracks(self, brief: MusicBrief) -> int:
        if not brief.stems:
            return 1
        validate_brief(brief, self.describe(), self.vocabulary)
        style = STYLES[brief.tags.genres[0]]
        band = choose_band(style, brief.tags, brief.negative)
        return 1 + len(assign_roles(style, band).players(band))

    def generate_batch(self, jobs: Sequence[GenerationJob]) -> list[JobResult]:
        # One core renders one piece at a time; nothing is shared between pieces.
        return one_by_one(self, jobs)

    def generate(
        self, brief: MusicBrief, progress: ProgressCallback | None = None
    ) -> GeneratedMusic:
        report = progress or (lambda fraction: None)
        heartbeat = Heartbeat(report)
        return self.render(self.compose(brief, heartbeat), report)

    def compose(self, brief: MusicBrief, heartbeat: Heartbeat, meter: str | None = None) -> Score:
        """The plan and the notes of every part (before performance); `meter` fixes the
        meter (a backend that writes its own parts in 4/4 asks for it)."""
        validate_brief(brief, self.describe(), self.vocabulary)
        tags = brief.tags
        style = STYLES[tags.genres[0]]
        band = choose_band(style, tags, brief.negative)
        if not band:
            raise InvalidInputError("no instruments left to play after the negative tags")
        # The genre joins the seed: two genres on one seed make two pieces, not one tune in
        # two costumes.
        rng = np.random.default_rng([brief.seed, list(STYLES).index(style.name)])
        # The genre's usual meter most of the time; the seed may choose another it plays in.
        others = style.meters[1:]
        usual = not others or rng.random() < USUAL_METER_CHANCE
        chosen = style.meters[0] if usual else others[int(rng.integers(len(others)))]
        home = _home_key(brief, style)
        roles = assign_roles(style, band)
        band = roles.players(band)
        cuts = self._hit_points(brief)
        plan = self._timing(brief, style, METERS[meter or chosen], cuts, heartbeat)
        heartbeat()
        video = self._section_video(brief, plan)
        heartbeat()
        forms = section_forms(plan, video, tags.energy, style, home, brief.duration_s,
                              self._mood_modes, brief.key_is_fixed)  # fmt: skip
        heartbeat.advance(ARRANGING)
        arrangement = Composer(plan, style, roles, forms, cuts, brief.duration_s, rng,
                               heartbeat, asked_instruments(tags)).compose()  # fmt: skip
        heartbeat()
        notes = with_ghost_notes(arrangement.notes, plan, forms, style, arrangement.cut_times,
                                 rng, heartbeat)  # fmt: skip
        heartbeat()
        # A player the arrangement never brought in (a second player of a part, in a piece
        # that never gets busy enough) is not in the piece: no silent track, stem or name.
        # (A piece of a few samples has no note at all, and keeps its band.)
        playing = {note.instrument for note in notes}
        if playing:
            band = [instrument for instrument in band if instrument in playing]
        return Score(brief, style, band, roles, plan, forms, arrangement, home,
                     notes, rng)  # fmt: skip

    def render(self, score: Score, report: ProgressCallback) -> GeneratedMusic:
        """The score performed, mixed and rendered: audio, stems, MIDI and plan."""
        brief, plan, roles, style, band = (score.brief, score.plan, score.roles, score.style,
                                           score.band)  # fmt: skip
        heartbeat = Heartbeat(report, ARRANGING)
        thinning = [""] * len(plan.sections)
        # Drums as the bank's kit for the genre plays them (an orchestral kit's timpani).
        notes = on_kit(score.notes, self._kit(style.production.kit), score.arrangement)
        if brief.speech:
            thinned = around_speech(notes, plan, roles, brief.speech, heartbeat)
            notes, thinning = thinned.notes, thinned.sections
        notes = _without_overlaps(notes, plan, heartbeat)
        heartbeat()
        notes = shaped(notes, plan, roles, score.arrangement, heartbeat)
        by_instrument: dict[str, list[Note]] = defaultdict(list)
        for note in notes:
            by_instrument[note.instrument].append(note)
        performance = perform(by_instrument, plan, score.forms, score.arrangement,
                              brief.sample_rate, score.rng, heartbeat,
                              style.timing_sd_ms, strummers(style, roles))  # fmt: skip
        heartbeat.advance(PERFORMED)
        total = round(brief.duration_s * brief.sample_rate)
        channels, parts = [], []
        for index, instrument in enumerate(band):
            drums = instrument == "drums"
            program = self._kit(style.production.kit) if drums else style.program(instrument)
            channels.append(
                DRUM_CHANNEL if drums else (index if index < DRUM_CHANNEL else index + 1)
            )
            scheduled = performance.notes.get(instrument, [])
            controls = performance.controls.get(instrument, [])
            parts.append(RenderPart(instrument, scheduled, program, drums, controls))
        synth = self._synthesizer(brief.sample_rate)
        rate, beat_s = brief.sample_rate, 60.0 / plan.base_bpm

        asked = balance.levels(style.production, roles, [part.name for part in parts])
        tune = set(roles.of("melody"))
        pans = stage({name: MELODY_PAN if name in tune else PANS[name] for name in band}, asked)

        def as_stems(played: Sequence[RenderPart], gains: Sequence[float]) -> Mixer:
            return _mixer(style, rate, beat_s, played, placed, gains, True, brief.seed, False)

        held = total <= balance.HELD_PIECE_S * rate
        stretches = balance.STRETCHES
        excerpts = [balance.excerpt(part, stretches, rate) for part in parts]
        blocks: Iterable[tuple[int, int, list[np.ndarray]]]
        whole: balance.HeldPiece | None = None
        if held:
            blocks = list(synth.blocks(parts, total, heartbeat))
            measured = balance.cut_from(blocks, parts, stretches, rate)
            whole = balance.HeldPiece(blocks, parts, stretches)
        else:
            measured = balance.played_apart(synth, parts, stretches, heartbeat)
            blocks = synth.blocks(parts, total, heartbeat)
        # Each part where it sits, its preset's lean taken out; the tune in mono (gains apart).
        placed = [
            MixPart(part.name, 1.0, part.drums, pans[part.name], lean, part.name in tune)
            for part, lean in zip(parts, balance.leans(measured, len(parts)), strict=True)
        ]
        levels = [asked[part.name] for part in parts]
        # Stems carry these gains, so the stems sum to the mix.
        gains = balance.balanced_gains(measured, excerpts, levels, as_stems, rate, heartbeat, whole)
        tracks = [
            Track(part.name, part.program, channel, volume, pans[part.name])
            for part, channel, volume in zip(parts, channels, channel_volumes(gains), strict=True)
        ]
        mixer = _mixer(style, rate, beat_s, parts, placed, gains, brief.stems, brief.seed, True)
        mix = np.zeros((total, 2), dtype=np.float32)
        stems = (
            {name: np.zeros((total, 2), dtype=np.float32) for name in band} if brief.stems else {}
        )
        for start, end, dry in blocks:
            mixed, stem_blocks = mixer.bus(start, *mixer.mix(start, dry))
            for name, block in zip(band, stem_blocks, strict=False):
                stems[name][start:end] = block.T
            mix[start:end] = mixed.T
            heartbeat.advance(PERFORMED + (MIXED - PERFORMED) * end / total)
        ending = "cadence" if plan.final_beat is not None else "fade"
        # After a cadence, the final chord's release and the reverb ring out until the end.
        release_s = plan.beat_time(score.arrangement.end_beat)
        # Headroom: a full band can sum past full scale; mix and stems scale together.
        peak = _peak(mix, heartbeat)
        for audio in (mix, *stems.values()):
            if peak > MAX_PEAK:
                _scale(audio, MAX_PEAK / peak, heartbeat)
            if ending == "fade":
                fade_out(audio, round(min(FADE_S, brief.duration_s / 3) * rate))
            else:
                _fade_tail(audio, round((brief.duration_s - release_s) * rate))
        midi = midi_bytes(
            by_instrument,
            plan,
            tracks,
            [(form.start_beat, form.key) for form in score.forms],
            _controls_in_beats(performance, plan, brief.sample_rate),
            heartbeat,
        )
        report(1.0)
        return GeneratedMusic(
            audio=mix,
            sample_rate=brief.sample_rate,
            stems=stems,
            midi=midi,
            plan=_music_plan(
                brief,
                plan,
                score.forms,
                score.arrangement,
                style.name,
                band,
                ending,
                score.home,
                thinning,
            ),
        )

    @staticmethod
    def _hit_points(brief: MusicBrief) -> list[HitPoint]:
        """The video's cuts as the music meets them (`timing.distinct_hits`: of cuts closer
        together than a tenth of a second, the strongest), those that start a segment marked
        as boundaries."""
        starts = {round(s.start_s, 3) for s in brief.segments}
        points = [
            HitPoint(c.time_s, c.strength, boundary=round(c.time_s, 3) in starts)
            for c in sorted(brief.cuts, key=lambda c: c.time_s)
            if 0.0 < c.time_s < brief.duration_s
        ]
        return distinct_hits(points)

    def _timing(
        self,
        brief: MusicBrief,
        style: Style,
        meter: Meter,
        cuts: list[HitPoint],
        heartbeat: Heartbeat,
    ) -> TimingPlan:
        tags = brief.tags
        starts = sorted(
            {0.0} | {s.start_s for s in brief.segments if 0.0 < s.start_s < brief.duration_s - 0.25}
        )
        # How much the picture changes at each segment's start (its energy's step).
        ordered = sorted(brief.segments, key=lambda s: s.start_s)
        changes = {after.start_s: abs(after.energy - before.energy)
                   for before, after in itertools.pairwise(ordered)}  # fmt: skip
        low, high = float(tags.bpm_min), float(tags.bpm_max)
        preferred = float(np.clip(tags.bpm, low, high))

        def planned(bpm: float) -> TimingPlan:
            return plan_timing(
                brief.duration_s,
                starts,
                cuts,
                (low, high),
                bpm,
                meter,
                style.tempo_flex,
                heartbeat,
                style.production.space.ring_s,
                fixed_bpm=float(tags.bpm) if brief.bpm_is_fixed else None,
                take=brief.seed,
                changes=changes,
            )

        plan = planned(preferred)
        # The user's moods moved the tempo the brief prefers (their `lean`); where that costs
        # cuts, the tempo the picture preferred keeps them (calm on a cue whose cuts ask for
        # 78 BPM had pulled it to 62 and left two of its four cuts off the beat).
        asked = [o.tag for o in tags.origins if o.kind == "mood" and o.source == "user"]
        lean = self.vocabulary.lean(asked, "tempo") * (high - low)
        if lean and cuts and not brief.bpm_is_fixed:
            picture = planned(float(np.clip(preferred - lean, low, high)))
            if _on_beats(picture, brief) > _on_beats(plan, brief):
                plan = picture
        return plan

    @staticmethod
    def _section_video(brief: MusicBrief, plan: TimingPlan) -> list[SectionVideo]:
        """Energy, look and moods of the video segment that covers most of each planned
        section (the earlier on a tie): a section that took in a short neighbour
        (timing.MIN_SECTION_BARS) stands for its own picture, not for the short one's. Both
        lists are in order, so one pass reads them: a two-hour video has thousands of both."""
        if not brief.segments:
            neutral = Look(0.5, 0.5, 0.5, 0.5)
            return [
                SectionVideo(brief.tags.energy, neutral, list(brief.tags.moods))
                for _ in plan.sections
            ]
        segments = sorted(brief.segments, key=lambda s: s.start_s)
        video = []
        first = 0
        for section in plan.sections:
            while first < len(segments) - 1 and segments[first].end_s <= section.start_s:
                first += 1
            covering, most = segments[first], -math.inf
            for segment in itertools.islice(segments, first, None):
                if segment.start_s >= section.end_s:
                    break
                overlap = min(segment.end_s, section.end_s) - max(segment.start_s, section.start_s)
                if overlap > most + 1e-9:
                    covering, most = segment, overlap
            video.append(SectionVideo(covering.energy, covering.look, list(covering.moods)))
        return video


def _mixer(
    style: Style,
    sample_rate: int,
    beat_s: float,
    played: Sequence[RenderPart],
    placed: Sequence[MixPart],
    gains: Sequence[float],
    stems: bool,
    seed: int,
    centre_returns: bool,
) -> Mixer:
    """The mix of the `played` parts (their kicks pump it), each `placed` at its gain."""
    kicks = [n.start_sample for p in played if p.drums for n in p.notes if n.pitch in KICKS]
    mixed = [replace(p, gain=gain) for p, gain in zip(placed, gains, strict=True)]
    return Mixer(style.production, mixed, sample_rate, beat_s, kicks, stems, seed, centre_returns)


# Samples a step of the headroom's passes over the mix takes (a two-hour mix is 2.8 GB: a
# whole np.abs copy of it would double that, and a pass over it takes most of a second).
HEADROOM_BLOCK = 1 << 20


def _peak(audio: np.ndarray, heartbeat: Callable[[], None]) -> float:
    """The largest absolute sample, a block at a time."""
    peak = 0.0
    for i in range(0, len(audio), HEADROOM_BLOCK):
        heartbeat()
        peak = max(peak, float(np.abs(audio[i : i + HEADROOM_BLOCK]).max()))
    return peak


def _scale(audio: np.ndarray, scale: float, heartbeat: Callable[[], None]) -> None:
    """In place, a block at a time."""
    for i in range(0, len(audio), HEADROOM_BLOCK):
        heartbeat()
        audio[i : i + HEADROOM_BLOCK] *= scale


def _without_overlaps(notes: list[Note], plan: TimingPlan, heartbeat: Heartbeat) -> list[Note]:
    """One sounding note per instrument and pitch: an earlier note ends where the next starts
    (a synthesizer's note-off cannot tell two overlapping notes of one key apart), and two
    struck together are one, the louder (a cut's accent, not the groove's own stroke of that
    drum, which had taken its place at most cuts on a beat in rock and hip-hop). Sustaining
    instruments tie a held pitch across bars instead of striking it again, up to a breath
    (LONGEST_TIE_S)."""
    keys: dict[tuple[str, int], list[Note]] = defaultdict(list)
    for note in notes:
        keys[note.instrument, note.pitch].append(note)
    result: list[Note] = []
    for played in keys.values():
        heartbeat()
        played.sort(key=lambda n: n.start)
        kept: list[Note] = []
        for note in played:
            previous = kept[-1] if kept else None
            if previous is None:
                kept.append(note)
            elif note.start - previous.start <= 1e-6:
                louder = note if note.velocity > previous.velocity else previous
                louder.end = max(previous.end, note.end)
                kept[-1] = louder
            elif (
                note.instrument in SUSTAINING
                and previous.end >= note.start - 1e-6
                and plan.beat_time(max(previous.end, note.end)) - plan.beat_time(previous.start)
                <= LONGEST_TIE_S.get(note.instrument, math.inf)
            ):
                previous.end = max(previous.end, note.end)
            else:
                if previous.end > note.start:
                    previous.end = note.start
                    if previous.end - previous.start < 1e-3:
                        kept.pop()
                kept.append(note)
        result += kept
    return sorted(result, key=lambda n: (n.start, n.instrument, n.pitch))


def _fade_tail(audio: np.ndarray, samples: int) -> None:
    """In place: the last `samples` (the final chord's release tail) fade to silence along a
    half cosine, gently at first. A hall's ring is still loud when the video ends, and cut
    there (the old 20 ms guard) it stopped dead."""
    length = min(len(audio), max(samples, 1))
    curve = np.cos(np.linspace(0.0, np.pi / 2, length)) ** 2
    audio[-length:] *= curve.astype(np.float32)[:, None]


def _controls_in_beats(
    performance: Performance, plan: TimingPlan, sample_rate: int
) -> dict[str, list[tuple[float, int, int]]]:
    return {
        instrument: [(plan.beat_at(c.sample / sample_rate), c.controller, c.value) for c in cs]
        for instrument, cs in performance.controls.items()
    }


def _on_beats(plan: TimingPlan, brief: MusicBrief) -> int:
    """The brief's cuts on the plan's beats, as the plan reports them (cut_alignment)."""
    bars = [plan.beats_s[b] for b in plan.bar_starts]
    return cut_alignment(plan.beats_s, bars, brief.cuts).on_beat_count


def _home_key(brief: MusicBrief, style: Style) -> Key:
    """The key the piece is in: the brief's when the user fixed it, else one of the keys the
    genre's players favour, in the brief's mode (the picture chose the mode; its choice of
    tonic is arbitrary, and every genre in one key would share its notes). The seed alone
    picks the position in the genre's list, so one seed puts two genres in two keys (the
    lists never share a tonic at one position)."""
    asked = Key.parse(brief.tags.key)
    tonics = style.tonics.get(asked.mode, ())
    if brief.key_is_fixed or not tonics:
        return asked
    # Seeds in turn (the candidates) take the positions in turn: drawn at random, seeds 0, 2
    # and 3 had all drawn one key.
    position = brief.seed % len(tonics)
    return Key.parse(f"{tonics[position]} {asked.mode}")


def _music_plan(
    brief: MusicBrief,
    plan: TimingPlan,
    forms: list[SectionForm],
    arrangement: Arrangement,
    genre: str,
    instruments: list[str],
    ending: str,
    home: Key,
    thinning: list[str],
) -> MusicPlan:
    bars = [plan.beats_s[b] for b in plan.bar_starts]
    alignment = cut_alignment(plan.beats_s, bars, brief.cuts)
    # The brief's spelling of a key it fixed; others by name.
    home_name = brief.tags.key if brief.key_is_fixed else home.name
    sections = []
    final = plan.final_beat
    for i, (section, form) in enumerate(zip(plan.sections, forms, strict=True)):
        sections.append(
            PlannedSection(
                start_s=round(section.start_s, 6),
                end_s=round(section.end_s, 6),
                role=form.role,
                bpm=round(section.bpm, 4),
                first_beat=section.first_beat,
                beat_count=section.beat_count,
                energy=round(form.energy, 4),
                intensity=form.intensity,
                instruments=arrangement.section_instruments[i],
                chords=arrangement.section_chords[i],
                key=home_name if form.key == home else form.key.name,
                material=form.material,
                thinning=thinning[i],
            )
        )
    return MusicPlan(
        bpm=round(plan.base_bpm, 3),
        key=home_name,
        beats_s=[round(b, 6) for b in plan.beats_s],
        bars_s=[round(float(b), 6) for b in bars],
        sections=sections,
        alignment=alignment,
        ending=ending,
        final_chord_s=round(plan.beats_s[final], 6) if final is not None else brief.duration_s,
        genre=genre,
        instruments=instruments,
        meter=plan.meter.name,
    )
