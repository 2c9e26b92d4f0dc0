"""Plain domain types that cross service boundaries (tagger -> gateway -> generator).

These are what backends take and return; servicers convert them to and from protobuf at the
edges. Times are seconds from the start of the video, levels are 0..1.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

TagSource = Literal["picture", "prompt", "both", "user", "vlm"]


@dataclass(frozen=True)
class Look:
    """How the picture looks, each value 0..1."""

    brightness: float
    saturation: float
    # 0.5 is neutral; above leans red/yellow, below leans blue.
    warmth: float
    contrast: float


@dataclass(frozen=True)
class Cut:
    """A shot boundary."""

    time_s: float
    # "hard" (an instant change) or "fade" (through black or a dissolve).
    kind: Literal["hard", "fade"]
    # How different the shots either side are, 0..1: the composer puts the strongest on bars.
    strength: float


@dataclass(frozen=True)
class MotionCurve:
    """Motion/energy sampled at a fixed rate: values[i] describes time i / hz."""

    hz: float
    values: list[float]


@dataclass(frozen=True)
class SpeechInterval:
    """A stretch of the original sound where someone speaks."""

    start_s: float
    end_s: float


@dataclass(frozen=True)
class LevelCurve:
    """The original sound's short-term level: values[i] (dBFS, RMS of the mono mix) describes
    the `1 / hz` seconds from time i / hz."""

    hz: float
    values: list[float]


@dataclass(frozen=True)
class Segment:
    """A stretch of video between two cuts (very short shots merged into neighbours)."""

    start_s: float
    end_s: float
    # Mean motion energy over the segment, 0..1.
    energy: float
    look: Look
    moods: list[str]
    # A small JPEG from the middle of the segment, for pictures and VLM prompts.
    thumbnail_jpeg: bytes = field(default=b"", repr=False)
    # What happens in it, in a vision-language model's words ("" without one).
    caption: str = ""


@dataclass(frozen=True)
class TagOrigin:
    """Where one chosen tag came from, and how strongly it was indicated."""

    kind: Literal["genre", "mood", "instrument"]
    tag: str
    source: TagSource
    score: float


@dataclass(frozen=True)
class MusicTags:
    """The music that fits, in the fixed vocabulary."""

    genres: list[str]
    moods: list[str]
    instruments: list[str]
    # Beats per minute: the preferred tempo and the range the music may use.
    bpm: float
    bpm_min: float
    bpm_max: float
    # A key hint such as "D minor".
    key: str
    energy: float
    origins: list[TagOrigin] = field(default_factory=list)


@dataclass(frozen=True)
class Semantics:
    """Where the analysis's genres, moods and instruments came from."""

    # "picture" (the vocabulary's rules on the picture) or "vlm" (a vision-language model).
    source: str = "picture"
    # The model asked, if any ("" for the picture alone).
    model: str = ""
    # Why a model's answer was not used, the tags then being the picture's; "" otherwise.
    fallback_reason: str = ""
    # The model's description of the scene.
    scene: str = ""
    # The model's words that match no vocabulary tag (kept here and in the description).
    unmapped: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class VideoAnalysis:
    """Everything the tagger knows about a video."""

    duration_s: float
    fps: float
    width: int
    height: int
    rotation: int
    has_audio: bool
    cuts: list[Cut]
    motion: MotionCurve
    look: Look
    segments: list[Segment]
    tags: MusicTags
    description: str
    backend: str
    # Problems that did not stop the analysis (for example a truncated file).
    warnings: list[str] = field(default_factory=list)
    semantics: Semantics = field(default_factory=Semantics)
    # What the original sound holds (empty without an audio track).
    speech: list[SpeechInterval] = field(default_factory=list)
    loudness: LevelCurve = field(default_factory=lambda: LevelCurve(0.0, []))

    @property
    def cuts_s(self) -> list[float]:
        return [cut.time_s for cut in self.cuts]

    def cut_to(self, duration_s: float) -> VideoAnalysis:
        """The analysis of the video's first `duration_s` seconds: its timeline and speech
        ending there (the curves, read by time, are kept)."""
        segments, cuts = timeline_of_length(self.segments, self.cuts, duration_s)
        speech = [replace(s, end_s=min(s.end_s, duration_s))
                  for s in self.speech if s.start_s < duration_s]  # fmt: skip
        return replace(self, duration_s=duration_s, segments=segments, cuts=cuts, speech=speech)

    def to_json_dict(self) -> dict[str, Any]:
        """The analysis as JSON-ready data (thumbnails left out)."""
        data = asdict(self)
        data["cuts_s"] = self.cuts_s
        for segment in data["segments"]:
            segment.pop("thumbnail_jpeg")
        return data


