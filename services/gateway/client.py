"""A gRPC client of the Gateway: what `bgm client score` runs."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import grpc

from services.config import ClientTlsConfig
from services.contract import OUTPUT_FORMATS, controls_to_proto
from services.domain import OutputOptions, UserControls
from services.errors import DownstreamError
from services.gateway.outputs import Staging, staged_outputs
from services.gen.bgm.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from services.media.audio import output_kind
from services.serving import channel_options
from services.tls import channel_credentials, channel_tls_options

UPLOAD_CHUNK_BYTES = 1024 * 1024
# Files up to this size travel inline in Gateway.Score, which every server carries (Ray
# Serve's gRPC proxy included: it has no client streaming); larger ones use ScoreUpload.
INLINE_UPLOAD_BYTES = 32 * 1024 * 1024
# Ray Serve's gRPC proxy picks the application by this metadata; standalone servers ignore it.
APPLICATION_METADATA = ("application", "gateway")


@dataclass
class ClientResult:
    analysis: object | None = None
    result: gateway_pb2.ScoreResult | None = None
    written: list[Path] = field(default_factory=list)


def output_options_message(options: OutputOptions) -> gateway_pb2.OutputOptions:
    output_kind(options.output)  # refuses an extension it cannot write, before any call
    return gateway_pb2.OutputOptions(
        format=OUTPUT_FORMATS[options.output.suffix.lower()],
        sample_rate=options.sample_rate,
        loudness_lufs=options.lufs,
        midi=options.midi is not None,
        stems=options.stems_dir is not None,
        keep_original_audio=options.keep_original_audio,
    )


def _gateway_channel(server: str, tls: ClientTlsConfig | None) -> grpc.Channel:
    options = [*channel_options(64 * 1024 * 1024), *channel_tls_options(tls)]
    if tls is None:
        return grpc.insecure_channel(server, options=options)
    return grpc.secure_channel(server, channel_credentials(tls), options=options)


def _with_application(metadata: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """The metadata with `application: gateway` unless it names an application already."""
    if any(key == APPLICATION_METADATA[0] for key, _ in metadata):
        return metadata
    return (*metadata, APPLICATION_METADATA)


def _upload(
    video: Path, header: gateway_pb2.UploadHeader
) -> Iterator[gateway_pb2.ScoreUploadRequest]:
    yield gateway_pb2.ScoreUploadRequest(header=header)
    with video.open("rb") as source:
        while chunk := source.read(UPLOAD_CHUNK_BYTES):
            yield gateway_pb2.ScoreUploadRequest(chunk=chunk)


def score_remote(
    server: str,
    video: str,
    controls: UserControls,
    options: OutputOptions,
    progress: Callable[[float], None],
    metadata: tuple[tuple[str, str], ...] = (),
    timeout_s: float | None = None,
    by_uri: bool = False,
    tls: ClientTlsConfig | None = None,
    on_event: Callable[[gateway_pb2.ScoreEvent], None] | None = None,
) -> ClientResult:
    """Score through a gateway: upload the file (or name its URI) and write what comes back,
    all or nothing. With `tls`, over TLS (mutual, with a client certificate). `on_event`
    sees every event but the file chunks (analysis, progress with its stage, result)."""
    message = output_options_message(options)
    controls_message = controls_to_proto(controls)
    outcome = ClientResult()
    metadata = _with_application(metadata)
    channel = _gateway_channel(server, tls)
    with channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        if by_uri:
            request = gateway_pb2.ScoreRequest(
                video=common_pb2.VideoSource(uri=video), controls=controls_message, output=message
            )
            responses = stub.Score(request, metadata=metadata, timeout=timeout_s)
        elif Path(video).stat().st_size <= INLINE_UPLOAD_BYTES:
            path = Path(video)
            source = common_pb2.VideoSource(data=path.read_bytes(), file_name=path.name)
            request = gateway_pb2.ScoreRequest(
                video=source, controls=controls_message, output=message
            )
            responses = stub.Score(request, metadata=metadata, timeout=timeout_s)
        else:
            path = Path(video)
            header = gateway_pb2.UploadHeader(
                controls=controls_message,
                output=message,
                file_name=path.name,
                size_bytes=path.stat().st_size,
            )
            responses = stub.ScoreUpload(
                _upload(path, header), metadata=metadata, timeout=timeout_s
            )
        # The open files close however the stream ends; staged_outputs then keeps or removes
        # them all.
        with (
            staged_outputs(options.replace_existing) as staging,
            contextlib.ExitStack() as open_files,
        ):
            files: dict[str, BinaryIO] = {}
            sizes: dict[str, int] = {}
            for response in responses:
                event = response.event
                which = event.WhichOneof("event")
                if on_event is not None and which != "file":
                    on_event(event)
                if which == "analysis":
                    outcome.analysis = event.analysis
                elif which == "progress":
                    progress(event.progress.fraction)
                elif which == "file":
                    _receive(event.file, options, staging, files, sizes, open_files)
                elif which == "result":
                    outcome.result = event.result
            # A stream ended (OK) before a file's last chunk or without its result had kept
            # what came, and said it was done.
            unfinished = [name for name, handle in files.items() if not handle.closed]
            if unfinished:
                raise DownstreamError(f"{unfinished[0]}: the gateway ended before its last chunk")
            if outcome.result is None:
                raise DownstreamError("the gateway ended without a result")
            open_files.close()
            outcome.written = [final for _, final in staging.files]
    progress(1.0)
    return outcome


def analyze_remote(
    server: str,
    video: Path,
    metadata: tuple[tuple[str, str], ...] = (),
    tls: ClientTlsConfig | None = None,
    timeout_s: float | None = None,
    by_uri: bool = False,
) -> common_pb2.VideoAnalysis:
    """Gateway.Analyze of a local file: sent inline (at most INLINE_UPLOAD_BYTES), or named
    by its file:// URI (`by_uri`) to a gateway that reads where it lies."""
    if by_uri:
        source = common_pb2.VideoSource(uri=video.resolve().as_uri())
    else:
        size = video.stat().st_size
        if size > INLINE_UPLOAD_BYTES:
            raise ValueError(f"{video.name} is {size} bytes: the gateway analyses a video "
                             f"this early only up to {INLINE_UPLOAD_BYTES} (32 MiB); its "
                             "timeline comes with its score")  # fmt: skip
        source = common_pb2.VideoSource(data=video.read_bytes(), file_name=video.name)
    metadata = _with_application(metadata)
    channel = _gateway_channel(server, tls)
    with channel:
        request = gateway_pb2.GatewayAnalyzeRequest(video=source)
        reply = gateway_pb2_grpc.GatewayStub(channel).Analyze(
            request, metadata=metadata, timeout=timeout_s
        )
    return reply.analysis


