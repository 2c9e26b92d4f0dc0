"""The tagger as a standalone gRPC service."""

from __future__ import annotations

import asyncio

from services.config import BgmConfig
from services.gen.bgm.v1 import tagger_pb2_grpc
from services.serving import ServiceBinding
from services.tagger.backend import create_tagger_backend
from services.tagger.servicer import SERVICE, TaggerServicer


def binding(config: BgmConfig) -> ServiceBinding:
    backend = create_tagger_backend(config.tagger)
    servicer = TaggerServicer(
        backend,
        config.tagger.sources,
        max_concurrent=config.serving.tagger.max_concurrent,
        max_duration_s=config.tagger.limits.max_duration_s,
    )

    async def ready() -> None:
        # Loading the vocabulary (and so the backend's data) before SERVING.
        await asyncio.to_thread(backend.describe)

    return ServiceBinding(SERVICE, tagger_pb2_grpc.add_TaggerServicer_to_server, servicer, ready)
