"""The Generator gRPC servicer: protobuf in, domain calls, protobuf out; no model logic."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from typing import Self

import grpc

from services import metrics
from services.auth import ServiceGate, service_gate
from services.config import BgmConfig, DeliveryLimit, GeneratorConfig, PeerLimit, RequestLimits
from services.contract import audio_chunks, brief_from_proto, plan_to_proto, ranking_to_proto
from services.domain import CandidateScore, GeneratedMusic, MusicBrief
from services.edge import EdgeSchema, audio_bytes, check_work
from services.errors import UnavailableError
from services.gen.bgm.v1 import common_pb2, generator_pb2, generator_pb2_grpc
from services.generator.backend import (
    GenerationJob,
    GeneratorBackend,
    JobResult,
    validate_brief,
)
from services.generator.candidates import candidate_jobs, ranked
from services.progress import Heartbeat
from services.rules import MAX_CANDIDATES, check_candidates
from services.serving import (
    Cancellation,
    Delivery,
    FairTurns,
    LongMessages,
    PerPeerLimit,
    RequestRecord,
    audio_share,
    callers_of,
    observed,
    sliced_turns,
    timeline_items,
    turn_keeper,
)
from services.vocabulary import load_vocabulary

SERVICE = "bgm.v1.Generator"

# Generates a batch of jobs off the event loop. The default runs the backend's generate_batch
# in a thread; the Ray app passes one that pools jobs from concurrent requests (@serve.batch).
BatchRunner = Callable[[list[GenerationJob]], Awaitable[list[JobResult]]]


def run_batch(backend: GeneratorBackend, jobs: list[GenerationJob]) -> list[JobResult]:
    """The backend's generate_batch, counted in the running-generations gauge until the work
    really stops (after a cancel, at the next progress report)."""
    metrics.generation_started(len(jobs))
    try:
        return backend.generate_batch(jobs)
    finally:
        metrics.generation_ended()


class GeneratorServicer(generator_pb2_grpc.GeneratorServicer):
    def __init__(
        self,
        backend: GeneratorBackend | None,
        limits: RequestLimits,
        max_concurrent: int,
        gate: ServiceGate,
        batch_runner: BatchRunner | None = None,
        turn_slice_s: float | None = None,
        audio_budget_bytes: int = GeneratorConfig().audio_budget_bytes,
        delivery: DeliveryLimit | None = None,
        peer_limit: PeerLimit | None = None,
    ):
        # Configured: only the gateway is served.
        self.gate = gate
        # None until the backend has loaded (the server reports NOT_SERVING meanwhile).
        self.backend = backend
        self.limits = limits
        self.schema = EdgeSchema(limits)
        self._turns, self._workers = sliced_turns(max_concurrent, "generator")
        self._audio = FairTurns(audio_budget_bytes)
        self._run = batch_runner or self._in_thread
        # A request steps aside for another caller after this long (None: it never does).
        # Not under a batch runner, whose batch holds other requests' jobs: one set aside
        # would stall them, and the turn it handed on with them.
        self._turn_slice_s = None if batch_runner is not None else turn_slice_s
        self._long = LongMessages()
        self._delivery = delivery or DeliveryLimit()
        # What one caller may have in flight here, waiting or running (serving.peer).
        self._peers = PerPeerLimit(peer_limit or PeerLimit())

    @classmethod
    def from_config(
        cls,
        config: BgmConfig,
        backend: GeneratorBackend | None,
        batch_runner: BatchRunner | None = None,
    ) -> Self:
        """The generator as the config describes it (standalone server and Ray app alike)."""
        endpoint = config.serving.generator
        gate = service_gate(config.auth, endpoint.tls)
        return cls(backend, config.limits, endpoint.max_concurrent, gate, batch_runner,
                   endpoint.turn_slice_s, config.generator.audio_budget_bytes,
                   config.serving.delivery, config.serving.peer)  # fmt: skip

    def _loaded(self) -> GeneratorBackend:
        if self.backend is None:
            raise UnavailableError("the generator is still loading its backend")
        return self.backend

    async def _brief(self, request: generator_pb2.GenerateRequest) -> MusicBrief:
        """The request checked at the edge, and its brief, checked by what the backend
        describes: a brief it cannot honour is refused before it waits for a turn."""
        return await self._long.convert(timeline_items(request.brief),
                                        lambda: self._read(request))  # fmt: skip

    def _read(self, request: generator_pb2.GenerateRequest) -> MusicBrief:
        self.schema.check(request)
        check_candidates(request.candidates or 1)
        brief = brief_from_proto(request.brief, stems=request.stems)
        validate_brief(brief, self._loaded().describe(), load_vocabulary())
        return brief

    async def _in_thread(self, jobs: list[GenerationJob]) -> list[JobResult]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._workers, run_batch, self._loaded(), jobs)

    async def Generate(
        self, request: generator_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[generator_pb2.GenerateResponse]:
        async with observed(SERVICE, "Generate", context) as record:
            self.gate.check(context)
            # The music is _generated's: however the stream ends (a caller that stopped
            # reading, StallLimit), it is let go with the share before the status is sent,
            # which waits until the caller reads again or goes away.
            with self._peers.held(context, request):
                generated = self._generated(request, context, record)
                async with contextlib.aclosing(generated) as messages:
                    async for message in messages:
                        yield message

    async def _generated(
        self,
        request: generator_pb2.GenerateRequest,
        context: grpc.aio.ServicerContext,
        record: RequestRecord,
    ) -> AsyncGenerator[generator_pb2.GenerateResponse, None]:
        """The stream of one Generate: its progress, then its music, within its share of the
        audio budget; `record` (the audit line's) takes the seconds of music delivered."""
        brief = await self._brief(request)
        loop = asyncio.get_running_loop()
        progress: asyncio.Queue[float] = asyncio.Queue()
        # When the caller goes away (cancel, deadline), the generating thread stops at its
        # next progress report (a fraction of a second apart).
        cancellation = Cancellation(context)
        reported = [-1.0]
        # Hears the cancel; with its turn, keeps it (turn_keeper).
        keep_turn: Callable[[float], None] = cancellation.check

        def report(fraction: float) -> None:
            keep_turn(fraction)
            # A heartbeat repeats the last fraction: only progress is sent on (the
            # contract's fractions rise, whatever a backend reports).
            if fraction > reported[0]:
                reported[0] = fraction
                loop.call_soon_threadsafe(progress.put_nowait, fraction)

        jobs = candidate_jobs(brief, request.candidates or 1, report)
        tracks = self._loaded().tracks(brief)
        check_work(brief.duration_s, len(jobs), self.limits, tracks)
        # The music's share, taken before the turn, is held until the gateway has it all.
        held = audio_bytes(brief.duration_s * len(jobs) * tracks, brief.sample_rate)
        peer, caller = callers_of(context)

        async def compose() -> tuple[list[GeneratedMusic], list[CandidateScore]]:
            """The work, on its turn; the turn goes when the work is done."""
            nonlocal keep_turn
            asked = time.perf_counter()
            async with self._turns.turn(peer, caller) as turn:
                metrics.turn_waited(SERVICE, time.perf_counter() - asked)
                if self._turn_slice_s is not None:
                    keep_turn = turn_keeper(turn, loop, self._turn_slice_s, cancellation.check)
                started = time.perf_counter()
                work = asyncio.ensure_future(self._run(jobs))
                # After a cancel nobody awaits the work; its error is expected, not news.
                work.add_done_callback(lambda done: done.cancelled() or done.exception())
                try:
                    await asyncio.wait({work})
                    composed = await cancellation.in_thread(
                        ranked, brief, work.result(), Heartbeat(cancellation.check)
                    )
                finally:
                    cancellation.over.set()
                metrics.compute_per_music_second(
                    SERVICE, (time.perf_counter() - started) / max(brief.duration_s, 1e-6)
                )
                return composed

        async with audio_share(self._audio, SERVICE, peer, caller, held):
            # The progress goes to the caller outside the turn, the newest of what it has
            # not taken: written on the turn, a caller that stopped reading had held the turn,
            # nothing composing, until serving.reader_stall_s ended its stream.
            composing = asyncio.ensure_future(compose())
            composing.add_done_callback(lambda done: done.cancelled() or done.exception())
            try:
                while not composing.done():
                    getter = asyncio.ensure_future(progress.get())
                    try:
                        await asyncio.wait({composing, getter},
                                           return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
                    except BaseException:
                        getter.cancel()  # the caller went away: nothing waits for news
                        raise
                    if getter.done():
                        fraction = getter.result()
                        while not progress.empty():
                            fraction = progress.get_nowait()
                        yield generator_pb2.GenerateResponse(
                            every_candidate=True, progress=common_pb2.Progress(
                            stage="composition", fraction=fraction))  # fmt: skip
                    else:
                        getter.cancel()
                musics, ranking = composing.result()
            finally:
                cancellation.over.set()
                composing.cancel()  # (done, it is nothing; else its work stops at a report)
            # The music is the share's: a caller that takes it slowly lets both go.
            delivery = Delivery(held, self._delivery)
            for candidate, music in enumerate(musics):
                for message in _music_messages(candidate, music):
                    delivery.check()
                    yield message
            if ranking:
                yield generator_pb2.GenerateResponse(
                    every_candidate=True, ranking=generator_pb2.CandidateRanking(
                    scores=ranking_to_proto(ranking)))  # fmt: skip
            # Every candidate's piece, as the gateway counts its Score's (the audit line had
            # said 0.0 for every Generate).
            record.music_s = brief.duration_s * len(musics)

    async def Describe(
        self, request: generator_pb2.GeneratorDescribeRequest, context: grpc.aio.ServicerContext
    ) -> generator_pb2.GeneratorDescribeResponse:
        async with observed(SERVICE, "Describe", context):
            self.gate.check(context)
            self.schema.check(request)
            info = self._loaded().describe()
            return generator_pb2.GeneratorDescribeResponse(
                name=info.name, version=info.version, max_duration_s=info.max_duration_s,
                sample_rates=list(info.sample_rates), outputs=list(info.outputs),
                genres=list(info.genres), instruments=list(info.instruments),
                max_candidates=MAX_CANDIDATES, structures=list(info.structures),
                sound=info.sound, sound_advice=info.sound_advice,
            )  # fmt: skip
        raise AssertionError("unreachable: observed() aborts on error")


def _music_messages(
    candidate: int, music: GeneratedMusic
) -> Iterator[generator_pb2.GenerateResponse]:
    yield generator_pb2.GenerateResponse(candidate=candidate, plan=plan_to_proto(music.plan))
    for chunk in audio_chunks(music.audio, music.sample_rate):
        yield generator_pb2.GenerateResponse(candidate=candidate, audio=chunk)
    if music.midi:
        yield generator_pb2.GenerateResponse(candidate=candidate, midi=music.midi)
    for name, stem in music.stems.items():
        for chunk in audio_chunks(stem, music.sample_rate):
            yield generator_pb2.GenerateResponse(
                candidate=candidate, stem=generator_pb2.StemChunk(instrument=name, audio=chunk)
            )
