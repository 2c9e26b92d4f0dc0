from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CutKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CUT_KIND_UNSPECIFIED: _ClassVar[CutKind]
    CUT_KIND_HARD: _ClassVar[CutKind]
    CUT_KIND_FADE: _ClassVar[CutKind]

class TagKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TAG_KIND_UNSPECIFIED: _ClassVar[TagKind]
    TAG_KIND_GENRE: _ClassVar[TagKind]
    TAG_KIND_MOOD: _ClassVar[TagKind]
    TAG_KIND_INSTRUMENT: _ClassVar[TagKind]

class TagSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TAG_SOURCE_UNSPECIFIED: _ClassVar[TagSource]
    TAG_SOURCE_PICTURE: _ClassVar[TagSource]
    TAG_SOURCE_PROMPT: _ClassVar[TagSource]
    TAG_SOURCE_BOTH: _ClassVar[TagSource]
    TAG_SOURCE_USER: _ClassVar[TagSource]
    TAG_SOURCE_VLM: _ClassVar[TagSource]
CUT_KIND_UNSPECIFIED: CutKind
CUT_KIND_HARD: CutKind
CUT_KIND_FADE: CutKind
TAG_KIND_UNSPECIFIED: TagKind
TAG_KIND_GENRE: TagKind
TAG_KIND_MOOD: TagKind
TAG_KIND_INSTRUMENT: TagKind
TAG_SOURCE_UNSPECIFIED: TagSource
TAG_SOURCE_PICTURE: TagSource
TAG_SOURCE_PROMPT: TagSource
TAG_SOURCE_BOTH: TagSource
TAG_SOURCE_USER: TagSource
TAG_SOURCE_VLM: TagSource

class VideoSource(_message.Message):
    __slots__ = ("uri", "data", "file_name")
    URI_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    uri: str
    data: bytes
    file_name: str
    def __init__(self, uri: _Optional[str] = ..., data: _Optional[bytes] = ..., file_name: _Optional[str] = ...) -> None: ...

class Look(_message.Message):
    __slots__ = ("brightness", "saturation", "warmth", "contrast")
    BRIGHTNESS_FIELD_NUMBER: _ClassVar[int]
    SATURATION_FIELD_NUMBER: _ClassVar[int]
    WARMTH_FIELD_NUMBER: _ClassVar[int]
    CONTRAST_FIELD_NUMBER: _ClassVar[int]
    brightness: float
    saturation: float
    warmth: float
    contrast: float
    def __init__(self, brightness: _Optional[float] = ..., saturation: _Optional[float] = ..., warmth: _Optional[float] = ..., contrast: _Optional[float] = ...) -> None: ...

class Cut(_message.Message):
    __slots__ = ("time_s", "kind", "strength")
    TIME_S_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STRENGTH_FIELD_NUMBER: _ClassVar[int]
    time_s: float
    kind: CutKind
    strength: float
    def __init__(self, time_s: _Optional[float] = ..., kind: _Optional[_Union[CutKind, str]] = ..., strength: _Optional[float] = ...) -> None: ...

class MotionCurve(_message.Message):
    __slots__ = ("hz", "values")
    HZ_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    hz: float
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, hz: _Optional[float] = ..., values: _Optional[_Iterable[float]] = ...) -> None: ...

class Segment(_message.Message):
    __slots__ = ("start_s", "end_s", "energy", "look", "moods", "thumbnail_jpeg", "caption")
    START_S_FIELD_NUMBER: _ClassVar[int]
    END_S_FIELD_NUMBER: _ClassVar[int]
    ENERGY_FIELD_NUMBER: _ClassVar[int]
    LOOK_FIELD_NUMBER: _ClassVar[int]
    MOODS_FIELD_NUMBER: _ClassVar[int]
    THUMBNAIL_JPEG_FIELD_NUMBER: _ClassVar[int]
    CAPTION_FIELD_NUMBER: _ClassVar[int]
    start_s: float
    end_s: float
    energy: float
    look: Look
    moods: _containers.RepeatedScalarFieldContainer[str]
    thumbnail_jpeg: bytes
    caption: str
    def __init__(self, start_s: _Optional[float] = ..., end_s: _Optional[float] = ..., energy: _Optional[float] = ..., look: _Optional[_Union[Look, _Mapping]] = ..., moods: _Optional[_Iterable[str]] = ..., thumbnail_jpeg: _Optional[bytes] = ..., caption: _Optional[str] = ...) -> None: ...

