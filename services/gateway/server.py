"""The gateway as a standalone gRPC service."""

from __future__ import annotations

import asyncio

from services.config import BgmConfig
from services.gateway.servicer import SERVICE, GatewayServicer
from services.gen.bgm.v1 import gateway_pb2_grpc
from services.serving import ServiceBinding


def binding(config: BgmConfig) -> ServiceBinding:
    servicer = GatewayServicer.from_config(config)

    async def ready() -> None:
        await asyncio.to_thread(servicer.sweep_staging)

    return ServiceBinding(SERVICE, gateway_pb2_grpc.add_GatewayServicer_to_server, servicer,
                          ready, close=servicer.close,
                          watch=servicer.watch_dependencies)  # fmt: skip
