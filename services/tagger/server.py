"""The tagger as a standalone gRPC service."""

from __future__ import annotations

import asyncio

from services.auth import gated
from services.config import BgmConfig
from services.gen.bgm.v1 import tagger_pb2_grpc
from services.serving import ServiceBinding
from services.tagger.backends import create_tagger_backend
from services.tagger.servicer import SERVICE, TaggerServicer


def binding(config: BgmConfig) -> ServiceBinding:
    servicer = TaggerServicer.from_config(config, None)

    async def ready() -> None:
        # The backend (vocabulary, or a vision-language model) loads off the event loop while
        # health checks say NOT_SERVING.
        await asyncio.to_thread(servicer.sweep_scratch)
        backend = await asyncio.to_thread(create_tagger_backend, config.tagger)
        await asyncio.to_thread(backend.warm_up)
        servicer.backend = backend

    return ServiceBinding(SERVICE, tagger_pb2_grpc.add_TaggerServicer_to_server, servicer, ready,
                          interceptors=gated(servicer.gate, SERVICE))  # fmt: skip
