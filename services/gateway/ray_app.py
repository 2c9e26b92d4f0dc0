"""The gateway as a Ray Serve application: `build_app(args)` wraps the same servicer.

Ray Serve's gRPC proxy carries unary and server-streaming calls only, so this application
serves Gateway.Score (videos by URI or inline bytes), Gateway.Analyze and Gateway.Describe;
Gateway.ScoreUpload, a client stream, is served by the standalone gateway.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from ray import serve
from ray.serve import Application

from services import metrics
from services.gateway.servicer import GatewayServicer
from services.gen.bgm.v1 import gateway_pb2
from services.ray_glue import RayContext, application_settings, check_health
from services.serving import configure_logging, freeze_start_up_heap


@serve.deployment(name="gateway")
class GatewayDeployment:
    def __init__(self, config: dict[str, Any]):
        configure_logging()
        metrics.export_through_ray()
        settings = application_settings(config)
        self.servicer = GatewayServicer.from_config(settings)
        self.servicer.sweep_staging()
        self.settings = settings
        freeze_start_up_heap()

    async def Score(
        self, request: gateway_pb2.ScoreRequest, grpc_context: Any
    ) -> AsyncIterator[gateway_pb2.ScoreResponse]:
        async for message in self.servicer.Score(request, RayContext(grpc_context)):
            yield message

    async def Analyze(
        self, request: gateway_pb2.GatewayAnalyzeRequest, grpc_context: Any
    ) -> gateway_pb2.GatewayAnalyzeResponse:
        return await self.servicer.Analyze(request, RayContext(grpc_context))

    async def Describe(
        self, request: gateway_pb2.GatewayDescribeRequest, grpc_context: Any
    ) -> gateway_pb2.GatewayDescribeResponse:
        return await self.servicer.Describe(request, RayContext(grpc_context))

    def check_health(self) -> None:
        # The gateway's own health: a tagger or generator that does not answer is theirs
        # (Serve replacing the gateway would not mend it), and each call says so.
        check_health(lambda: None, self.settings.serving.poison_file)


def build_app(args: dict[str, Any]) -> Application:
    """args: {"config": <the bgm config as a mapping, as in a --config file>}."""
    return GatewayDeployment.bind(args.get("config", {}))  # type: ignore[attr-defined]
