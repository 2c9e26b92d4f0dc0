from services.gen.bgm.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AnalyzeRequest(_message.Message):
    __slots__ = ("video", "prompt", "skip_speech")
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    SKIP_SPEECH_FIELD_NUMBER: _ClassVar[int]
    video: _common_pb2.VideoSource
    prompt: str
    skip_speech: bool
    def __init__(self, video: _Optional[_Union[_common_pb2.VideoSource, _Mapping]] = ..., prompt: _Optional[str] = ..., skip_speech: _Optional[bool] = ...) -> None: ...

class AnalyzeResponse(_message.Message):
    __slots__ = ("analysis",)
    ANALYSIS_FIELD_NUMBER: _ClassVar[int]
    analysis: _common_pb2.VideoAnalysis
    def __init__(self, analysis: _Optional[_Union[_common_pb2.VideoAnalysis, _Mapping]] = ...) -> None: ...

class TaggerDescribeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Vocabulary(_message.Message):
    __slots__ = ("genres", "moods", "instruments", "tonics", "modes")
    GENRES_FIELD_NUMBER: _ClassVar[int]
    MOODS_FIELD_NUMBER: _ClassVar[int]
    INSTRUMENTS_FIELD_NUMBER: _ClassVar[int]
    TONICS_FIELD_NUMBER: _ClassVar[int]
    MODES_FIELD_NUMBER: _ClassVar[int]
    genres: _containers.RepeatedScalarFieldContainer[str]
    moods: _containers.RepeatedScalarFieldContainer[str]
    instruments: _containers.RepeatedScalarFieldContainer[str]
    tonics: _containers.RepeatedScalarFieldContainer[str]
    modes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, genres: _Optional[_Iterable[str]] = ..., moods: _Optional[_Iterable[str]] = ..., instruments: _Optional[_Iterable[str]] = ..., tonics: _Optional[_Iterable[str]] = ..., modes: _Optional[_Iterable[str]] = ...) -> None: ...

class TaggerDescribeResponse(_message.Message):
    __slots__ = ("name", "version", "vocabulary", "max_duration_s")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VOCABULARY_FIELD_NUMBER: _ClassVar[int]
    MAX_DURATION_S_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    vocabulary: Vocabulary
    max_duration_s: float
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., vocabulary: _Optional[_Union[Vocabulary, _Mapping]] = ..., max_duration_s: _Optional[float] = ...) -> None: ...
