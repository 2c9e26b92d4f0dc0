"""The generator as a standalone gRPC service."""

from __future__ import annotations

import asyncio

from services.auth import gated
from services.config import BgmConfig
from services.gen.bgm.v1 import generator_pb2_grpc
from services.generator.backends import create_generator_backend
from services.generator.servicer import SERVICE, GeneratorServicer
from services.serving import ServiceBinding


def binding(config: BgmConfig) -> ServiceBinding:
    servicer = GeneratorServicer.from_config(config, None)

    async def ready() -> None:
        # The backend (SoundFont, or a model) loads while health checks say NOT_SERVING.
        servicer.backend = await asyncio.to_thread(create_generator_backend, config.generator)

    return ServiceBinding(
        SERVICE,
        generator_pb2_grpc.add_GeneratorServicer_to_server,
        servicer,
        ready,
        interceptors=gated(servicer.gate, SERVICE),
    )
