"""The Tagger gRPC servicer: protobuf in, domain calls, protobuf out; no model logic."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Self

import grpc

from services import metrics
from services.auth import ServiceGate, service_gate
from services.config import BgmConfig, PeerLimit, RequestLimits
from services.contract import analysis_to_proto, local_video
from services.edge import EdgeSchema
from services.errors import UnavailableError
from services.gen.bgm.v1 import tagger_pb2, tagger_pb2_grpc
from services.media.sources import SourcePolicy
from services.scratch import scratch_folder, sweep
from services.serving import (
    Cancellation,
    PerPeerLimit,
    callers_of,
    observed,
    sliced_turns,
    turn_keeper,
)
from services.tagger.backend import AnalysisRequest, TaggerBackend

SERVICE = "bgm.v1.Tagger"
# The scratch folders' owner, for the start-up sweep.
SCRATCH_OWNER = "tagger"


class TaggerServicer(tagger_pb2_grpc.TaggerServicer):
    def __init__(
        self,
        backend: TaggerBackend | None,
        sources: SourcePolicy,
        scratch_dir: Path,
        limits: RequestLimits,
        max_concurrent: int,
        max_duration_s: float,
        gate: ServiceGate,
        turn_slice_s: float | None = None,
        peer_limit: PeerLimit | None = None,
    ):
        # Configured: only the gateway is served.
        self.gate = gate
        self.schema = EdgeSchema(limits)
        # None until the backend has loaded (the server reports NOT_SERVING meanwhile).
        self.backend = backend
        self.sources = sources
        self.scratch_dir = scratch_dir
        self.max_duration_s = max_duration_s
        # CPU-bound work: a few at a time in threads; the rest wait their turn (FairTurns),
        # and a long analysis steps aside for another caller after turn_slice_s (None: never).
        self._turns, self._workers = sliced_turns(max_concurrent, "tagger")
        self._turn_slice_s = turn_slice_s
        # What one caller may have in flight here, waiting or running (serving.peer).
        self._peers = PerPeerLimit(peer_limit or PeerLimit())

    @classmethod
    def from_config(cls, config: BgmConfig, backend: TaggerBackend | None) -> Self:
        """The tagger as the config describes it (standalone server and Ray app alike)."""
        return cls(backend, config.tagger.sources, config.tagger.scratch_dir, config.limits,
                   max_concurrent=config.serving.tagger.max_concurrent,
                   max_duration_s=config.tagger.limits.max_duration_s,
                   gate=service_gate(config.auth, config.serving.tagger.tls),
                   turn_slice_s=config.serving.tagger.turn_slice_s,
                   peer_limit=config.serving.peer)  # fmt: skip

    def sweep_scratch(self) -> None:
        """Remove the folders that killed taggers on this host left behind."""
        sweep(self.scratch_dir, SCRATCH_OWNER, "tagger.scratch_dir")

    def _loaded(self) -> TaggerBackend:
        if self.backend is None:
            raise UnavailableError("the tagger is still loading its backend")
        return self.backend

    async def _video(self, request: tagger_pb2.AnalyzeRequest, folder: Path) -> Path:
        """The request's video as a local file (in `folder` unless it is an allowed one)."""
        return await local_video(request.video, self.sources, folder, self.sources.max_bytes)

    async def Analyze(
        self, request: tagger_pb2.AnalyzeRequest, context: grpc.aio.ServicerContext
    ) -> tagger_pb2.AnalyzeResponse:
        async with observed(SERVICE, "Analyze", context):
            self.gate.check(context)
            self.schema.check(request)
            backend = self._loaded()
            with (
                self._peers.held(context, request),
                scratch_folder(self.scratch_dir, SCRATCH_OWNER) as folder,
            ):
                # A download waits for its source before it waits for a turn (a slow source
                # holds no worker); inline bytes are written to scratch only on their turn
                # (30 uploads of 60 MB waiting had all been written to scratch at once).
                inline = request.video.WhichOneof("source") == "data"
                video = None if inline else await self._video(request, folder)
                # When the caller goes away, the analysis stops at its next progress report
                # (at most 50 ms of decoding apart).
                cancellation = Cancellation(context)
                asked = time.perf_counter()
                async with self._turns.turn(*callers_of(context)) as turn:
                    metrics.turn_waited(SERVICE, time.perf_counter() - asked)
                    video = video or await self._video(request, folder)
                    slice_s = self._turn_slice_s
                    report = (cancellation.check if slice_s is None else turn_keeper(
                        turn, asyncio.get_running_loop(), slice_s, cancellation.check))  # fmt: skip
                    analysis = await cancellation.in_thread(
                        backend.analyze,
                        AnalysisRequest(video, prompt=request.prompt,
                                        listen=not request.skip_speech),
                        report,
                        workers=self._workers,
                    )  # fmt: skip
            return tagger_pb2.AnalyzeResponse(analysis=analysis_to_proto(analysis))
        raise AssertionError("unreachable: observed() aborts on error")

    async def Describe(
        self, request: tagger_pb2.TaggerDescribeRequest, context: grpc.aio.ServicerContext
    ) -> tagger_pb2.TaggerDescribeResponse:
        async with observed(SERVICE, "Describe", context):
            self.gate.check(context)
            self.schema.check(request)
            info = self._loaded().describe()
            vocabulary = info.vocabulary
            return tagger_pb2.TaggerDescribeResponse(
                name=info.name,
                version=info.version,
                vocabulary=tagger_pb2.Vocabulary(
                    genres=list(vocabulary.genres),
                    moods=list(vocabulary.moods),
                    instruments=list(vocabulary.instruments),
                    tonics=list(vocabulary.tonics),
                    modes=list(vocabulary.modes),
                ),
                max_duration_s=self.max_duration_s,
            )
        raise AssertionError("unreachable: observed() aborts on error")