class TagOrigin(_message.Message):
    __slots__ = ("kind", "tag", "source", "score")
    KIND_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    kind: TagKind
    tag: str
    source: TagSource
    score: float
    def __init__(self, kind: _Optional[_Union[TagKind, str]] = ..., tag: _Optional[str] = ..., source: _Optional[_Union[TagSource, str]] = ..., score: _Optional[float] = ...) -> None: ...

class MusicTags(_message.Message):
    __slots__ = ("genres", "moods", "instruments", "bpm", "bpm_min", "bpm_max", "key", "energy", "origins")
    GENRES_FIELD_NUMBER: _ClassVar[int]
    MOODS_FIELD_NUMBER: _ClassVar[int]
    INSTRUMENTS_FIELD_NUMBER: _ClassVar[int]
    BPM_FIELD_NUMBER: _ClassVar[int]
    BPM_MIN_FIELD_NUMBER: _ClassVar[int]
    BPM_MAX_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    ENERGY_FIELD_NUMBER: _ClassVar[int]
    ORIGINS_FIELD_NUMBER: _ClassVar[int]
    genres: _containers.RepeatedScalarFieldContainer[str]
    moods: _containers.RepeatedScalarFieldContainer[str]
    instruments: _containers.RepeatedScalarFieldContainer[str]
    bpm: float
    bpm_min: float
    bpm_max: float
    key: str
    energy: float
    origins: _containers.RepeatedCompositeFieldContainer[TagOrigin]
    def __init__(self, genres: _Optional[_Iterable[str]] = ..., moods: _Optional[_Iterable[str]] = ..., instruments: _Optional[_Iterable[str]] = ..., bpm: _Optional[float] = ..., bpm_min: _Optional[float] = ..., bpm_max: _Optional[float] = ..., key: _Optional[str] = ..., energy: _Optional[float] = ..., origins: _Optional[_Iterable[_Union[TagOrigin, _Mapping]]] = ...) -> None: ...

class VideoAnalysis(_message.Message):
    __slots__ = ("duration_s", "fps", "width", "height", "rotation", "has_audio", "cuts", "motion", "look", "segments", "tags", "description", "backend", "warnings", "semantics", "speech", "loudness")
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    ROTATION_FIELD_NUMBER: _ClassVar[int]
    HAS_AUDIO_FIELD_NUMBER: _ClassVar[int]
    CUTS_FIELD_NUMBER: _ClassVar[int]
    MOTION_FIELD_NUMBER: _ClassVar[int]
    LOOK_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    SEMANTICS_FIELD_NUMBER: _ClassVar[int]
    SPEECH_FIELD_NUMBER: _ClassVar[int]
    LOUDNESS_FIELD_NUMBER: _ClassVar[int]
    duration_s: float
    fps: float
    width: int
    height: int
    rotation: int
    has_audio: bool
    cuts: _containers.RepeatedCompositeFieldContainer[Cut]
    motion: MotionCurve
    look: Look
    segments: _containers.RepeatedCompositeFieldContainer[Segment]
    tags: MusicTags
    description: str
    backend: str
    warnings: _containers.RepeatedScalarFieldContainer[str]
    semantics: Semantics
    speech: _containers.RepeatedCompositeFieldContainer[SpeechInterval]
    loudness: LevelCurve
    def __init__(self, duration_s: _Optional[float] = ..., fps: _Optional[float] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., rotation: _Optional[int] = ..., has_audio: _Optional[bool] = ..., cuts: _Optional[_Iterable[_Union[Cut, _Mapping]]] = ..., motion: _Optional[_Union[MotionCurve, _Mapping]] = ..., look: _Optional[_Union[Look, _Mapping]] = ..., segments: _Optional[_Iterable[_Union[Segment, _Mapping]]] = ..., tags: _Optional[_Union[MusicTags, _Mapping]] = ..., description: _Optional[str] = ..., backend: _Optional[str] = ..., warnings: _Optional[_Iterable[str]] = ..., semantics: _Optional[_Union[Semantics, _Mapping]] = ..., speech: _Optional[_Iterable[_Union[SpeechInterval, _Mapping]]] = ..., loudness: _Optional[_Union[LevelCurve, _Mapping]] = ...) -> None: ...