def describe_remote(
    server: str,
    metadata: tuple[tuple[str, str], ...] = (),
    tls: ClientTlsConfig | None = None,
    timeout_s: float | None = None,
) -> gateway_pb2.GatewayDescribeResponse:
    """Gateway.Describe: what the gateway takes, as its generator stands now."""
    with _gateway_channel(server, tls) as channel:
        return gateway_pb2_grpc.GatewayStub(channel).Describe(
            gateway_pb2.GatewayDescribeRequest(), metadata=_with_application(metadata),
            timeout=timeout_s,
        )  # fmt: skip


def _receive(
    chunk: gateway_pb2.FileChunk,
    options: OutputOptions,
    staging: Staging,
    files: dict[str, BinaryIO],
    sizes: dict[str, int],
    open_files: contextlib.ExitStack,
) -> None:
    if chunk.kind == gateway_pb2.FILE_KIND_MAIN:
        final = options.output
    elif chunk.kind == gateway_pb2.FILE_KIND_MIDI and options.midi is not None:
        final = options.midi
    elif chunk.kind == gateway_pb2.FILE_KIND_STEM and options.stems_dir is not None:
        staging.make_folder(options.stems_dir)
        final = options.stems_dir / Path(chunk.name).name
    else:
        return
    if chunk.name not in files:
        temporary = staging.temporary(final)
        files[chunk.name] = open_files.enter_context(temporary.open("wb"))
    if chunk.offset == 0:
        sizes[chunk.name] = chunk.size
    handle = files[chunk.name]
    handle.write(chunk.data)
    if chunk.last:
        received = handle.tell()
        handle.close()
        if sizes.get(chunk.name) and received != sizes[chunk.name]:
            # Nothing is kept: staged_outputs removes every file of a failed request.
            raise DownstreamError(f"{chunk.name}: received {received} of {sizes[chunk.name]} bytes")


@dataclass(frozen=True)
class ErrorDetails:
    """The machine-readable part of a gateway's error (google.rpc details in the trailing
    metadata): the fields at fault, a stable reason, and when to try again."""

    fields: list[str]
    reason: str
    retry_after_s: float | None


def error_details(error: grpc.RpcError) -> ErrorDetails:
    """What an error's status details say (all empty for a status without details)."""
    from google.protobuf.message import DecodeError
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    try:
        status = rpc_status.from_call(error)
    except (DecodeError, ValueError):
        # Details that do not parse (a broken server or proxy) say nothing; the status's own
        # code and message still do (they had crashed bgm client with a traceback).
        status = None
    fields: list[str] = []
    reason, retry = "", None
    for detail in status.details if status is not None else []:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields += [violation.field for violation in bad.field_violations]
        elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            delay = error_details_pb2.RetryInfo()
            detail.Unpack(delay)
            retry = delay.retry_delay.ToMilliseconds() / 1000
    return ErrorDetails(fields, reason, retry)
