"""The Gateway gRPC servicer: the public API. It reaches the tagger and the generator only
through their gRPC contracts, and does the delivery work itself (sources, staging, merging
controls, mastering, muxing, outputs)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import threading
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Self, TypeVar

import grpc

from services import metrics
from services.auth import Authenticator, TenantLedger, service_token
from services.config import (
    GATEWAY_API,
    AuthConfig,
    BgmConfig,
    DeliveryLimit,
    GatewayConfig,
    RequestLimits,
)
from services.contract import (
    OUTPUT_EXTENSIONS,
    AudioAssembler,
    analysis_from_proto,
    analysis_to_proto,
    brief_to_proto,
    controls_from_proto,
    generator_info_from_proto,
    local_video,
    plan_from_proto,
    plan_to_proto,
    ranking_from_proto,
    ranking_to_proto,
    staged_name,
    tags_to_proto,
)
from services.domain import (
    CandidateScore,
    GeneratedMusic,
    GeneratorInfo,
    MusicBrief,
    MusicPlan,
    OutputOptions,
    UserControls,
    VideoAnalysis,
)
from services.edge import EdgeSchema, audio_bytes
from services.errors import (
    BgmError,
    CancelledError,
    ConfigError,
    DeadlineExceededError,
    DownstreamError,
    InvalidInputError,
    MediaNotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnavailableError,
)
from services.gateway.channels import ServiceChannel
from services.gateway.client import error_details
from services.gateway.controls import make_brief
from services.gateway.delivery import (
    check_asked,
    check_video,
    master_music,
    speech_ducking,
    with_default_rate,
    write_outputs,
)
from services.gateway.mastering import LoudnessReport
from services.gen.bgm.v1 import (
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    generator_pb2,
    generator_pb2_grpc,
    tagger_pb2,
    tagger_pb2_grpc,
)
from services.media.sources import SourcePolicy, file_uri_path, parse_uri
from services.media.video import probe_video
from services.progress import Heartbeat
from services.rules import (
    MAX_CANDIDATES,
    check_analysis,
    check_description,
    check_midi,
    check_plan,
    check_ranking,
    speech_matters,
)
from services.scratch import folder_bytes, scratch_folder, sweep
from services.serving import (
    MAX_MESSAGE_CHARS,
    ON_BEHALF_OF,
    PARENT_REQUEST_KEY,
    PROBE,
    STATUS_DETAILS_KEY,
    UNAUTHENTICATED_TENANT,
    UNPRINTABLE,
    Cancellation,
    Delivery,
    FairTurns,
    LongMessages,
    PerClientLimit,
    RequestRecord,
    audio_share,
    client_of,
    in_request,
    is_oversized,
    observed,
    timeline_items,
    turn_keeper,
)
from services.vocabulary import Vocabulary, load_vocabulary

SERVICE = GATEWAY_API
GENERATE = "/bgm.v1.Generator/Generate"
# How long an upload that ended short waits for the caller's cancel that may have ended it.
CANCEL_LANDS_S = 0.05
# The staging folders' owner, for the start-up sweep.
SCRATCH_OWNER = "gateway"
# How often the gateway checks that the tagger and the generator answer.
DEPENDENCY_CHECK_S = 1.0
# How much longer than the gateway's probe found the video a tagger may find it (another
# tagger may count a container's length, where an audio track outlasts the picture).
TAGGER_LENGTH_SLACK_S = 1.0
# The share of a limit on a call past which its DEADLINE_EXCEEDED is the limit's (the clocks
# of gRPC and this process may differ by a little).
DEADLINE_REACHED = 0.95
# An upload checks the staging disk's free room every this many bytes, and a refused one is
# told to come back after this many seconds.
STAGING_CHECK_BYTES = 64 * 1024**2
STAGING_RETRY_S = 30.0
# The errors' reasons for a Score its caller ended: left (CANCELLED, seen where work in a
# thread stops), or too slow to take its events or files.
CALLER_LEFT_REASONS = frozenset({"CANCELLED", "CALLER_STALLED", "DELIVERY_TOO_SLOW"})
log = logging.getLogger("bgm")
Answer = TypeVar("Answer")
Read = TypeVar("Read")


class GatewayServicer(gateway_pb2_grpc.GatewayServicer):
    def __init__(
        self,
        config: GatewayConfig,
        vocabulary: Vocabulary,
        limits: RequestLimits,
        max_concurrent: int,
        max_message_bytes: int,
        auth: AuthConfig,
        turn_slice_s: float,
        delivery: DeliveryLimit,
    ):
        self.config = config
        self.delivery = delivery
        self.vocabulary = vocabulary
        self.limits = limits
        self.schema = EdgeSchema(limits)
        # With auth on: who calls, for which tenant, and what the tenant spends.
        self.authenticator = Authenticator(auth) if auth.enabled else None
        self.ledger = TenantLedger(auth)
        token = service_token(auth)
        shown = (("authorization", f"Bearer {token}"),) if token else ()
        self.tagger_metadata = (*config.tagger_metadata.items(), *shown)
        self.generator_metadata = (*config.generator_metadata.items(), *shown)
        self.sources = SourcePolicy(
            **{**config.sources.model_dump(),
               "file_roots": [*config.sources.file_roots, config.staging_dir]})  # fmt: skip
        self.tagger_channel = ServiceChannel(
            config.tagger_address, "bgm.v1.Tagger", tagger_pb2_grpc.TaggerStub,
            ["Analyze", "Describe"], config.attempts, max_message_bytes, config.tagger_tls,
            retire_after_s=max(config.analyze_timeout_s, config.describe_timeout_s))  # fmt: skip
        self.generator_channel = ServiceChannel(
            config.generator_address, "bgm.v1.Generator", generator_pb2_grpc.GeneratorStub,
            ["Describe"], config.attempts, max_message_bytes, config.generator_tls,
            retire_after_s=max(config.generate_timeout_s, config.describe_timeout_s))  # fmt: skip
        # The Scores and Analyzes worked on at once, by turns between the clients (tenants,
        # with auth on): in the order they came, 30 of one tenant's had kept another's
        # waiting 152 s for a slot.
        self._slots = FairTurns(max_concurrent)
        self._per_client = PerClientLimit(config.max_requests_per_client)
        self._long = LongMessages()
        # Reads of videos by turns, a long one stepping aside after turn_slice_s (a thread
        # more than the turns, for the one set aside).
        self._video_reads = FairTurns(config.max_video_reads)
        self._video_readers = ThreadPoolExecutor(config.max_video_reads + 1,
                                                 thread_name_prefix="video-reads")  # fmt: skip
        self._turn_slice_s = turn_slice_s
        self._audio = FairTurns(config.audio_budget_bytes)
        # The generator's description (or why it could not be had) as last asked for a
        # Describe, and when it came (time.monotonic); one Describe asks at a time.
        self._described: tuple[float, GeneratorInfo | BgmError] | None = None
        self._describing = asyncio.Lock()
        if config.staging_url:
            _check_staging_store(config.staging_url)

    @classmethod
    def from_config(cls, config: BgmConfig) -> Self:
        """The gateway as the config describes it (standalone server and Ray app alike)."""
        return cls(config.gateway, load_vocabulary(), config.limits,
                   max_concurrent=config.serving.gateway.max_concurrent,
                   max_message_bytes=config.serving.max_message_bytes,
                   auth=config.auth, turn_slice_s=config.serving.gateway.turn_slice_s,
                   delivery=config.serving.delivery)  # fmt: skip

    async def close(self) -> None:
        await self.tagger_channel.close()
        await self.generator_channel.close()

    async def watch_dependencies(self, report: Callable[[bool], Awaitable[None]]) -> None:
        """Report the gateway NOT_SERVING while the tagger or the generator does not answer,
        or the generator describes itself off the contract (so every Score would fail),
        checked every DEPENDENCY_CHECK_S; SERVING again as soon as both answer well."""
        serving = True
        while True:
            answers = await asyncio.gather(
                self.tagger_channel.stub.Describe(tagger_pb2.TaggerDescribeRequest(),
                                     timeout=DEPENDENCY_CHECK_S,
                                     metadata=(*self.tagger_metadata, PROBE)),
                self._generator_info(DEPENDENCY_CHECK_S, probe=True),
                return_exceptions=True,
            )  # fmt: skip
            failures = [answer for answer in answers if isinstance(answer, BaseException)]
            if (not failures) != serving:
                serving = not failures
                if failures:
                    log.warning("NOT_SERVING: a dependency does not answer as it should: %s",
                                "; ".join(_one_line(f) for f in failures))  # fmt: skip
                else:
                    log.info("SERVING: the tagger and the generator answer again")
                await report(serving)
            await asyncio.sleep(DEPENDENCY_CHECK_S)

    # ---- the two entry points ---------------------------------------------------------

    async def Score(
        self, request: gateway_pb2.ScoreRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[gateway_pb2.ScoreResponse]:
        async with (
            observed(SERVICE, "Score", context) as record,
            contextlib.AsyncExitStack() as held,
        ):
            tenant, folder = held.enter_context(self._request_place(request, context, record))
            # Fetched and staged while the stream says it is alive (a slow download, or a copy
            # into a shared store, had sent nothing for as long as it took).
            staging = asyncio.ensure_future(self._staged(request.video, tenant, folder, held))
            async with contextlib.aclosing(self._progress_until(staging)) as beats:
                async for beat in beats:
                    yield gateway_pb2.ScoreResponse(event=beat)
            video, uri = staging.result()
            scored = self._score(video, uri, request.controls, request.output, folder, context,
                                 record)  # fmt: skip
            async with contextlib.aclosing(scored) as events:
                async for event in events:
                    yield gateway_pb2.ScoreResponse(event=event)

    async def Analyze(
        self, request: gateway_pb2.GatewayAnalyzeRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.GatewayAnalyzeResponse:
        async with (
            observed(SERVICE, "Analyze", context) as record,
            contextlib.AsyncExitStack() as held,
        ):
            tenant, folder = held.enter_context(self._request_place(request, context, record))
            video, uri = await self._staged(request.video, tenant, folder, held)
            await held.enter_async_context(self._slots.turn(self._caller(context, tenant)))
            if self.authenticator is not None:
                probe = await self._read_video(context, record.tenant, probe_video, video, None)
                self.ledger.check_length(record.tenant, probe.duration_s)
            response, _ = await self._analysis(video, uri, request.prompt, True,
                                               _analyze_response,
                                               self._caller(context, record.tenant),
                                               record.request_id)  # fmt: skip
            return response

    async def Describe(
        self, request: gateway_pb2.GatewayDescribeRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.GatewayDescribeResponse:
        async with observed(SERVICE, "Describe", context) as record:
            tenant = self._identify(context, record)
            self.schema.check(request)
            info = await self._recently_offered()
            vocabulary = self.vocabulary
            candidates = min(info.max_candidates or MAX_CANDIDATES, MAX_CANDIDATES)
            longest, music_s = info.max_duration_s, self.limits.max_music_s
            if self.authenticator is not None:
                # The caller's own limits where they are lower (they had been offered the
                # server's, and refused TENANT_CANDIDATES for what Describe had just said).
                own = self.ledger.limits(tenant)
                candidates = min(candidates, own.max_candidates)
                longest = min(longest, own.max_video_s)
                music_s = min(music_s, own.music_s_per_hour)
            return gateway_pb2.GatewayDescribeResponse(
                vocabulary=tagger_pb2.Vocabulary(
                    genres=[g for g in vocabulary.genres if g in info.genres],
                    moods=list(vocabulary.moods),
                    instruments=[i for i in vocabulary.instruments if i in info.instruments],
                    tonics=list(vocabulary.tonics),
                    modes=list(vocabulary.modes),
                ),
                generator=info.name,
                generator_version=info.version,
                sound=info.sound,
                sample_rates=list(info.sample_rates),
                structures=list(info.structures),
                max_candidates=candidates,
                max_duration_s=longest,
                max_music_s=music_s,
                max_upload_bytes=self.config.max_upload_bytes,
                midi="midi" in info.outputs,
                stems="stems" in info.outputs,
            )
        raise AssertionError("unreachable: observed() aborts on error")

    async def _offered(self) -> GeneratorInfo:
        """The generator's description for a caller's request: one that cannot be reached
        is UNAVAILABLE naming the generator, not where it is."""
        began = time.monotonic()
        try:
            return await self._generator_info()
        except grpc.aio.AioRpcError as error:
            raise _for_caller(error, "generator", "describe_timeout_s",
                              self.config.describe_timeout_s, began) from None  # fmt: skip

    async def _recently_offered(self) -> GeneratorInfo:
        """The generator's description for a Describe: the answer (or the failure) that
        came within the last DEPENDENCY_CHECK_S, else asked, by one Describe at a time (a
        flood of Describes would each have been a call to the generator; a Score asks
        afresh)."""
        async with self._describing:
            now = time.monotonic()
            if self._described is None or now - self._described[0] >= DEPENDENCY_CHECK_S:
                try:
                    answer: GeneratorInfo | BgmError = await self._offered()
                except BgmError as error:
                    answer = error
                self._described = (time.monotonic(), answer)
            answer = self._described[1]
        if isinstance(answer, BgmError):
            raise answer
        return answer

    @contextlib.contextmanager
    def _request_place(
        self,
        request: gateway_pb2.ScoreRequest | gateway_pb2.GatewayAnalyzeRequest,
        context: grpc.aio.ServicerContext,
        record: RequestRecord,
    ) -> Iterator[tuple[str, Path]]:
        """For a request naming its video by URI or inline bytes: the caller identified, the
        message checked, the request admitted; yields the tenant and the request's folder."""
        tenant = self._identify(context, record)
        self.schema.check(request)
        with self._admitted(context, tenant), self._request_folder(tenant) as folder:
            yield tenant, folder

    async def _staged(
        self,
        source: common_pb2.VideoSource,
        tenant: str,
        folder: Path,
        held: contextlib.AsyncExitStack,
    ) -> tuple[Path, str]:
        """The video fetched into the request's folder, and the URI the tagger reads it by
        (its staging held by `held`)."""
        video = await local_video(source, self._sources(tenant), folder,
                                  self.config.max_upload_bytes)  # fmt: skip
        return video, await held.enter_async_context(self._shared_staging(video, folder.name))

    async def _progress_until(
        self, work: asyncio.Future[Any]
    ) -> AsyncGenerator[gateway_pb2.ScoreEvent, None]:
        """Progress (stage "analysis" at 0) every gateway.progress_every_s until `work` is done
        (its result is the caller's to take); `work` is cancelled, and waited for, if the
        stream ends first (closed with `contextlib.aclosing`: left to the collector, its
        work had run on after the request's folder and place were let go)."""
        try:
            while not work.done():
                await asyncio.wait({work}, timeout=self.config.progress_every_s)
                if not work.done():
                    yield _progress("analysis", 0.0)
        finally:
            if not work.done():
                work.cancel()
                await asyncio.gather(work, return_exceptions=True)

    async def _analysis(
        self,
        video: Path,
        tagger_uri: str,
        prompt: str,
        listen: bool,
        answer: Callable[[common_pb2.VideoAnalysis], Answer],
        caller: str,
        request_id: str,
    ) -> tuple[Answer, VideoAnalysis]:
        """The tagger's analysis of `video`, which it reads at `tagger_uri` (the same file, or
        the gateway's copy in a shared store), its speech found if `listen`,
        held to the tagger's contract (`check_analysis`; a swapped-in tagger's broken answer
        would otherwise reach the caller, or come back from the generator as
        INVALID_ARGUMENT on a field the caller never sent): the message `answer` makes of it
        for the caller (its copy of a long analysis, like its conversion, is made off the
        event loop: 0.1 s for the tagger's most), and its domain types. The tagger is told
        whom it analyses for (`caller`) and for which of the gateway's requests."""
        began = time.monotonic()
        try:
            reply = await self.tagger_channel.stub.Analyze(
                tagger_pb2.AnalyzeRequest(video=common_pb2.VideoSource(uri=tagger_uri),
                                          prompt=prompt, skip_speech=not listen),
                timeout=self.config.analyze_timeout_s,
                metadata=(*self.tagger_metadata, (ON_BEHALF_OF, caller),
                          (PARENT_REQUEST_KEY, request_id)),
            )  # fmt: skip
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND and not video.exists():
                # The caller's own file (a file:// URI the tagger reads where it lies),
                # removed while the request waited: the caller's, not the servers'.
                raise MediaNotFoundError(f"{video.name} was removed before it was analysed",
                                         field="video.uri") from None  # fmt: skip
            raise _for_caller(error, "tagger", "analyze_timeout_s",
                              self.config.analyze_timeout_s, began) from None  # fmt: skip
        message = reply.analysis

        def read() -> tuple[Answer, VideoAnalysis]:
            analysis = self._checked_analysis(message)
            return answer(message), analysis

        return await self._long.convert(timeline_items(message), read)

    def _checked_analysis(self, message: common_pb2.VideoAnalysis) -> VideoAnalysis:
        analysis = analysis_from_proto(message)
        try:
            check_analysis(analysis, self.vocabulary)
        except InvalidInputError as error:
            raise DownstreamError(f"the tagger's analysis: {error}") from None
        return analysis

    async def ScoreUpload(
        self,
        request_iterator: AsyncIterator[gateway_pb2.ScoreUploadRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[gateway_pb2.ScoreUploadResponse]:
        async with observed(SERVICE, "ScoreUpload", context) as record:
            tenant = self._identify(context, record)
            # Admitted, and timed, from its first byte: a stream that never sent its header had
            # been held for good and counted against no limit (20,000 from one client; and
            # one kept SIGTERM waiting its whole grace).
            with self._admitted(context, tenant):
                # One deadline for the whole upload, its header and its bytes.
                deadline = asyncio.get_running_loop().time() + self.config.upload_timeout_s
                header = await self._upload_header(request_iterator, deadline)
                with self._request_folder(tenant) as folder:
                    self._check_staging_room(folder, header.size_bytes)
                    video = folder / staged_name(header.file_name, "upload")
                    with video.open("wb") as target:
                        received = await self._received(
                            request_iterator, target, folder, deadline, header.size_bytes, context
                        )
                    if received == 0:
                        raise InvalidInputError("the upload holds no bytes")
                    async with contextlib.AsyncExitStack() as held:
                        shared = self._shared_staging(video, folder.name)
                        staging = asyncio.ensure_future(held.enter_async_context(shared))
                        async with contextlib.aclosing(self._progress_until(staging)) as beats:
                            async for beat in beats:
                                yield gateway_pb2.ScoreUploadResponse(event=beat)
                        with _fields_under("header"):
                            uri = staging.result()
                            scored = self._score(video, uri, header.controls, header.output,
                                                 folder, context, record)  # fmt: skip
                            async with contextlib.aclosing(scored) as events:
                                async for event in events:
                                    yield gateway_pb2.ScoreUploadResponse(event=event)

    async def _upload_header(
        self, messages: AsyncIterator[gateway_pb2.ScoreUploadRequest], deadline: float
    ) -> gateway_pb2.UploadHeader:
        """The upload's first message, its header, by the upload's `deadline` (the event
        loop's time gateway.upload_timeout_s after it began)."""
        limit_s = self.config.upload_timeout_s
        try:
            async with asyncio.timeout_at(deadline):
                first = await anext(aiter(messages), None)
        except TimeoutError:
            raise DeadlineExceededError(
                f"the upload's header did not arrive within {limit_s:g} s"
            ) from None
        if first is None or first.WhichOneof("part") != "header":
            raise InvalidInputError("an upload must start with its header", field="header")
        header = first.header
        # Checked in its message, so that a refusal names the field as the caller's message
        # does ("header.size_bytes", "header.controls.genres"; it had said "size_bytes").
        self.schema.check(first)
        if header.size_bytes > self.config.max_upload_bytes:
            raise ResourceExhaustedError(
                f"upload of {header.size_bytes} bytes is over the limit of "
                f"{self.config.max_upload_bytes}",
                field="header.size_bytes",
                error_reason="UPLOAD_TOO_LARGE",
            )
        return header

    def _check_staging_room(self, folder: Path, more: int) -> None:
        """Refuse what would leave the staging disk (or the staging folder's capacity, where
        it has one) under gateway.min_free_staging_bytes."""
        free = shutil.disk_usage(folder).free
        capacity = self.config.staging_capacity_bytes
        if capacity is not None:
            free = min(free, capacity - folder_bytes(self.config.staging_dir))
        if free - more < self.config.min_free_staging_bytes:
            raise ResourceExhaustedError(
                "the gateway's staging disk is nearly full; try again shortly",
                error_reason="STAGING_FULL", retry_after_s=STAGING_RETRY_S,
            )  # fmt: skip

    async def _received(
        self,
        messages: AsyncIterator[gateway_pb2.ScoreUploadRequest],
        target: BinaryIO,
        folder: Path,
        deadline: float,
        stated_bytes: int,
        context: grpc.aio.ServicerContext,
    ) -> int:
        """The upload's chunks written to `target`, all by the upload's `deadline`: how
        many bytes came, which are the `stated_bytes` its header gave (0: not stated). Each
        chunk counts as at least gateway.min_chunk_bytes against the upload's limit, and the
        staging disk's room is checked every STAGING_CHECK_BYTES."""
        received = counted = checked = 0
        limit_s = self.config.upload_timeout_s
        try:
            async with asyncio.timeout_at(deadline):
                async for message in messages:
                    if message.WhichOneof("part") != "chunk":
                        raise InvalidInputError("only file chunks may follow the header")
                    # Read once (each read of the field is a copy of the chunk) and written
                    # in a thread: both had held the event loop, and the other callers, for
                    # seconds under large uploads.
                    chunk = message.chunk
                    received += len(chunk)
                    if stated_bytes and received > stated_bytes:
                        raise self._not_as_stated(stated_bytes, "more")
                    counted += max(len(chunk), self.config.min_chunk_bytes)
                    if counted > self.config.max_upload_bytes:
                        raise ResourceExhaustedError(
                            f"upload is over the limit of {self.config.max_upload_bytes} bytes "
                            f"(each chunk counts as at least {self.config.min_chunk_bytes})",
                            field="chunk",
                            error_reason="UPLOAD_TOO_LARGE",
                        )
                    if received - checked >= STAGING_CHECK_BYTES:
                        self._check_staging_room(folder, 0)
                        checked = received
                    await asyncio.to_thread(target.write, chunk)
        except TimeoutError:
            raise DeadlineExceededError(
                f"the upload did not arrive within {limit_s:g} s ({received} bytes came)"
            ) from None
        if stated_bytes and received < stated_bytes:
            # A caller's cancel ends the stream first and reaches this task just after: the
            # caller went away, which is no bad input of its (it had been counted
            # INVALID_ARGUMENT, "... bytes came").
            await asyncio.sleep(CANCEL_LANDS_S)
            if context.cancelled():
                raise CancelledError(f"the caller went away mid-upload ({received} bytes came)")
            # A client that broke off mid-file: what came would have been scored as the video.
            raise self._not_as_stated(stated_bytes, str(received))
        return received

    @staticmethod
    def _not_as_stated(stated_bytes: int, came: str) -> InvalidInputError:
        return InvalidInputError(
            f"the upload's header said {stated_bytes} bytes and {came} came",
            field="header.size_bytes",
        )

    # ---- the work ---------------------------------------------------------------------

    def _request_folder(self, tenant: str) -> contextlib.AbstractContextManager[Path]:
        """A staging folder for one request (in its tenant's), removed when the request ends
        however it ends (and at the next start-up if the gateway is killed)."""
        return scratch_folder(self._under(self.config.staging_dir, tenant), SCRATCH_OWNER)

    # ---- who calls ----------------------------------------------------------------------

    def _identify(self, context: grpc.aio.ServicerContext, record: RequestRecord) -> str:
        """The tenant the call acts for ("" with auth off), noted on the request's record;
        UNAUTHENTICATED without credentials the gateway accepts."""
        if self.authenticator is None:
            return ""
        # Until the credentials pass: a refused call is counted apart from auth off ("").
        record.tenant_label = UNAUTHENTICATED_TENANT
        tenant = self.authenticator.caller(context.invocation_metadata() or ()).tenant
        record.tenant = tenant
        record.tenant_label = tenant if tenant in self.ledger.config.tenants else "other"
        return tenant

    def _admitted(
        self, context: grpc.aio.ServicerContext, tenant: str
    ) -> contextlib.AbstractContextManager[None]:
        """A place among the requests running: per tenant with auth on, else per peer."""
        if self.authenticator is None:
            return self._per_client.slot(context)
        return self.ledger.running(tenant)

    def _caller(self, context: grpc.aio.ServicerContext, tenant: str) -> str:
        """Whom the gateway calls the tagger and the generator for (ON_BEHALF_OF): the tenant
        with auth on, else the peer, as _admitted counts them; they take turns between
        these, not between the gateway's requests in the order they came."""
        return tenant if self.authenticator is not None else client_of(context)

    @staticmethod
    def _under(root: Path, tenant: str) -> Path:
        # A tenant's files live under its own folder in every root: its name is a single
        # plain path component (the auth files name it; nothing a caller sends does).
        return root / tenant if tenant else root

    def _sources(self, tenant: str) -> SourcePolicy:
        if not tenant:
            return self.sources
        roots = [self._under(r, tenant) for r in self.sources.file_roots]
        # And under every object-store prefix (they had been every tenant's: a tenant read
        # another's s3:// videos by their names).
        prefixes = [f"{p.rstrip('/')}/{tenant}/" for p in self.sources.object_prefixes]
        return self.sources.model_copy(update={"file_roots": roots, "object_prefixes": prefixes})

    def sweep_staging(self) -> None:
        """Remove the staging folders that killed gateways on this host left behind."""
        sweep(self.config.staging_dir, SCRATCH_OWNER, "gateway.staging_dir")

    @contextlib.asynccontextmanager
    async def _shared_staging(self, video: Path, request_id: str) -> AsyncIterator[str]:
        """The URI the tagger reads the video by: with `staging_url` set, a copy put in the
        shared store (removed when the request ends, however it ends); else the file's own.
        The store is written and emptied in threads: on the event loop, a caller's copy into
        it had held every other caller's request for as long as it took."""
        if not self.config.staging_url:
            yield video.as_uri()
            return
        import fsspec

        folder = f"{self.config.staging_url.rstrip('/')}/{request_id}"
        remote = f"{folder}/{video.name}"
        filesystem, path = fsspec.core.url_to_fs(remote)
        put = threading.Event()

        def put_copy() -> None:
            try:
                # Object stores have no folders; local and network filesystems need this one.
                filesystem.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
                filesystem.put_file(str(video), path)
            finally:
                put.set()

        def remove() -> None:
            put.wait()  # a copy cut off by a cancel goes on in its thread: removed once done
            with contextlib.suppress(FileNotFoundError):
                filesystem.rm(fsspec.core.url_to_fs(folder)[1], recursive=True)

        try:
            await asyncio.to_thread(put_copy)
            yield remote
        finally:
            await asyncio.to_thread(remove)

    def _output_options(
        self, output: gateway_pb2.OutputOptions, folder: Path, tenant: str
    ) -> OutputOptions:
        extension = OUTPUT_EXTENSIONS[output.format]  # a value of OutputFormat (the edge's check)
        target = (self._output_folder(output.output_uri, tenant) if output.output_uri
                  else folder / "out")  # fmt: skip
        return OutputOptions(
            output=target / f"scored{extension}",
            midi=target / "music.mid" if output.midi else None,
            stems_dir=target / "stems" if output.stems else None,
            sample_rate=output.sample_rate,
            lufs=output.loudness_lufs if output.HasField("loudness_lufs") else -14.0,
            keep_original_audio=output.keep_original_audio,
            make_folder=True,
            within=tuple(self._output_roots(tenant)) if output.output_uri else (),
        )

    def _output_roots(self, tenant: str) -> list[Path]:
        return [self._under(root, tenant) for root in self.config.output_roots]

    def _output_folder(self, uri: str, tenant: str) -> Path:
        if parse_uri(uri).scheme != "file":
            raise InvalidInputError(
                f"output URI {uri!r}: only file:// folders are supported by this gateway",
                field="output.output_uri",
            )
        path = file_uri_path(uri, self._output_roots(tenant), "write")
        blocking = next((p for p in (path, *path.parents) if p.exists()), None)
        if blocking is not None and not blocking.is_dir():
            raise InvalidInputError("output_uri: names a folder where a file already is",
                                    field="output.output_uri")  # fmt: skip
        return path

    async def _generator_info(
        self, timeout_s: float | None = None, probe: bool = False
    ) -> GeneratorInfo:
        """The generator's description, checked against the contract (DownstreamError if it
        breaks it); asked as a PROBE by the dependency check."""
        reply = await self.generator_channel.stub.Describe(
            generator_pb2.GeneratorDescribeRequest(),
            timeout=timeout_s or self.config.describe_timeout_s,
            metadata=(*self.generator_metadata, *((PROBE,) if probe else ())))  # fmt: skip
        info = generator_info_from_proto(reply)
        try:
            check_description(info, self.vocabulary)
        except InvalidInputError as error:
            raise DownstreamError(f"the generator's description: {error}") from None
        return info

    async def _score(
        self,
        video: Path,
        tagger_uri: str,
        controls_message: common_pb2.UserControls,
        output: gateway_pb2.OutputOptions,
        folder: Path,
        context: grpc.aio.ServicerContext,
        record: RequestRecord,
    ) -> AsyncGenerator[gateway_pb2.ScoreEvent, None]:
        started = time.perf_counter()
        # Checked while the stream says it is alive (the generator's description may take
        # describe_timeout_s, the video's length a turn among other callers' reads).
        checking = asyncio.ensure_future(
            self._checked(video, controls_message, output, folder, context, record.tenant)
        )
        async with contextlib.aclosing(self._progress_until(checking)) as beats:
            async for beat in beats:
                yield beat
        controls, options, info, duration_s = checking.result()
        booked = 0.0
        if self.authenticator is not None:
            booked = self.ledger.reserve(record.tenant, duration_s, controls.candidates)
        asked = _Asked(video, duration_s, tagger_uri, controls, options, info, output,
                       context, record, started)  # fmt: skip
        try:
            async with contextlib.aclosing(self._scored(asked)) as events:
                async for event in events:
                    yield event
        except BaseException as error:
            # Music that was not delivered is not counted against the tenant, unless its
            # caller left once the generator was at work, or its own request made the music
            # undeliverable (a folder put where an output goes): the compute is spent
            # (refunded, a tenant that cancelled each Score just before its end had had the
            # generators for free, past its quota).
            spent = _caller_left(error) or _undeliverable(error)
            if not (asked.generating.is_set() and spent):
                self.ledger.refund(record.tenant, booked)
            raise

    async def _checked(
        self,
        video: Path,
        controls_message: common_pb2.UserControls,
        output: gateway_pb2.OutputOptions,
        folder: Path,
        context: grpc.aio.ServicerContext,
        tenant: str,
    ) -> tuple[UserControls, OutputOptions, GeneratorInfo, float]:
        """The request's controls and outputs held to what the generator offers now, and the
        video's length."""
        controls = controls_from_proto(controls_message)
        options = self._output_options(output, folder, tenant)
        info = await self._offered()
        options = with_default_rate(options, info)
        controls = check_asked(controls, options, info, self.vocabulary, self.limits)
        duration_s = await self._read_video(context, tenant, check_video, video, controls,
                                            options, info, self.limits)  # fmt: skip
        return controls, options, info, duration_s

    async def _read_video(
        self,
        context: grpc.aio.ServicerContext,
        tenant: str,
        read: Callable[..., Read],
        *args: Any,
    ) -> Read:
        """`read(*args, heartbeat)` on the video readers, in the caller's turn: a long
        MPEG-TS's length takes seconds to read, a cancel stops it, and another client's read
        may take the turn meanwhile."""
        loop = asyncio.get_running_loop()
        async with self._video_reads.turn(client_of(context), tenant) as turn:
            heartbeat = Heartbeat(turn_keeper(turn, loop, self._turn_slice_s,
                                              Cancellation(context).check))  # fmt: skip
            return await loop.run_in_executor(
                self._video_readers, in_request(read, *args, heartbeat)
            )

    async def _scored(self, asked: _Asked) -> AsyncGenerator[gateway_pb2.ScoreEvent, None]:
        # The work runs in a task of its own, which passes progress on: were its slot and its
        # share of the audio budget held across the stream's writes, a client that stops
        # reading would keep them (and the audio) for as long as it liked, and every Score
        # behind it waiting.
        events = _Mailbox()
        work = asyncio.ensure_future(self._produce(asked, events))
        controls, options, output = asked.controls, asked.options, asked.output
        # Sent again when there is no news for gateway.progress_every_s.
        last_progress = _progress("analysis", 0.0)
        try:
            while not work.done() or events:
                if not events:
                    news = asyncio.ensure_future(events.arrival())
                    try:
                        done, _ = await asyncio.wait(
                            {work, news}, timeout=self.config.progress_every_s,
                            return_when=asyncio.FIRST_COMPLETED,
                        )  # fmt: skip
                    finally:
                        # Also when the caller goes away: no wait for news is left pending.
                        news.cancel()
                    if not done:
                        yield last_progress
                    continue
                event = events.take()
                if event.WhichOneof("event") == "progress":
                    last_progress = event
                yield event
            brief, plan, loudness, ranking, written = work.result()
        finally:
            if not work.done():
                work.cancel()
                await asyncio.gather(work, return_exceptions=True)
        if not output.output_uri:
            delivery = Delivery(sum(path.stat().st_size for path in written), self.delivery)
            for path in written:
                async for chunk in self._file_chunks(path, options):
                    delivery.check()
                    yield chunk
        seconds = time.perf_counter() - asked.started
        metrics.compute_per_music_second(SERVICE, seconds / max(brief.duration_s, 1e-6))
        asked.record.music_s = brief.duration_s * max(controls.candidates, 1)
        yield gateway_pb2.ScoreEvent(result=gateway_pb2.ScoreResult(
            tags=tags_to_proto(brief.tags), plan=plan_to_proto(plan),
            loudness=gateway_pb2.LoudnessReport(
                integrated_lufs=loudness.integrated_lufs, true_peak_dbtp=loudness.true_peak_dbtp,
                target_lufs=loudness.target_lufs,
                true_peak_limit_dbtp=loudness.true_peak_limit_dbtp, ducked=loudness.ducked),
            output_uris=[p.as_uri() for p in written] if output.output_uri else [],
            seconds=seconds, ranking=ranking_to_proto(ranking),
        ))  # fmt: skip

    async def _produce(
        self, asked: _Asked, events: _Mailbox
    ) -> tuple[MusicBrief, MusicPlan, LoudnessReport, list[CandidateScore], list[Path]]:
        """In a slot: the video analysed, the music generated with its share of the audio
        budget, mastered and written (events put on `events`); the brief, the plan, the
        loudness, the ranking and the files. The audio (the mix, every stem, mastered) is let
        go with the share, before the files are streamed at whatever pace the caller reads
        them (a caller that stopped reading had held 3 GB of it)."""
        video, controls, options, info = asked.video, asked.controls, asked.options, asked.info
        context, record = asked.context, asked.record
        caller = self._caller(context, record.tenant)
        asked_at = time.perf_counter()
        async with self._slots.turn(caller):
            metrics.turn_waited(SERVICE, time.perf_counter() - asked_at)
            events.put(_progress("analysis", 0.02))
            # Music that replaces the video's sound has no use for its speech: the tagger
            # does not listen (a pass of the voice-activity model over the whole sound).
            listen = speech_matters(controls.speech, options.keep_original_audio)
            analysis_event, analysis = await self._analysis(
                video,
                asked.tagger_uri,
                controls.prompt,
                listen,
                _analysis_event,
                caller,
                record.request_id,
            )
            if analysis.duration_s > asked.probed_s + TAGGER_LENGTH_SLACK_S:
                # The request was admitted and booked at the video's own length. (Shorter is
                # the tagger's to say: a picture that ends before the sound or the damage.)
                raise DownstreamError(
                    f"the tagger's analysis: a length of {analysis.duration_s:g} s for a video "
                    f"of {asked.probed_s:g} s"
                )
            if analysis.duration_s > asked.probed_s:
                # Within the slack (a container's length, where the sound outlasts the
                # picture): the music fits the picture the gateway measured and delivers it
                # with (an MP4's music had run 0.9 s past its last frame).
                analysis = analysis.cut_to(asked.probed_s)
                # The caller is told the timeline the music was made to (it had been told
                # the tagger's longer one).
                analysis_event = _analysis_event(analysis_to_proto(analysis))
            events.put(analysis_event)
            events.put(_progress("composition", 0.35))
            brief = make_brief(
                analysis,
                controls,
                self.vocabulary,
                info,
                options.sample_rate,
                stems=options.stems_dir is not None,
                keep_original_audio=options.keep_original_audio,
            )
            # The most audio the generator may send: every candidate's mix, with stems one
            # for each instrument it plays, within limits.max_music_s. (The video's own sound,
            # where it is kept, is mastering's, which comes on top: counted here, a two-hour
            # video's would make its share larger than the whole budget, and every other
            # Score would wait for it.)
            tracks = 1 + (len(info.instruments) if brief.stems else 0)
            music_s = min(brief.duration_s * max(controls.candidates, 1) * tracks,
                          self.limits.max_music_s)  # fmt: skip
            held = audio_bytes(music_s, brief.sample_rate)
            async with audio_share(self._audio, SERVICE, client_of(context), record.tenant,
                                   held):  # fmt: skip
                generated = None
                asked.generating.set()
                generating = self._generate(brief, controls.candidates, caller,
                                            record.request_id, music_s)  # fmt: skip
                async for event in generating:
                    if isinstance(event, _Generated):
                        generated = event
                    else:
                        events.put(event)
                assert generated is not None
                music = generated.music
                if options.midi is not None and not music.midi:
                    # An empty .mid had been written, the call OK.
                    raise DownstreamError("the generator sent no MIDI, which it offers")
                # Mastering and writing stop within a heartbeat once the caller has gone,
                # and the request's folder and share outlast them.
                cancellation = Cancellation(context)
                heartbeat = Heartbeat(cancellation.check)
                events.put(_progress("mastering", 0.8))
                ducking = speech_ducking(analysis, controls, options,
                                         self.config.speech_ducking)  # fmt: skip
                mastered = await cancellation.in_thread(master_music, video, music, options,
                                                        heartbeat, ducking)  # fmt: skip
                events.put(_progress("writing", 0.9))
                written, loudness = await cancellation.in_thread(
                    write_outputs, video, music, mastered, options, heartbeat
                )
                return brief, music.plan, loudness, generated.ranking, written

    async def _generate(
        self, brief: MusicBrief, candidates: int, caller: str, request_id: str, music_s: float
    ) -> AsyncIterator[gateway_pb2.ScoreEvent | _Generated]:
        """Progress events while the generator works (for `caller`, in the gateway's request
        `request_id`), then the best-ranked
        candidate's music (the only one, for one candidate); a generator that sends more
        than `music_s` seconds of audio (mixes and stems) is refused."""

        def serialized() -> bytes:
            message = generator_pb2.GenerateRequest(
                brief=brief_to_proto(brief), stems=brief.stems, candidates=candidates
            )
            try:
                self.schema.check(message)
            except InvalidInputError as error:
                # Past a limit only the tagger's timeline can reach (30,000 cuts, a caption
                # of 100,000 characters): the generator's INVALID_ARGUMENT had named a brief
                # field the caller never sent.
                raise DownstreamError(
                    f"the tagger's analysis: its timeline makes a brief past the limits: {error}"
                ) from None
            return message.SerializeToString()

        request = await self._long.convert(timeline_items(brief), serialized)
        generate = self.generator_channel.serialized_stream(
            GENERATE, generator_pb2.GenerateResponse
        )
        began = time.monotonic()
        call = generate(request, timeout=self.config.generate_timeout_s,
                        metadata=(*self.generator_metadata, (ON_BEHALF_OF, caller),
                                  (PARENT_REQUEST_KEY, request_id)))  # fmt: skip
        received: dict[int, _CandidateParts] = {}
        ranking: list[CandidateScore] = []
        composed = 0.0
        rate, total = brief.sample_rate, round(brief.duration_s * brief.sample_rate)
        asked = max(candidates, 1)
        tracks = 0

        def one_more_track() -> None:
            nonlocal tracks
            tracks += 1
            if tracks * brief.duration_s > music_s + 1e-6:
                raise DownstreamError(
                    f"the generator sent {tracks} tracks of {brief.duration_s:g} s: more "
                    f"than the {music_s:g} s of audio the request may hold"
                )

        try:
            async for message in call:
                which = message.WhichOneof("event")
                if which == "progress":
                    # The Score stream's fractions rise within 0..1 (its contract), whatever a
                    # generator sends: one that steps back, passes 1 or is not a number is
                    # not passed on.
                    fraction = min(message.progress.fraction, 1.0)
                    if fraction > composed:
                        composed = fraction
                        yield _progress("composition", 0.35 + 0.45 * fraction)
                    continue
                if which == "ranking":
                    ranking = ranking_from_proto(message.ranking.scores)
                    _held_to(check_ranking, "the generator's ranking", ranking)
                    continue
                # What a generator sends is checked against the brief before it is held: the
                # gateway holds no more than the candidates' music and stems it asked for.
                candidate = message.candidate
                if not 0 <= candidate < asked:
                    raise DownstreamError(f"the generator sent candidate {candidate} of {asked}")
                parts = received.get(candidate)
                if parts is None:
                    one_more_track()
                    audio = AudioAssembler(f"candidate {candidate}'s audio", rate, total)
                    parts = received[candidate] = _CandidateParts(audio)
                if which == "plan":
                    parts.plan = plan_from_proto(message.plan)
                    _held_to(check_plan, f"candidate {candidate}'s plan", parts.plan)
                elif which == "audio":
                    parts.audio.add(message.audio)
                elif which == "midi":
                    parts.midi = message.midi
                    _held_to(check_midi, f"candidate {candidate}'s MIDI", parts.midi)
                elif which == "stem":
                    name = message.stem.instrument
                    if not _names_a_file(name):
                        raise DownstreamError(
                            f"the generator sent a stem named {name[:100]!r}: a stem's name is "
                            "its file's, so one plain name (no '/', '\\' or control "
                            "characters, not '.' or '..', at most 251 bytes)"
                        )
                    if parts.plan is None or name not in parts.plan.instruments:
                        raise DownstreamError(
                            f"the generator sent a stem for {name!r}, which candidate "
                            f"{candidate}'s plan does not play"
                        )
                    if name not in parts.stems:
                        one_more_track()
                        what = f"candidate {candidate}'s {name} stem"
                        parts.stems[name] = AudioAssembler(what, rate, total)
                    parts.stems[name].add(message.stem.audio)
        except grpc.aio.AioRpcError as error:
            raise _for_caller(error, "generator", "generate_timeout_s",
                              self.config.generate_timeout_s, began) from None  # fmt: skip
        finally:
            # However this ends (the client cancelled, a deadline passed), stop the generator.
            call.cancel()
        if candidates > 1 and len(ranking) != candidates:
            raise DownstreamError(f"the generator ranked {len(ranking)} of {candidates} "
                                  "candidates")  # fmt: skip
        ranking = _best_first(ranking)
        best = ranking[0].candidate if ranking else 0
        chosen = received.get(best)
        if chosen is None or chosen.plan is None:
            raise DownstreamError("the generator returned no plan")
        missing = [name for name in chosen.plan.instruments if name not in chosen.stems]
        if brief.stems and missing:
            # "One audio track per instrument" (GenerateRequest.stems): a set short of some
            # had been delivered, the call OK.
            raise DownstreamError(
                f"the generator sent no stem for {', '.join(map(repr, missing[:8]))}, which "
                f"candidate {best}'s plan plays"
            )
        music = GeneratedMusic(audio=chosen.audio.result(), sample_rate=rate,
                               stems={n: a.result() for n, a in chosen.stems.items()},
                               midi=chosen.midi, plan=chosen.plan)  # fmt: skip
        yield _Generated(music, ranking)

    async def _file_chunks(
        self, path: Path, options: OutputOptions
    ) -> AsyncIterator[gateway_pb2.ScoreEvent]:
        if path == options.output:
            kind, name = gateway_pb2.FILE_KIND_MAIN, path.name
        elif path == options.midi:
            kind, name = gateway_pb2.FILE_KIND_MIDI, path.name
        else:
            kind, name = gateway_pb2.FILE_KIND_STEM, f"stems/{path.name}"
        size = path.stat().st_size
        offset = 0
        with path.open("rb") as source:
            while True:
                data = source.read(self.config.chunk_bytes)
                last = offset + len(data) >= size
                yield gateway_pb2.ScoreEvent(file=gateway_pb2.FileChunk(
                    name=name, kind=kind, offset=offset, data=data, last=last,
                    size=size if offset == 0 else 0))  # fmt: skip
                offset += len(data)
                if last:
                    break


@dataclass(frozen=True)
class _Asked:
    """One Score, admitted: what the gateway works on."""

    video: Path
    # Its length as its container states it (check_video).
    probed_s: float
    # Where the tagger reads the video.
    tagger_uri: str
    controls: UserControls
    options: OutputOptions
    info: GeneratorInfo
    output: gateway_pb2.OutputOptions
    context: grpc.aio.ServicerContext
    record: RequestRecord
    started: float
    # Set once the generator is asked for the music.
    generating: threading.Event = field(default_factory=threading.Event)


class _Mailbox:
    """Events a Score's work passes to its stream; a client that reads slowly gets, of the
    progress events queued one after another, the newest (the latest news, not every step),
    and every other event as it came."""

    def __init__(self) -> None:
        self._events: deque[gateway_pb2.ScoreEvent] = deque()
        self._arrived = asyncio.Event()

    def put(self, event: gateway_pb2.ScoreEvent) -> None:
        self._events.append(event)
        self._arrived.set()

    def __bool__(self) -> bool:
        return bool(self._events)

    async def arrival(self) -> None:
        await self._arrived.wait()

    def take(self) -> gateway_pb2.ScoreEvent:
        event = self._events.popleft()
        while (self._events and event.WhichOneof("event") == "progress"
               and self._events[0].WhichOneof("event") == "progress"):  # fmt: skip
            event = self._events.popleft()
        if not self._events:
            self._arrived.clear()
        return event


@contextlib.contextmanager
def _fields_under(message: str) -> Iterator[None]:
    """A refusal's field named where the caller's message holds it: an upload's controls and
    output are its header's ("header.controls.genres"; named as in a Score, "controls.genres",
    they had been fields the upload does not have)."""
    try:
        yield
    except BgmError as error:
        if error.field is not None:
            error.field = f"{message}.{error.field}"
        raise


# A brief's fields that are the caller's own bytes, passed through unchanged.
CALLERS_OWN = ("brief.reference_audio", "brief.prompt")


def _for_caller(
    error: grpc.aio.AioRpcError, service: str, setting: str, limit_s: float, began: float
) -> Exception:
    """What a call to `service`, made at `began` (time.monotonic), that failed with `error` is
    to the caller: where it outlasted the gateway's limit on it (gateway.`setting`),
    DEADLINE_EXCEEDED naming that limit (gRPC's own "Deadline Exceeded" reads as if the
    caller's deadline had passed); where `service` refused the gateway itself (its
    credentials, or a file it handed over that the service cannot find or may not read: the
    caller was let in already, and names nothing a service looks up), FAILED_PRECONDITION for
    the server's configuration, the details in the log only (they name the server's
    folders); Generate's INVALID_ARGUMENT naming a field of the brief, or with no details, a
    refusal of the brief (GENERATOR_REFUSED_BRIEF, no field: the brief's are none the caller
    sent); a RESOURCE_EXHAUSTED in no words of this contract and not gRPC's own over a size,
    the service busy (DOWNSTREAM_BUSY, RetryInfo); an UNAVAILABLE in gRPC's own words, the
    service named and not its address; else `error`, whose code and details are passed on
    (the caller's own reference audio or prompt refused, a DEADLINE_EXCEEDED that `service`
    sent before the limit)."""
    if error.code() in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED,
                        grpc.StatusCode.NOT_FOUND):  # fmt: skip
        log.error("the %s refused this gateway (%s: %s): its configuration or the gateway's "
                  "is wrong", service, error.code().name, error.details())  # fmt: skip
        return ConfigError(f"the {service} refuses this gateway's requests "
                           f"({error.code().name}): the server's configuration is wrong (its "
                           "log has the details)")  # fmt: skip
    passed_on = dict(error.trailing_metadata() or ()).get(STATUS_DETAILS_KEY)
    said = UNPRINTABLE.sub(" ", error.details() or "")
    generated = setting == "generate_timeout_s"  # (not a Describe)
    if generated and error.code() == grpc.StatusCode.INVALID_ARGUMENT:
        fields = error_details(error).fields
        # The brief is this gateway's, made of the request: a field of it the generator names
        # (brief.segments) is none the caller sent, and had reached it as if it were. The
        # caller's own bytes (a reference audio it cannot decode) are the caller's, and
        # passed on.
        if not passed_on or any(f.startswith("brief.") and not f.startswith(CALLERS_OWN)
                                for f in fields):  # fmt: skip
            return InvalidInputError(f"the generator refused the brief made of this request: "
                                     f"{said}", error_reason="GENERATOR_REFUSED_BRIEF")  # fmt: skip
    if (error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and not passed_on
            and not is_oversized(said)):  # fmt: skip
        # A service of another make that says it is busy, in no words of this contract: its
        # own, not the caller's limits (it had read as the caller's quota, with no RetryInfo).
        return ResourceExhaustedError(f"the {service} is busy: {said}", retry_after_s=1.0,
                                      error_reason="DOWNSTREAM_BUSY")  # fmt: skip
    if error.code() == grpc.StatusCode.UNAVAILABLE and not passed_on:
        # gRPC's own words name the service's address ("failed to connect to all addresses;
        # ... ipv4:10.0.3.7:50052"), which had reached the caller: the log keeps them.
        log.warning("the %s cannot be reached: %s", service, error.details())
        return UnavailableError(f"the {service} cannot be reached (this gateway's log says "
                                "why); try again shortly", retry_after_s=1.0)  # fmt: skip
    # gRPC ends the call at the limit, never before (a generator's own DEADLINE_EXCEEDED,
    # sent at once, had been reported as this gateway's limit passed).
    outlasted = time.monotonic() - began >= limit_s * DEADLINE_REACHED
    if error.code() != grpc.StatusCode.DEADLINE_EXCEEDED or passed_on or not outlasted:
        return error
    return DeadlineExceededError(
        f"the {service} took longer than this gateway allows it (gateway.{setting}: {limit_s:g} s)",
        error_reason="DOWNSTREAM_TOO_SLOW",
    )


def _one_line(failure: BaseException) -> str:
    """A dependency check's failure for the log: a gRPC error's code and details on one line
    (its str() had spread over several lines and been cut at 200 characters, before the
    cause)."""
    if isinstance(failure, grpc.aio.AioRpcError):
        said = f"{failure.code().name}: {failure.details()}"
    else:
        said = f"{type(failure).__name__}: {failure}"
    return " ".join(UNPRINTABLE.sub(" ", said).split())[:MAX_MESSAGE_CHARS]


def _names_a_file(name: str) -> bool:
    """Whether a stem's name can be its file's name (NAME.wav): one plain path component."""
    return (0 < len(name.encode()) <= 251 and name not in (".", "..")
            and "/" not in name and "\\" not in name and name.isprintable())  # fmt: skip


def _best_first(ranking: list[CandidateScore]) -> list[CandidateScore]:
    """The ranking in its ranks' order, which must be 1..n, one for each candidate 0..n-1
    (the contract's "best first" and "rank 1 = best" must agree: the gateway delivers the
    first, its client names the one ranked 1)."""
    ordered = sorted(ranking, key=lambda score: score.rank)
    count = len(ordered)
    if ([s.rank for s in ordered] != list(range(1, count + 1))
            or sorted(s.candidate for s in ordered) != list(range(count))):  # fmt: skip
        named = ", ".join(f"candidate {s.candidate} rank {s.rank}" for s in ranking[:8])
        raise DownstreamError(f"the generator's ranking is not ranks 1..{count} for candidates "
                              f"0..{count - 1}: {named}")  # fmt: skip
    return ordered


def _analyze_response(analysis: common_pb2.VideoAnalysis) -> gateway_pb2.GatewayAnalyzeResponse:
    return gateway_pb2.GatewayAnalyzeResponse(analysis=analysis)


def _analysis_event(analysis: common_pb2.VideoAnalysis) -> gateway_pb2.ScoreEvent:
    return gateway_pb2.ScoreEvent(analysis=analysis)


def _check_staging_store(url: str) -> None:
    """The store gateway.staging_url names can be written with what is installed (fsspec
    needs s3fs for s3://, gcsfs for gs://): said at start-up, where every Score had failed on
    it."""
    import fsspec

    try:
        fsspec.get_filesystem_class(fsspec.utils.get_protocol(url))
    except (ImportError, ValueError) as error:
        raise ConfigError(f"gateway.staging_url {url}: {error} (the s3 and gs extras install "
                          "their stores: pip install 'bgm[s3]')") from None  # fmt: skip


def _undeliverable(error: BaseException) -> bool:
    """Whether the request's own outputs failed the music: a folder put where an output goes,
    its folder made a file or a link out of the tenant's roots while the music was made."""
    return isinstance(error, InvalidInputError | PermissionDeniedError) or (
        isinstance(error, BgmError) and error.error_reason == "OUTPUT_NOT_WRITTEN"
    )


def _caller_left(error: BaseException) -> bool:
    """Whether the request ended by its caller's doing: gRPC cancels the handler when the
    caller cancels or its deadline passes; the work stops with CancelledError, or, where the
    stream was waiting for the caller to take an event, gRPC closes it (GeneratorExit: that
    had been taken for a failure, and the Score refunded, in about one cancel of five); and
    a caller too slow to take its music ends the stream."""
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        return True
    return isinstance(error, BgmError) and error.error_reason in CALLER_LEFT_REASONS


def _progress(stage: str, fraction: float) -> gateway_pb2.ScoreEvent:
    return gateway_pb2.ScoreEvent(progress=common_pb2.Progress(stage=stage, fraction=fraction))


@dataclass
class _CandidateParts:
    """One candidate's messages as they arrive."""

    audio: AudioAssembler
    plan: MusicPlan | None = None
    midi: bytes = b""
    stems: dict[str, AudioAssembler] = field(default_factory=dict)


@dataclass(frozen=True)
class _Generated:
    music: GeneratedMusic
    ranking: list[CandidateScore]


def _held_to(check: Callable[..., None], what: str, *args: Any) -> None:
    """`check(*args)`, its refusal the generator's broken contract, naming `what`."""
    try:
        check(*args)
    except InvalidInputError as error:
        raise DownstreamError(f"{what}: {error}") from None