class SpeechInterval(_message.Message):
    __slots__ = ("start_s", "end_s")
    START_S_FIELD_NUMBER: _ClassVar[int]
    END_S_FIELD_NUMBER: _ClassVar[int]
    start_s: float
    end_s: float
    def __init__(self, start_s: _Optional[float] = ..., end_s: _Optional[float] = ...) -> None: ...

class LevelCurve(_message.Message):
    __slots__ = ("hz", "values")
    HZ_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    hz: float
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, hz: _Optional[float] = ..., values: _Optional[_Iterable[float]] = ...) -> None: ...

class Semantics(_message.Message):
    __slots__ = ("source", "model", "fallback_reason", "scene", "unmapped")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_REASON_FIELD_NUMBER: _ClassVar[int]
    SCENE_FIELD_NUMBER: _ClassVar[int]
    UNMAPPED_FIELD_NUMBER: _ClassVar[int]
    source: str
    model: str
    fallback_reason: str
    scene: str
    unmapped: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, source: _Optional[str] = ..., model: _Optional[str] = ..., fallback_reason: _Optional[str] = ..., scene: _Optional[str] = ..., unmapped: _Optional[_Iterable[str]] = ...) -> None: ...

class UserControls(_message.Message):
    __slots__ = ("genres", "moods", "instruments", "bpm", "key", "negative", "prompt", "seed", "structure", "reference_audio", "candidates", "speech")
    GENRES_FIELD_NUMBER: _ClassVar[int]
    MOODS_FIELD_NUMBER: _ClassVar[int]
    INSTRUMENTS_FIELD_NUMBER: _ClassVar[int]
    BPM_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    STRUCTURE_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_AUDIO_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    SPEECH_FIELD_NUMBER: _ClassVar[int]
    genres: _containers.RepeatedScalarFieldContainer[str]
    moods: _containers.RepeatedScalarFieldContainer[str]
    instruments: _containers.RepeatedScalarFieldContainer[str]
    bpm: float
    key: str
    negative: _containers.RepeatedScalarFieldContainer[str]
    prompt: str
    seed: int
    structure: str
    reference_audio: bytes
    candidates: int
    speech: str
    def __init__(self, genres: _Optional[_Iterable[str]] = ..., moods: _Optional[_Iterable[str]] = ..., instruments: _Optional[_Iterable[str]] = ..., bpm: _Optional[float] = ..., key: _Optional[str] = ..., negative: _Optional[_Iterable[str]] = ..., prompt: _Optional[str] = ..., seed: _Optional[int] = ..., structure: _Optional[str] = ..., reference_audio: _Optional[bytes] = ..., candidates: _Optional[int] = ..., speech: _Optional[str] = ...) -> None: ...