def timeline_of_length(
    segments: list[Segment], cuts: list[Cut], duration_s: float
) -> tuple[list[Segment], list[Cut]]:
    """A timeline cut to `duration_s`, or its last segment held to it: the segments that start
    before it, the last ending there, and the cuts inside it."""
    kept = [s for s in segments if s.start_s < duration_s]
    if kept:
        kept[-1] = replace(kept[-1], end_s=duration_s)
    return kept, [c for c in cuts if 0 < c.time_s < duration_s]


@dataclass(frozen=True)
class UserControls:
    """What a user asks for on top of (and over) the tagger's tags."""

    genres: list[str] = field(default_factory=list)
    moods: list[str] = field(default_factory=list)
    instruments: list[str] = field(default_factory=list)
    # Beats per minute, honoured exactly when given (30..300).
    bpm: float | None = None
    # "<tonic> <mode>", e.g. "D minor".
    key: str | None = None
    # Tags (any kind) that must not appear.
    negative: list[str] = field(default_factory=list)
    prompt: str = ""
    seed: int = 0
    # "free" (the generator alone), "composer" (a diffusion generator renders over the
    # composer's cut-aligned piece) or "reference" (over `reference_audio`).
    structure: str = "free"
    # An audio file (WAV, FLAC, MP3, Ogg) whose melody and timing the music follows when
    # `structure` is "reference".
    reference_audio: bytes = field(default=b"", repr=False)
    # How many pieces to generate and rank; the best-ranked one is delivered.
    candidates: int = 1
    # How the music makes room for speech: "auto", "duck", "arrange" or "off"
    # (services/rules.py SPEECH_MODES).
    speech: str = "auto"


@dataclass(frozen=True)
class MusicBrief:
    """Everything a generator needs: the merged tags, the video's timeline, the length."""

    tags: MusicTags
    segments: list[Segment]
    cuts: list[Cut]
    duration_s: float
    sample_rate: int = 48000
    seed: int = 0
    # True when the BPM came from the user: the tempo is then exact and constant.
    bpm_is_fixed: bool = False
    # True when the key came from the user: its mode holds throughout the piece.
    key_is_fixed: bool = False
    # Tags that must not be played (already removed from `tags`; backends may use them to
    # avoid defaults, e.g. no drums at all when "drums" is negative).
    negative: list[str] = field(default_factory=list)
    # Whether to return one audio track per instrument as well as the mix.
    stems: bool = False
    # "free", "composer" or "reference" (see UserControls.structure).
    structure: str = "free"
    # The encoded audio file for structure "reference".
    reference_audio: bytes = field(default=b"", repr=False)
    # The user's free text; text-conditioned backends add it to their prompt.
    prompt: str = ""
    # Where someone speaks, when the music should make room for it (the arrangement thins).
    speech: list[SpeechInterval] = field(default_factory=list)


@dataclass(frozen=True)
class PlannedSection:
    """A stretch of music between two segment boundaries."""

    start_s: float
    end_s: float
    # "intro", "main" or "ending"; the intro and ending may share a section in short pieces.
    role: str
    bpm: float
    first_beat: int
    beat_count: int
    energy: float
    # 0 (sparse) .. 3 (full): how many parts play and how busy the drums are.
    intensity: int
    instruments: list[str]
    # Roman-numeral chord per bar in the section's key, e.g. ["I", "V", "vi", "IV"].
    chords: list[str]
    # The section's key ("" where the backend plans no harmony): the plan's, or another after a
    # key change.
    key: str = ""
    # "A" (the opening's material) or "B" (contrast); "" where the backend plans no themes.
    material: str = ""
    # What was thinned here to make room for speech, and when ("" = nothing).
    thinning: str = ""


