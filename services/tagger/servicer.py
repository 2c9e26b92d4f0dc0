"""The Tagger gRPC servicer: protobuf in, domain calls, protobuf out; no model logic."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import grpc

from services.contract import analysis_to_proto, local_video
from services.gen.bgm.v1 import tagger_pb2, tagger_pb2_grpc
from services.media.sources import SourcePolicy
from services.serving import observed
from services.tagger.backend import AnalysisRequest, TaggerBackend

SERVICE = "bgm.v1.Tagger"


class TaggerServicer(tagger_pb2_grpc.TaggerServicer):
    def __init__(
        self,
        backend: TaggerBackend,
        sources: SourcePolicy,
        max_concurrent: int,
        max_duration_s: float,
    ):
        self.backend = backend
        self.sources = sources
        self.max_duration_s = max_duration_s
        # CPU-bound work: a few at a time in threads; the rest wait their turn.
        self._slots = asyncio.Semaphore(max_concurrent)

    async def Analyze(
        self, request: tagger_pb2.AnalyzeRequest, context: grpc.aio.ServicerContext
    ) -> tagger_pb2.AnalyzeResponse:
        async with observed(SERVICE, "Analyze", context):
            with tempfile.TemporaryDirectory(prefix="bgm-tagger-") as folder:
                video = await asyncio.to_thread(
                    local_video, request.video, self.sources, Path(folder)
                )
                async with self._slots:
                    analysis = await asyncio.to_thread(
                        self.backend.analyze, AnalysisRequest(video, prompt=request.prompt)
                    )
            return tagger_pb2.AnalyzeResponse(analysis=analysis_to_proto(analysis))
        raise AssertionError("unreachable: observed() aborts on error")

    async def Describe(
        self, request: tagger_pb2.TaggerDescribeRequest, context: grpc.aio.ServicerContext
    ) -> tagger_pb2.TaggerDescribeResponse:
        async with observed(SERVICE, "Describe", context):
            info = self.backend.describe()
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
