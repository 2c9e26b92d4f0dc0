"""The parts' levels, set as an engineer sets faders: by what each part sounds like.

A General MIDI bank's presets differ in loudness by over 10 dB at one velocity (MuseScore
General's pizzicato strings and its whistle lie 15 dB apart on one note), and a plucked tune
sounds quieter than a held chord. So a fixed gain per part left the melody 15 LU under the
drums in lo-fi and folk's guitar as far under its flute. Here each part is played in
stretches spread over the piece, measured (BS.1770 loudness, gated, so its rests do not count)
and given the gain that puts it at its level (`levels`: its role's, from production.py's
LEVELS, LU from the melody; the harmony's parts share one).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from services.generator.backends.composer.arrangement import Roles
from services.generator.backends.composer.mixing import Mixer, lean_db
from services.generator.backends.composer.production import HARMONY_PARTS, Production
from services.generator.backends.composer.render import Control, RenderPart, Synthesizer
from services.media.loudness import gated_level, integrated_loudness


@dataclass(frozen=True)
class Stretches:
    """How much of each part is measured: `count` stretches of `seconds` spread evenly over
    it (every section's level counts, not only its loudest), laid one after another."""

    count: int
    seconds: float


# Sixteen stretches of 1 s: on bench_sound's eleven pieces, four of 2 s had left 11 of 53
# parts more than 1 LU off their level (the farthest 2.5 LU), sixteen of 1 s leave 3 (1.5
# LU), the whole piece 2 (1.4 LU). A held piece's are cut from its render and cost only
# their measuring; a longer piece's are played again apart (LEAD_S), which makes a 70 s
# piece about 10% slower to make. With four of 2 s there, a music review had found 14 of 60
# drum and bass levels more than 2 LU off in pieces over a minute (lo-fi's bass 5.1 LU over,
# its tune masked), against 3 of 60 in shorter ones.
STRETCHES = Stretches(16, 1.0)
# A piece up to this long is rendered once and held, and its stretches are cut from it; a
# longer one's stretches are played again apart (with RING_S for the last one's ring), so it
# is never held whole.
HELD_PIECE_S = 60.0
RING_S = 1.0
# The dry loudness of a part at level 0 (the melody). The others follow by their levels; the
# channel strips and bus compressors are set for a mix at about this level.
REFERENCE_LUFS = -24.0


def window_starts(part: RenderPart, stretches: Stretches, rate: int) -> list[int]:
    """Where the part's stretches start: spread evenly from its first note to its last, the
    last stretch on the last note (the final chord, held a second or more, is part of how
    the part sounds: a short piece's strings had come out 2.2 LU over their level)."""
    if not part.notes:
        return []
    first = min(note.start_sample for note in part.notes)
    last = max(note.start_sample for note in part.notes)
    step = max((last - first) / max(stretches.count - 1, 1), stretches.seconds * rate)
    return [round(first + k * step) for k in range(stretches.count) if first + k * step <= last]


def excerpt(part: RenderPart, stretches: Stretches, rate: int, lead_s: float = 0.0) -> RenderPart:
    """The part's stretches, spread evenly from its first note to its last, played back to
    back from sample 0, each from the controller values (pedal, expression) the part has
    there and with the notes that sound in it; each after `lead_s` of what comes before it
    (`played_apart`)."""
    window = round(stretches.seconds * rate)
    lead = round(lead_s * rate)
    begins = window_starts(part, stretches, rate)
    if not begins:
        return part
    notes, controls = [], []
    ordered = sorted(part.controls, key=lambda c: c.sample)
    for slot, begin in enumerate(begins):
        origin = begin - lead
        shift = slot * (lead + window) - origin
        # What sounds in the window: a note held into it (a bass under the whole bar) is
        # struck at its start, and every note is let go at its end.
        notes += [
            dataclasses.replace(
                note,
                start_sample=max(note.start_sample, origin) + shift,
                end_sample=min(note.end_sample, begin + window) + shift,
            )
            for note in part.notes
            if note.start_sample < begin + window and note.end_sample > origin
        ]
        held = {c.controller: c.value for c in ordered if c.sample <= origin}
        controls += [Control(origin + shift, number, value) for number, value in held.items()]
        controls += [
            Control(c.sample + shift, c.controller, c.value)
            for c in ordered
            if origin < c.sample < begin + window
        ]
    return dataclasses.replace(part, notes=notes, controls=controls)


Blocks = list[tuple[int, list[np.ndarray]]]

# Each stretch played apart comes after this much of the part before it, which is left out
# of what is measured: a note held into a stretch is struck that much before it, so a
# plucked or struck note has decayed there as it has in the piece. Struck at the stretch's
# start, lo-fi's kalimba tune had measured louder than it sounds, and its band came out
# 1.3-2.2 LU over their levels in a piece over a minute (all of them within 0.9 LU held).
LEAD_S = 0.5


def played_apart(
    synth: Synthesizer,
    parts: Sequence[RenderPart],
    stretches: Stretches,
    heartbeat: Callable[[], None],
) -> Blocks:
    """Each part's stretches played from sample 0, each after LEAD_S of the part before it,
    and laid end to end as `excerpt` lays them (without LEAD_S), in blocks of a second."""
    rate = synth.sample_rate
    window, lead = round(stretches.seconds * rate), round(LEAD_S * rate)
    excerpts = [excerpt(part, stretches, rate, LEAD_S) for part in parts]
    length = max((n.end_sample for e in excerpts for n in e.notes), default=0)
    total = length + round(RING_S * rate)
    blocks = [dry for _, _, dry in synth.blocks(excerpts, total, heartbeat)]
    begins = [
        [slot * (lead + window) + lead for slot in range(len(window_starts(part, stretches, rate)))]
        for part in parts
    ]
    return _laid(blocks, begins, window, rate)


def cut_from(
    piece: list[tuple[int, int, list[np.ndarray]]],
    parts: Sequence[RenderPart],
    stretches: Stretches,
    rate: int,
) -> Blocks:
    """Each part's stretches cut from its rendered piece (`piece`: the synthesizer's blocks)
    and laid end to end as `excerpt` lays them, in blocks of a second."""
    window = round(stretches.seconds * rate)
    begins = [window_starts(part, stretches, rate) for part in parts]
    return _laid([dry for _, _, dry in piece], begins, window, rate)


def _laid(
    blocks: list[list[np.ndarray]], begins: list[list[int]], window: int, rate: int
) -> Blocks:
    """Each part's windows (`begins`, samples, `window` long) of its audio (`blocks`, the
    synthesizer's, by part), laid end to end, in blocks of a second."""
    cuts = []
    for i, starts in enumerate(begins):
        audio = np.concatenate([dry[i] for dry in blocks], axis=1)
        cut = [audio[:, begin : begin + window] for begin in starts]
        cuts.append(np.concatenate(cut, axis=1) if cut else audio[:, :0])
    length = max(cut.shape[1] for cut in cuts)
    laid = [np.pad(cut, ((0, 0), (0, length - cut.shape[1]))) for cut in cuts]
    return [(start, [audio[:, start : start + rate] for audio in laid])
            for start in range(0, length, rate)]  # fmt: skip


@dataclass(frozen=True)
class HeldPiece:
    """A piece held whole (up to HELD_PIECE_S): the synthesizer's blocks of its parts, and
    the stretches the balance measures, to cut them from its stems."""

    blocks: list[tuple[int, int, list[np.ndarray]]]
    parts: Sequence[RenderPart]
    stretches: Stretches


# A compressed part whose gain the first correction moves by more than this (dB) is heard
# again (`balanced_gains`).
REHEAR_DB = 1.0
# The least it is taken to rise for its gain, dB per dB (a 4:1 compressor's slope is 0.25).
REHEAR_SLOPE = 0.25
# Corrections of the balance heard through a bus that distorts (one had left lo-fi's drums
# 1.3 LU under their level).
BUS_PASSES = 2


def balanced_gains(
    measured: Blocks,
    excerpts: Sequence[RenderPart],
    levels: Sequence[float],
    mixer_for: Callable[[Sequence[RenderPart], Sequence[float]], Mixer],
    sample_rate: int,
    heartbeat: Callable[[], None],
    held: HeldPiece | None = None,
) -> list[float]:
    """The gain that sets each part at its level (LU from the melody) as it sounds in the
    mix, through its channel strip and with its reverb and echo, from its stretches
    (`measured`, laid out as `excerpts`; `mixer_for(parts, gains)` makes the mix, with
    stems; `heartbeat` is called at every block). A first guess from the dry stretches, then
    BS.1770 on them as stems at the gain that gave, to take in what the compressor and sends
    make of them, and one correction; the compressed parts, whose loudness moves less than
    their gain, are heard again and corrected once more.
    A `held` piece is mixed whole once, at the first guess, and its stretches are cut from
    its stems: each part sounds as much louder than in them as its whole stem's gated level
    is over theirs (on a minute, a sparse part's stretches fall on its notes' decays by
    chance; a review's lo-fi take had its tune 1.8 LU under its whole in them, its drums 3.9
    LU under their level).
    Where the bus distorts (Production.bus_distorts), they are heard through it too, and
    what it leaves of the balance corrected, its overall level kept: its saturation and
    low-pass take more from some parts than others (lo-fi's drums had been heard 2.5 LU under
    their level). A part with nothing to measure (no notes, or under BS.1770's -70 LUFS gate:
    inaudible beside the rest) keeps unit gain."""

    def loudness(chunks: list[np.ndarray]) -> float:
        # No stretch at all: a piece too short for any part's first note to fall in it.
        if not chunks:
            return -math.inf
        audio = np.concatenate(chunks, axis=1).T
        return integrated_loudness(audio, sample_rate) if audio.any() else -math.inf

    def corrected(gains: list[float], heard: list[float]) -> list[float]:
        return [
            gain * 10 ** ((REFERENCE_LUFS + level - loud - offset) / 20)
            if part.notes and math.isfinite(loud)
            else gain
            for part, level, offset, gain, loud in zip(
                excerpts, levels, offsets, gains, heard, strict=True
            )
        ]

    def heard(
        mixer: Mixer, bused: bool, known: dict[int, tuple[list[np.ndarray], float]] | None = None
    ) -> tuple[list[float], list[list[np.ndarray]]]:
        """Each part's loudness as a stem, and its stems block by block; `known`: parts whose
        stems before the bus are those given (block by block), times a scale."""
        stems = stems_of(mixer, measured, bused, known)
        return [loudness(chunks) for chunks in stems], stems

    def stems_of(
        mixer: Mixer,
        blocks: Blocks,
        bused: bool,
        known: dict[int, tuple[list[np.ndarray], float]] | None = None,
    ) -> list[list[np.ndarray]]:
        stems: list[list[np.ndarray]] = [[] for _ in excerpts]
        for n, (start, block) in enumerate(blocks):
            heartbeat()
            given = {
                i: chunks[n] * np.float32(scale) for i, (chunks, scale) in (known or {}).items()
            }
            before_bus, parts = mixer.mix(start, block, given)
            if bused:
                _, parts = mixer.bus(start, before_bus, parts)
            for chunks, stem in zip(stems, parts, strict=True):
                chunks.append(stem)
        return stems

    # A first guess from the dry level (plain RMS, in dB: cheap, and near enough for the
    # strips' compressors to act about as they will).
    rms = [
        10 * math.log10(np.mean([np.mean(np.square(block[i])) for _, block in measured]))
        if any(block[i].any() for _, block in measured)
        else -math.inf
        for i in range(len(excerpts))
    ]
    offsets = [0.0] * len(excerpts)
    first = corrected([1.0] * len(excerpts), rms)
    # (Heard without the bus: its stems are the stems before it.)
    if held is None:
        mixer = mixer_for(excerpts, first)
        loud, before = heard(mixer, bused=False)
    else:
        mixer = mixer_for(held.parts, first)
        whole = stems_of(mixer, [(start, dry) for start, _, dry in held.blocks], bused=False)
        begins = [window_starts(part, held.stretches, sample_rate) for part in held.parts]
        window = round(held.stretches.seconds * sample_rate)
        cut = _laid([list(block) for block in zip(*whole, strict=True)], begins, window,
                    sample_rate)  # fmt: skip
        before = [[block[i] for _, block in cut] for i in range(len(excerpts))]
        loud = [loudness(chunks) for chunks in before]
        for i, (part_whole, part_cut) in enumerate(zip(whole, before, strict=True)):
            levels_db = gated_level(part_whole, sample_rate), gated_level(part_cut, sample_rate)
            if all(map(math.isfinite, levels_db)):
                offsets[i] = levels_db[0] - levels_db[1]
    gains = corrected(first, loud)
    # A part whose stem scales with its gain is heard again at a new gain as its stem from
    # the first pass, scaled (its strip, reverb and echo not run again: on a short hip-hop
    # piece, 4 of its 6 parts).
    scaling = [i for i in range(len(excerpts)) if mixer.scales_with_gain(i)]
    if not mixer.production.bus_distorts:
        # A compressed part's loudness moves less than its gain: one corrected by more than
        # REHEAR_DB is heard again at its new gain and corrected once more, the others taken
        # as their stems scaled (corporate's glockenspiel, clamped 4:1 and its top taken
        # down, had come out 0.9 LU under its level, the rest of the band over theirs).
        moved = [i for i in range(len(excerpts)) if i not in scaling
                 and abs(20 * math.log10(gains[i] / first[i])) > REHEAR_DB]  # fmt: skip
        if not moved:
            return gains
        known = {i: (before[i], gains[i] / first[i]) for i in range(len(excerpts))
                 if i not in moved}  # fmt: skip
        again = stems_of(mixer_for(excerpts, gains), measured, bused=False, known=known)
        for i in moved:
            heard_db = loudness(again[i])
            if not math.isfinite(heard_db):
                continue
            # Corrected along what its loudness did for its gain (a step the size of what is
            # left had left the glockenspiel 0.5 LU under, its compressor halving it).
            rose = (heard_db - loud[i]) / (20 * math.log10(gains[i] / first[i]))
            left = REFERENCE_LUFS + levels[i] - heard_db - offsets[i]
            gains[i] *= 10 ** (left / min(max(rose, REHEAR_SLOPE), 1.0) / 20)
        return gains
    # What the bus leaves of the balance, its overall level apart (the mix's level before the
    # bus is what its compressor and saturation were set for): each part's distance from its
    # level, less the median part's; twice, as a louder part loses more to it.
    for _ in range(BUS_PASSES):
        known = {i: (before[i], gains[i] / first[i]) for i in scaling}
        loud, _ = heard(mixer_for(excerpts, gains), bused=True, known=known)
        off = {
            i: REFERENCE_LUFS + level - heard_db - offset
            for i, (part, level, offset, heard_db) in enumerate(zip(excerpts, levels, offsets,
                                                                    loud, strict=True))
            if part.notes and math.isfinite(heard_db)
        }  # fmt: skip
        common = float(np.median(list(off.values()))) if off else 0.0
        gains = [gain * 10 ** ((off[i] - common) / 20) if i in off else gain
                 for i, gain in enumerate(gains)]  # fmt: skip
    return gains


# A part heard more than this much louder on one side, played centred, is left leaning: a
# preset built so (a side's sample missing) is the bank's sound, not an error to correct.
LEAN_LIMIT_DB = 12.0


def leans(measured: Blocks, count: int) -> list[float]:
    """How far each of `count` parts leans left as the synthesizer played it centred, from its
    stretches (`measured`): left over right in dB, within LEAN_LIMIT_DB. A General MIDI
    bank's presets lean by up to about 2 dB (MuseScore General's Synth Bass 1 and Pad 1 new
    age)."""
    return [
        lean_db(sum((np.square(block[i], dtype=np.float64).sum(axis=1) for _, block in measured),
                    np.zeros(2)), LEAN_LIMIT_DB)
        for i in range(count)
    ]  # fmt: skip


def levels(production: Production, roles: Roles, band: Sequence[str]) -> dict[str, float]:
    """Each instrument's level in the mix (LU from the melody): its loudest part's; the
    harmony (players of HARMONY_PARTS and nothing else) lowered together where it sums past
    the genre's harmony level, each keeping its place beside the others. (A part's second
    player keeps the part's level: it plays only where the music is busiest, and sharing the
    level with it had left the first player 3 dB low everywhere else, folk's fiddle under
    its own tune.)"""

    def summed(values: Iterable[float]) -> float:
        # Parts playing other notes add as powers.
        return 10 * math.log10(sum(10 ** (value / 10) for value in values))

    own = {
        instrument: max(production.level_of(part) for part in roles.parts_of(instrument))
        for instrument in band
    }
    harmony = [i for i in band if set(roles.parts_of(i)) <= set(HARMONY_PARTS)]
    if harmony:
        over = summed(own[i] for i in harmony) - production.harmony_level
        for instrument in harmony:
            own[instrument] -= max(over, 0.0)
    return own


def stem_levels(
    stems: dict[str, np.ndarray], sample_rate: int, roles: Roles, production: Production
) -> dict[str, tuple[float, float]]:
    """How a piece came out: each stem's loudness (BS.1770, gated) in LU from the melody's,
    beside the level its role asks for."""
    import pyloudnorm

    meter = pyloudnorm.Meter(sample_rate)
    loudness = {name: meter.integrated_loudness(stem.astype(np.float64))
                for name, stem in stems.items()}  # fmt: skip
    melody = max(loudness[name] for name in roles.of("melody") if name in loudness)
    asked = levels(production, roles, list(stems))
    return {name: (loudness[name] - melody, asked[name]) for name in stems}
