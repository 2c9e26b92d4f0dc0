from services.gen.bgm.v1 import common_pb2 as _common_pb2
from services.gen.bgm.v1 import tagger_pb2 as _tagger_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OutputFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTPUT_FORMAT_UNSPECIFIED: _ClassVar[OutputFormat]
    OUTPUT_FORMAT_WAV: _ClassVar[OutputFormat]
    OUTPUT_FORMAT_FLAC: _ClassVar[OutputFormat]
    OUTPUT_FORMAT_MP3: _ClassVar[OutputFormat]
    OUTPUT_FORMAT_OGG: _ClassVar[OutputFormat]
    OUTPUT_FORMAT_MP4: _ClassVar[OutputFormat]
    OUTPUT_FORMAT_MOV: _ClassVar[OutputFormat]
    OUTPUT_FORMAT_MKV: _ClassVar[OutputFormat]
    OUTPUT_FORMAT_WEBM: _ClassVar[OutputFormat]

class FileKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FILE_KIND_UNSPECIFIED: _ClassVar[FileKind]
    FILE_KIND_MAIN: _ClassVar[FileKind]
    FILE_KIND_MIDI: _ClassVar[FileKind]
    FILE_KIND_STEM: _ClassVar[FileKind]
OUTPUT_FORMAT_UNSPECIFIED: OutputFormat
OUTPUT_FORMAT_WAV: OutputFormat
OUTPUT_FORMAT_FLAC: OutputFormat
OUTPUT_FORMAT_MP3: OutputFormat
OUTPUT_FORMAT_OGG: OutputFormat
OUTPUT_FORMAT_MP4: OutputFormat
OUTPUT_FORMAT_MOV: OutputFormat
OUTPUT_FORMAT_MKV: OutputFormat
OUTPUT_FORMAT_WEBM: OutputFormat
FILE_KIND_UNSPECIFIED: FileKind
FILE_KIND_MAIN: FileKind
FILE_KIND_MIDI: FileKind
FILE_KIND_STEM: FileKind

class GatewayDescribeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GatewayDescribeResponse(_message.Message):
    __slots__ = ("vocabulary", "generator", "generator_version", "sound", "sample_rates", "structures", "max_candidates", "max_duration_s", "max_music_s", "max_upload_bytes", "midi", "stems")
    VOCABULARY_FIELD_NUMBER: _ClassVar[int]
    GENERATOR_FIELD_NUMBER: _ClassVar[int]
    GENERATOR_VERSION_FIELD_NUMBER: _ClassVar[int]
    SOUND_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATES_FIELD_NUMBER: _ClassVar[int]
    STRUCTURES_FIELD_NUMBER: _ClassVar[int]
    MAX_CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    MAX_DURATION_S_FIELD_NUMBER: _ClassVar[int]
    MAX_MUSIC_S_FIELD_NUMBER: _ClassVar[int]
    MAX_UPLOAD_BYTES_FIELD_NUMBER: _ClassVar[int]
    MIDI_FIELD_NUMBER: _ClassVar[int]
    STEMS_FIELD_NUMBER: _ClassVar[int]
    vocabulary: _tagger_pb2.Vocabulary
    generator: str
    generator_version: str
    sound: str
    sample_rates: _containers.RepeatedScalarFieldContainer[int]
    structures: _containers.RepeatedScalarFieldContainer[str]
    max_candidates: int
    max_duration_s: float
    max_music_s: float
    max_upload_bytes: int
    midi: bool
    stems: bool
    def __init__(self, vocabulary: _Optional[_Union[_tagger_pb2.Vocabulary, _Mapping]] = ..., generator: _Optional[str] = ..., generator_version: _Optional[str] = ..., sound: _Optional[str] = ..., sample_rates: _Optional[_Iterable[int]] = ..., structures: _Optional[_Iterable[str]] = ..., max_candidates: _Optional[int] = ..., max_duration_s: _Optional[float] = ..., max_music_s: _Optional[float] = ..., max_upload_bytes: _Optional[int] = ..., midi: _Optional[bool] = ..., stems: _Optional[bool] = ...) -> None: ...

class GatewayAnalyzeRequest(_message.Message):
    __slots__ = ("video", "prompt")
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    video: _common_pb2.VideoSource
    prompt: str
    def __init__(self, video: _Optional[_Union[_common_pb2.VideoSource, _Mapping]] = ..., prompt: _Optional[str] = ...) -> None: ...

class GatewayAnalyzeResponse(_message.Message):
    __slots__ = ("analysis",)
    ANALYSIS_FIELD_NUMBER: _ClassVar[int]
    analysis: _common_pb2.VideoAnalysis
    def __init__(self, analysis: _Optional[_Union[_common_pb2.VideoAnalysis, _Mapping]] = ...) -> None: ...