@dataclass(frozen=True)
class CutAlignment:
    """How well the video's cuts landed on the music's beats and bars: a cut within
    rules.ON_BEAT_S (25 ms) of one is on it."""

    cut_count: int
    on_beat_count: int
    on_bar_count: int
    median_ms: float
    worst_ms: float


@dataclass(frozen=True)
class MusicPlan:
    """The timing and form a generator followed, for callers and tests to check."""

    bpm: float
    key: str
    beats_s: list[float]
    # Bar lines (downbeats), every bar `meter` long.
    bars_s: list[float]
    sections: list[PlannedSection]
    alignment: CutAlignment
    # "cadence" (a final tonic chord whose tail ends inside the piece) or "fade".
    ending: str
    final_chord_s: float
    genre: str
    instruments: list[str]
    # The time signature of every bar: "4/4", "3/4" or "6/8" (beats_s are its beats).
    meter: str = "4/4"


@dataclass(frozen=True)
class GeneratedMusic:
    """A generator's output: stereo audio (float32, samples x 2), MIDI, stems and the plan."""

    audio: Any
    sample_rate: int
    # Instrument name -> stereo float32 audio of the same length as `audio` (when asked for).
    stems: dict[str, Any]
    midi: bytes
    plan: MusicPlan


@dataclass(frozen=True)
class CandidateScore:
    """How well one generated candidate fits its video; each measure 0..1, higher is better.

    `tempo_fit`: the music's pulse at the brief's tempo. `cut_accent`: onsets on the cuts
    compared with onsets anywhere (None without cuts). `energy_follow`: loudness rising and
    falling with the segments' energy (None when the segments' energy hardly changes)."""

    candidate: int
    # 1 = best.
    rank: int
    score: float
    tempo_fit: float
    cut_accent: float | None
    energy_follow: float | None


@dataclass(frozen=True)
class GeneratorInfo:
    """What a generator backend offers (Generator.Describe)."""

    name: str
    version: str
    max_duration_s: float
    sample_rates: tuple[int, ...]
    # Which of "audio", "midi", "stems", "plan" the backend produces.
    outputs: tuple[str, ...]
    genres: tuple[str, ...]
    instruments: tuple[str, ...]
    # The brief structures it honours, of "free", "composer", "reference".
    structures: tuple[str, ...] = ("free",)
    # Whether generate_batch shares model calls between jobs (worth pooling requests for).
    batches: bool = False
    # Candidates one request may ask of it; None where it does not say (a backend in this
    # process: the request rules' limit holds).
    max_candidates: int | None = None
    # What it renders with, and how to get better sound ("" when nothing is missing).
    sound: str = ""
    sound_advice: str = ""


@dataclass(frozen=True)
class OutputOptions:
    output: Path
    midi: Path | None = None
    stems_dir: Path | None = None
    # 0: the generator's default (`delivery.with_default_rate`).
    sample_rate: int = 0
    # Integrated loudness target; the true peak is kept at or under -1 dBTP.
    lufs: float = -14.0
    keep_original_audio: bool = False
    # Make the outputs' folder when missing (a gateway's output_uri); the command line wants
    # it to exist. A folder made for a request that fails is removed.
    make_folder: bool = False
    # Replace a file already at an output's name. The command line without --force does not:
    # one written there meanwhile (another command's) is kept and this request fails.
    replace_existing: bool = True
    # Folders the outputs must stay in (a tenant's output roots; none: anywhere), checked
    # again as each is written and renamed into place: a tenant's folder swapped for a link
    # to another's while the music was made had had its outputs written there.
    within: tuple[Path, ...] = ()