class MusicBrief(_message.Message):
    __slots__ = ("tags", "segments", "cuts", "duration_s", "sample_rate", "seed", "bpm_is_fixed", "negative", "structure", "reference_audio", "prompt", "key_is_fixed", "speech")
    TAGS_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    CUTS_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    BPM_IS_FIXED_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_FIELD_NUMBER: _ClassVar[int]
    STRUCTURE_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_AUDIO_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    KEY_IS_FIXED_FIELD_NUMBER: _ClassVar[int]
    SPEECH_FIELD_NUMBER: _ClassVar[int]
    tags: MusicTags
    segments: _containers.RepeatedCompositeFieldContainer[Segment]
    cuts: _containers.RepeatedCompositeFieldContainer[Cut]
    duration_s: float
    sample_rate: int
    seed: int
    bpm_is_fixed: bool
    negative: _containers.RepeatedScalarFieldContainer[str]
    structure: str
    reference_audio: bytes
    prompt: str
    key_is_fixed: bool
    speech: _containers.RepeatedCompositeFieldContainer[SpeechInterval]
    def __init__(self, tags: _Optional[_Union[MusicTags, _Mapping]] = ..., segments: _Optional[_Iterable[_Union[Segment, _Mapping]]] = ..., cuts: _Optional[_Iterable[_Union[Cut, _Mapping]]] = ..., duration_s: _Optional[float] = ..., sample_rate: _Optional[int] = ..., seed: _Optional[int] = ..., bpm_is_fixed: _Optional[bool] = ..., negative: _Optional[_Iterable[str]] = ..., structure: _Optional[str] = ..., reference_audio: _Optional[bytes] = ..., prompt: _Optional[str] = ..., key_is_fixed: _Optional[bool] = ..., speech: _Optional[_Iterable[_Union[SpeechInterval, _Mapping]]] = ...) -> None: ...