class OutputOptions(_message.Message):
    __slots__ = ("format", "sample_rate", "loudness_lufs", "midi", "stems", "keep_original_audio", "output_uri")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    LOUDNESS_LUFS_FIELD_NUMBER: _ClassVar[int]
    MIDI_FIELD_NUMBER: _ClassVar[int]
    STEMS_FIELD_NUMBER: _ClassVar[int]
    KEEP_ORIGINAL_AUDIO_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_URI_FIELD_NUMBER: _ClassVar[int]
    format: OutputFormat
    sample_rate: int
    loudness_lufs: float
    midi: bool
    stems: bool
    keep_original_audio: bool
    output_uri: str
    def __init__(self, format: _Optional[_Union[OutputFormat, str]] = ..., sample_rate: _Optional[int] = ..., loudness_lufs: _Optional[float] = ..., midi: _Optional[bool] = ..., stems: _Optional[bool] = ..., keep_original_audio: _Optional[bool] = ..., output_uri: _Optional[str] = ...) -> None: ...

class ScoreRequest(_message.Message):
    __slots__ = ("video", "controls", "output")
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    CONTROLS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    video: _common_pb2.VideoSource
    controls: _common_pb2.UserControls
    output: OutputOptions
    def __init__(self, video: _Optional[_Union[_common_pb2.VideoSource, _Mapping]] = ..., controls: _Optional[_Union[_common_pb2.UserControls, _Mapping]] = ..., output: _Optional[_Union[OutputOptions, _Mapping]] = ...) -> None: ...

class UploadHeader(_message.Message):
    __slots__ = ("controls", "output", "file_name", "size_bytes")
    CONTROLS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    controls: _common_pb2.UserControls
    output: OutputOptions
    file_name: str
    size_bytes: int
    def __init__(self, controls: _Optional[_Union[_common_pb2.UserControls, _Mapping]] = ..., output: _Optional[_Union[OutputOptions, _Mapping]] = ..., file_name: _Optional[str] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class ScoreUploadRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: UploadHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[UploadHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class FileChunk(_message.Message):
    __slots__ = ("name", "kind", "offset", "data", "last", "size")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: FileKind
    offset: int
    data: bytes
    last: bool
    size: int
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[FileKind, str]] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ..., last: _Optional[bool] = ..., size: _Optional[int] = ...) -> None: ...

class LoudnessReport(_message.Message):
    __slots__ = ("integrated_lufs", "true_peak_dbtp", "target_lufs", "true_peak_limit_dbtp", "ducked")
    INTEGRATED_LUFS_FIELD_NUMBER: _ClassVar[int]
    TRUE_PEAK_DBTP_FIELD_NUMBER: _ClassVar[int]
    TARGET_LUFS_FIELD_NUMBER: _ClassVar[int]
    TRUE_PEAK_LIMIT_DBTP_FIELD_NUMBER: _ClassVar[int]
    DUCKED_FIELD_NUMBER: _ClassVar[int]
    integrated_lufs: float
    true_peak_dbtp: float
    target_lufs: float
    true_peak_limit_dbtp: float
    ducked: bool
    def __init__(self, integrated_lufs: _Optional[float] = ..., true_peak_dbtp: _Optional[float] = ..., target_lufs: _Optional[float] = ..., true_peak_limit_dbtp: _Optional[float] = ..., ducked: _Optional[bool] = ...) -> None: ...

class ScoreResult(_message.Message):
    __slots__ = ("tags", "plan", "loudness", "output_uris", "seconds", "ranking")
    TAGS_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    LOUDNESS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_URIS_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    RANKING_FIELD_NUMBER: _ClassVar[int]
    tags: _common_pb2.MusicTags
    plan: _common_pb2.MusicPlan
    loudness: LoudnessReport
    output_uris: _containers.RepeatedScalarFieldContainer[str]
    seconds: float
    ranking: _containers.RepeatedCompositeFieldContainer[_common_pb2.CandidateScore]
    def __init__(self, tags: _Optional[_Union[_common_pb2.MusicTags, _Mapping]] = ..., plan: _Optional[_Union[_common_pb2.MusicPlan, _Mapping]] = ..., loudness: _Optional[_Union[LoudnessReport, _Mapping]] = ..., output_uris: _Optional[_Iterable[str]] = ..., seconds: _Optional[float] = ..., ranking: _Optional[_Iterable[_Union[_common_pb2.CandidateScore, _Mapping]]] = ...) -> None: ...

class ScoreEvent(_message.Message):
    __slots__ = ("analysis", "progress", "file", "result")
    ANALYSIS_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    analysis: _common_pb2.VideoAnalysis
    progress: _common_pb2.Progress
    file: FileChunk
    result: ScoreResult
    def __init__(self, analysis: _Optional[_Union[_common_pb2.VideoAnalysis, _Mapping]] = ..., progress: _Optional[_Union[_common_pb2.Progress, _Mapping]] = ..., file: _Optional[_Union[FileChunk, _Mapping]] = ..., result: _Optional[_Union[ScoreResult, _Mapping]] = ...) -> None: ...

class ScoreResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: ScoreEvent
    def __init__(self, event: _Optional[_Union[ScoreEvent, _Mapping]] = ...) -> None: ...

class ScoreUploadResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: ScoreEvent
    def __init__(self, event: _Optional[_Union[ScoreEvent, _Mapping]] = ...) -> None: ...
