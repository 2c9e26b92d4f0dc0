"""The generator as a Ray Serve application: `build_app(args)` wraps the same servicer.

For a backend that shares model calls between pieces (diffusion), jobs from concurrent
requests are pooled with @serve.batch into one generate_batch call; each caller gets its own
jobs' results back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from ray import serve
from ray.serve import Application

from services import metrics
from services.gen.bgm.v1 import generator_pb2
from services.generator.backend import GenerationJob, JobResult
from services.generator.backends import create_generator_backend
from services.generator.servicer import GeneratorServicer, run_batch
from services.ray_glue import RayContext, application_settings, check_health
from services.serving import configure_logging, freeze_start_up_heap, of_no_request


@serve.deployment(name="generator")
class GeneratorDeployment:
    def __init__(self, config: dict[str, Any]):
        configure_logging()
        metrics.export_through_ray()
        settings = application_settings(config)
        self.backend = create_generator_backend(settings.generator)
        batching = settings.generator.batching
        self._pooled_batch.set_max_batch_size(batching.max_jobs)  # type: ignore[attr-defined]
        self._pooled_batch.set_batch_wait_timeout_s(batching.wait_s)  # type: ignore[attr-defined]
        self.servicer = GeneratorServicer.from_config(
            settings, self.backend, self._pooled if self.backend.describe().batches else None
        )
        self.settings = settings
        freeze_start_up_heap()

    async def _pooled(self, jobs: list[GenerationJob]) -> list[JobResult]:
        return list(await asyncio.gather(*(self._pooled_batch(job) for job in jobs)))

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.05)
    async def _pooled_batch(self, jobs: list[GenerationJob]) -> list[JobResult]:
        # A batch serves several requests: its lines name none. (Serve's batching task is
        # made in the first request's context, and every batch's lines had named that one.
        # A function, not the context variable: Ray pickles the deployment, and a
        # ContextVar cannot be.)
        of_no_request()
        return await asyncio.to_thread(run_batch, self.backend, jobs)

    async def Generate(
        self, request: generator_pb2.GenerateRequest, grpc_context: Any
    ) -> AsyncIterator[generator_pb2.GenerateResponse]:
        async for message in self.servicer.Generate(request, RayContext(grpc_context)):
            yield message

    async def Describe(
        self, request: generator_pb2.GeneratorDescribeRequest, grpc_context: Any
    ) -> generator_pb2.GeneratorDescribeResponse:
        return await self.servicer.Describe(request, RayContext(grpc_context))

    def check_health(self) -> None:
        check_health(self.backend.describe, self.settings.serving.poison_file)


def build_app(args: dict[str, Any]) -> Application:
    """args: {"config": <the bgm config as a mapping, as in a --config file>}."""
    return GeneratorDeployment.bind(args.get("config", {}))  # type: ignore[attr-defined]
