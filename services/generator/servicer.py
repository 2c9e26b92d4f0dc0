"""The Generator gRPC servicer: protobuf in, domain calls, protobuf out; no model logic."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import AsyncIterator

import grpc

from services import metrics
from services.contract import audio_chunks, brief_from_proto, plan_to_proto
from services.domain import GeneratedMusic, MusicBrief
from services.errors import CancelledError, InvalidInputError, UnavailableError
from services.gen.bgm.v1 import common_pb2, generator_pb2, generator_pb2_grpc
from services.generator.backend import GeneratorBackend
from services.serving import observed

SERVICE = "bgm.v1.Generator"
MAX_CANDIDATES = 4


class GeneratorServicer(generator_pb2_grpc.GeneratorServicer):
    def __init__(self, backend: GeneratorBackend | None, max_concurrent: int):
        # None until the backend has loaded (the server reports NOT_SERVING meanwhile).
        self.backend = backend
        self._slots = asyncio.Semaphore(max_concurrent)

    def _loaded(self) -> GeneratorBackend:
        if self.backend is None:
            raise UnavailableError("the generator is still loading its backend")
        return self.backend

    async def Generate(
        self, request: generator_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[generator_pb2.GenerateResponse]:
        async with observed(SERVICE, "Generate", context):
            candidates = request.candidates or 1
            if not 1 <= candidates <= MAX_CANDIDATES:
                raise InvalidInputError(f"candidates must be 1..{MAX_CANDIDATES}")
            brief = brief_from_proto(request.brief, stems=request.stems)
            self._loaded()
            async with self._slots:
                for candidate in range(candidates):
                    seeded = dataclasses.replace(brief, seed=brief.seed + candidate)
                    async for message in self._one(seeded, candidate, candidates, context):
                        yield message

    async def _one(
        self, brief: MusicBrief, candidate: int, candidates: int, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[generator_pb2.GenerateResponse]:
        loop = asyncio.get_running_loop()
        progress: asyncio.Queue[float] = asyncio.Queue()
        stop = threading.Event()
        # When the caller goes away (cancel, deadline), the generating thread stops at its
        # next progress report (a fraction of a second apart).
        context.add_done_callback(lambda _: stop.set())

        def report(fraction: float) -> None:
            if stop.is_set():
                raise CancelledError("the caller cancelled the request")
            loop.call_soon_threadsafe(progress.put_nowait, fraction)

        started = time.perf_counter()
        backend = self._loaded()

        def generate() -> GeneratedMusic:
            metrics.generation_started()
            try:
                return backend.generate(brief, report)
            finally:
                metrics.generation_ended()

        work = asyncio.ensure_future(asyncio.to_thread(generate))
        try:
            while not work.done():
                getter = asyncio.ensure_future(progress.get())
                await asyncio.wait({work, getter}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    fraction = (candidate + getter.result()) / candidates
                    yield generator_pb2.GenerateResponse(
                        candidate=candidate,
                        progress=common_pb2.Progress(stage="composition", fraction=fraction),
                    )
                else:
                    getter.cancel()
            music: GeneratedMusic = work.result()
        finally:
            stop.set()
        metrics.compute_per_music_second(
            SERVICE, (time.perf_counter() - started) / max(brief.duration_s, 1e-6)
        )
        yield generator_pb2.GenerateResponse(candidate=candidate, plan=plan_to_proto(music.plan))
        for chunk in audio_chunks(music.audio, music.sample_rate):
            yield generator_pb2.GenerateResponse(candidate=candidate, audio=chunk)
        if music.midi:
            yield generator_pb2.GenerateResponse(candidate=candidate, midi=music.midi)
        for name, stem in music.stems.items():
            for chunk in audio_chunks(stem, music.sample_rate):
                yield generator_pb2.GenerateResponse(
                    candidate=candidate,
                    stem=generator_pb2.StemChunk(instrument=name, audio=chunk),
                )

    async def Describe(
        self, request: generator_pb2.GeneratorDescribeRequest, context: grpc.aio.ServicerContext
    ) -> generator_pb2.GeneratorDescribeResponse:
        async with observed(SERVICE, "Describe", context):
            info = self._loaded().describe()
            return generator_pb2.GeneratorDescribeResponse(
                name=info.name, version=info.version, max_duration_s=info.max_duration_s,
                sample_rates=list(info.sample_rates), outputs=list(info.outputs),
                genres=list(info.genres), instruments=list(info.instruments),
                max_candidates=MAX_CANDIDATES,
            )  # fmt: skip
        raise AssertionError("unreachable: observed() aborts on error")
