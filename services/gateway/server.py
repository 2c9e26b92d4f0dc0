"""The gateway as a standalone gRPC service."""

from __future__ import annotations

from services.config import BgmConfig
from services.gateway.servicer import SERVICE, GatewayServicer
from services.gen.bgm.v1 import gateway_pb2_grpc
from services.serving import ServiceBinding


def binding(config: BgmConfig) -> ServiceBinding:
    servicer = GatewayServicer.from_config(config)
    return ServiceBinding(SERVICE, gateway_pb2_grpc.add_GatewayServicer_to_server, servicer,
                          close=servicer.close)  # fmt: skip
