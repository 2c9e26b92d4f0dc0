"""The gateway as a standalone gRPC service."""

from __future__ import annotations

from services.config import BgmConfig
from services.gateway.servicer import SERVICE, GatewayServicer
from services.gen.bgm.v1 import gateway_pb2_grpc
from services.serving import ServiceBinding
from services.tagger.vocabulary import load_vocabulary


def binding(config: BgmConfig) -> ServiceBinding:
    servicer = GatewayServicer(
        config.gateway,
        load_vocabulary(),
        max_concurrent=config.serving.gateway.max_concurrent,
        max_message_bytes=config.serving.max_message_bytes,
    )
    return ServiceBinding(SERVICE, gateway_pb2_grpc.add_GatewayServicer_to_server, servicer)
