"""The gateway as a standalone gRPC service."""

from __future__ import annotations

import asyncio

import grpc

from services.auth import LockedMethods
from services.config import BgmConfig
from services.gateway.servicer import SERVICE, GatewayServicer
from services.gen.bgm.v1 import gateway_pb2_grpc
from services.serving import ServiceBinding


def binding(config: BgmConfig) -> ServiceBinding:
    servicer = GatewayServicer.from_config(config)

    async def ready() -> None:
        await asyncio.to_thread(servicer.sweep_staging)

    interceptors: tuple[grpc.aio.ServerInterceptor, ...] = ()
    if servicer.authenticator is not None:
        interceptors = (LockedMethods(servicer.authenticator, config.auth.open_methods,
                                      f"/{SERVICE}/"),)  # fmt: skip
    return ServiceBinding(SERVICE, gateway_pb2_grpc.add_GatewayServicer_to_server, servicer,
                          ready, close=servicer.close, watch=servicer.watch_dependencies,
                          interceptors=interceptors)  # fmt: skip