class CandidateScore(_message.Message):
    __slots__ = ("candidate", "rank", "score", "tempo_fit", "cut_accent", "energy_follow")
    CANDIDATE_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TEMPO_FIT_FIELD_NUMBER: _ClassVar[int]
    CUT_ACCENT_FIELD_NUMBER: _ClassVar[int]
    ENERGY_FOLLOW_FIELD_NUMBER: _ClassVar[int]
    candidate: int
    rank: int
    score: float
    tempo_fit: float
    cut_accent: float
    energy_follow: float
    def __init__(self, candidate: _Optional[int] = ..., rank: _Optional[int] = ..., score: _Optional[float] = ..., tempo_fit: _Optional[float] = ..., cut_accent: _Optional[float] = ..., energy_follow: _Optional[float] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("stage", "fraction")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    stage: str
    fraction: float
    def __init__(self, stage: _Optional[str] = ..., fraction: _Optional[float] = ...) -> None: ...

class AudioChunk(_message.Message):
    __slots__ = ("sample_rate", "channels", "pcm_f32le", "first_sample", "total_samples")
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    PCM_F32LE_FIELD_NUMBER: _ClassVar[int]
    FIRST_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    sample_rate: int
    channels: int
    pcm_f32le: bytes
    first_sample: int
    total_samples: int
    def __init__(self, sample_rate: _Optional[int] = ..., channels: _Optional[int] = ..., pcm_f32le: _Optional[bytes] = ..., first_sample: _Optional[int] = ..., total_samples: _Optional[int] = ...) -> None: ...

class PlannedSection(_message.Message):
    __slots__ = ("start_s", "end_s", "role", "bpm", "first_beat", "beat_count", "energy", "intensity", "instruments", "chords", "key", "material", "thinning")
    START_S_FIELD_NUMBER: _ClassVar[int]
    END_S_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    BPM_FIELD_NUMBER: _ClassVar[int]
    FIRST_BEAT_FIELD_NUMBER: _ClassVar[int]
    BEAT_COUNT_FIELD_NUMBER: _ClassVar[int]
    ENERGY_FIELD_NUMBER: _ClassVar[int]
    INTENSITY_FIELD_NUMBER: _ClassVar[int]
    INSTRUMENTS_FIELD_NUMBER: _ClassVar[int]
    CHORDS_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    MATERIAL_FIELD_NUMBER: _ClassVar[int]
    THINNING_FIELD_NUMBER: _ClassVar[int]
    start_s: float
    end_s: float
    role: str
    bpm: float
    first_beat: int
    beat_count: int
    energy: float
    intensity: int
    instruments: _containers.RepeatedScalarFieldContainer[str]
    chords: _containers.RepeatedScalarFieldContainer[str]
    key: str
    material: str
    thinning: str
    def __init__(self, start_s: _Optional[float] = ..., end_s: _Optional[float] = ..., role: _Optional[str] = ..., bpm: _Optional[float] = ..., first_beat: _Optional[int] = ..., beat_count: _Optional[int] = ..., energy: _Optional[float] = ..., intensity: _Optional[int] = ..., instruments: _Optional[_Iterable[str]] = ..., chords: _Optional[_Iterable[str]] = ..., key: _Optional[str] = ..., material: _Optional[str] = ..., thinning: _Optional[str] = ...) -> None: ...

class CutAlignment(_message.Message):
    __slots__ = ("cut_count", "on_beat_count", "on_bar_count", "median_ms", "worst_ms")
    CUT_COUNT_FIELD_NUMBER: _ClassVar[int]
    ON_BEAT_COUNT_FIELD_NUMBER: _ClassVar[int]
    ON_BAR_COUNT_FIELD_NUMBER: _ClassVar[int]
    MEDIAN_MS_FIELD_NUMBER: _ClassVar[int]
    WORST_MS_FIELD_NUMBER: _ClassVar[int]
    cut_count: int
    on_beat_count: int
    on_bar_count: int
    median_ms: float
    worst_ms: float
    def __init__(self, cut_count: _Optional[int] = ..., on_beat_count: _Optional[int] = ..., on_bar_count: _Optional[int] = ..., median_ms: _Optional[float] = ..., worst_ms: _Optional[float] = ...) -> None: ...

class MusicPlan(_message.Message):
    __slots__ = ("bpm", "key", "beats_s", "bars_s", "sections", "alignment", "ending", "final_chord_s", "genre", "instruments", "meter")
    BPM_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    BEATS_S_FIELD_NUMBER: _ClassVar[int]
    BARS_S_FIELD_NUMBER: _ClassVar[int]
    SECTIONS_FIELD_NUMBER: _ClassVar[int]
    ALIGNMENT_FIELD_NUMBER: _ClassVar[int]
    ENDING_FIELD_NUMBER: _ClassVar[int]
    FINAL_CHORD_S_FIELD_NUMBER: _ClassVar[int]
    GENRE_FIELD_NUMBER: _ClassVar[int]
    INSTRUMENTS_FIELD_NUMBER: _ClassVar[int]
    METER_FIELD_NUMBER: _ClassVar[int]
    bpm: float
    key: str
    beats_s: _containers.RepeatedScalarFieldContainer[float]
    bars_s: _containers.RepeatedScalarFieldContainer[float]
    sections: _containers.RepeatedCompositeFieldContainer[PlannedSection]
    alignment: CutAlignment
    ending: str
    final_chord_s: float
    genre: str
    instruments: _containers.RepeatedScalarFieldContainer[str]
    meter: str
    def __init__(self, bpm: _Optional[float] = ..., key: _Optional[str] = ..., beats_s: _Optional[_Iterable[float]] = ..., bars_s: _Optional[_Iterable[float]] = ..., sections: _Optional[_Iterable[_Union[PlannedSection, _Mapping]]] = ..., alignment: _Optional[_Union[CutAlignment, _Mapping]] = ..., ending: _Optional[str] = ..., final_chord_s: _Optional[float] = ..., genre: _Optional[str] = ..., instruments: _Optional[_Iterable[str]] = ..., meter: _Optional[str] = ...) -> None: ...
