from services.gen.bgm.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GenerateRequest(_message.Message):
    __slots__ = ("brief", "stems", "candidates")
    BRIEF_FIELD_NUMBER: _ClassVar[int]
    STEMS_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    brief: _common_pb2.MusicBrief
    stems: bool
    candidates: int
    def __init__(self, brief: _Optional[_Union[_common_pb2.MusicBrief, _Mapping]] = ..., stems: _Optional[bool] = ..., candidates: _Optional[int] = ...) -> None: ...

class StemChunk(_message.Message):
    __slots__ = ("instrument", "audio")
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    instrument: str
    audio: _common_pb2.AudioChunk
    def __init__(self, instrument: _Optional[str] = ..., audio: _Optional[_Union[_common_pb2.AudioChunk, _Mapping]] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("candidate", "every_candidate", "progress", "plan", "audio", "stem", "midi", "ranking")
    CANDIDATE_FIELD_NUMBER: _ClassVar[int]
    EVERY_CANDIDATE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    STEM_FIELD_NUMBER: _ClassVar[int]
    MIDI_FIELD_NUMBER: _ClassVar[int]
    RANKING_FIELD_NUMBER: _ClassVar[int]
    candidate: int
    every_candidate: bool
    progress: _common_pb2.Progress
    plan: _common_pb2.MusicPlan
    audio: _common_pb2.AudioChunk
    stem: StemChunk
    midi: bytes
    ranking: CandidateRanking
    def __init__(self, candidate: _Optional[int] = ..., every_candidate: _Optional[bool] = ..., progress: _Optional[_Union[_common_pb2.Progress, _Mapping]] = ..., plan: _Optional[_Union[_common_pb2.MusicPlan, _Mapping]] = ..., audio: _Optional[_Union[_common_pb2.AudioChunk, _Mapping]] = ..., stem: _Optional[_Union[StemChunk, _Mapping]] = ..., midi: _Optional[bytes] = ..., ranking: _Optional[_Union[CandidateRanking, _Mapping]] = ...) -> None: ...

class CandidateRanking(_message.Message):
    __slots__ = ("scores",)
    SCORES_FIELD_NUMBER: _ClassVar[int]
    scores: _containers.RepeatedCompositeFieldContainer[_common_pb2.CandidateScore]
    def __init__(self, scores: _Optional[_Iterable[_Union[_common_pb2.CandidateScore, _Mapping]]] = ...) -> None: ...

class GeneratorDescribeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GeneratorDescribeResponse(_message.Message):
    __slots__ = ("name", "version", "max_duration_s", "sample_rates", "outputs", "genres", "instruments", "max_candidates", "structures", "sound", "sound_advice")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MAX_DURATION_S_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATES_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    GENRES_FIELD_NUMBER: _ClassVar[int]
    INSTRUMENTS_FIELD_NUMBER: _ClassVar[int]
    MAX_CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    STRUCTURES_FIELD_NUMBER: _ClassVar[int]
    SOUND_FIELD_NUMBER: _ClassVar[int]
    SOUND_ADVICE_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    max_duration_s: float
    sample_rates: _containers.RepeatedScalarFieldContainer[int]
    outputs: _containers.RepeatedScalarFieldContainer[str]
    genres: _containers.RepeatedScalarFieldContainer[str]
    instruments: _containers.RepeatedScalarFieldContainer[str]
    max_candidates: int
    structures: _containers.RepeatedScalarFieldContainer[str]
    sound: str
    sound_advice: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., max_duration_s: _Optional[float] = ..., sample_rates: _Optional[_Iterable[int]] = ..., outputs: _Optional[_Iterable[str]] = ..., genres: _Optional[_Iterable[str]] = ..., instruments: _Optional[_Iterable[str]] = ..., max_candidates: _Optional[int] = ..., structures: _Optional[_Iterable[str]] = ..., sound: _Optional[str] = ..., sound_advice: _Optional[str] = ...) -> None: ...
