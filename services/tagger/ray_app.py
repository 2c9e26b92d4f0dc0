"""The tagger as a Ray Serve application: `build_app(args)` wraps the same servicer."""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve import Application

from services import metrics
from services.gen.bgm.v1 import tagger_pb2
from services.ray_glue import RayContext, application_settings, check_health
from services.serving import configure_logging, freeze_start_up_heap
from services.tagger.backends import create_tagger_backend
from services.tagger.servicer import TaggerServicer


@serve.deployment(name="tagger")
class TaggerDeployment:
    def __init__(self, config: dict[str, Any]):
        configure_logging()
        metrics.export_through_ray()
        settings = application_settings(config)
        self.backend = create_tagger_backend(settings.tagger)
        self.backend.warm_up()
        self.servicer = TaggerServicer.from_config(settings, self.backend)
        self.servicer.sweep_scratch()
        self.settings = settings
        freeze_start_up_heap()

    async def Analyze(
        self, request: tagger_pb2.AnalyzeRequest, grpc_context: Any
    ) -> tagger_pb2.AnalyzeResponse:
        return await self.servicer.Analyze(request, RayContext(grpc_context))

    async def Describe(
        self, request: tagger_pb2.TaggerDescribeRequest, grpc_context: Any
    ) -> tagger_pb2.TaggerDescribeResponse:
        return await self.servicer.Describe(request, RayContext(grpc_context))

    def check_health(self) -> None:
        check_health(self.backend.describe, self.settings.serving.poison_file)


def build_app(args: dict[str, Any]) -> Application:
    """args: {"config": <the bgm config as a mapping, as in a --config file>}."""
    return TaggerDeployment.bind(args.get("config", {}))  # type: ignore[attr-defined]
