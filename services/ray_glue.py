"""What the three Ray Serve applications share: the Ray side of a gRPC call.

Ray Serve's gRPC proxy hands each deployment method the request and a RayServegRPCContext.
The servicers were written for grpc.aio; this adapter gives them the part of a grpc.aio
context they use, so the same servicer (and backend) runs under both. No model logic here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc

from services.config import BgmConfig, load_config


class RayContext:
    """The grpc.aio ServicerContext methods the servicers call, on a Ray gRPC context."""

    def __init__(self, ray_context: Any):
        self._context = ray_context

    async def abort(
        self, code: grpc.StatusCode, details: str, trailing_metadata: Sequence[Any] = ()
    ) -> None:
        # Ray's proxy answers with the code, details and trailing metadata set here when
        # the method raises.
        self._context.set_code(code)
        self._context.set_details(details)
        if trailing_metadata:
            self._context.set_trailing_metadata(list(trailing_metadata))
        raise grpc.aio.AbortError(details)

    def code(self) -> grpc.StatusCode | None:
        return self._context.code()

    def set_trailing_metadata(self, trailing_metadata: Sequence[Any]) -> None:
        self._context.set_trailing_metadata(list(trailing_metadata))

    async def send_initial_metadata(self, initial_metadata: Sequence[Any]) -> None:
        # Ray's proxy sends the headers itself; the id is in the trailing metadata.
        return None

    def invocation_metadata(self) -> Sequence[Any]:
        return list(self._context.invocation_metadata())

    def peer(self) -> str:
        # The caller as Ray's proxy saw it.
        return str(self._context.peer())

    def time_remaining(self) -> float | None:
        # Ray's proxy keeps the deadline; the replica's task is cancelled when it passes.
        return None

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        # Ray cancels the replica's task when the caller goes away; the servicer's own
        # cleanup (finally blocks) stops the work then.
        return None


def check_health(describe: Callable[[], object], poison: Path | None) -> None:
    """A replica's health check: the backend must answer, and an operator's (or a test's)
    poison file marks the replica broken. Serve replaces a replica whose check raises."""
    describe()
    if poison is not None and poison.exists():
        raise RuntimeError(f"unhealthy: {poison} exists")


def _merged(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merged(result[key], value)
        else:
            result[key] = value
    return result


def application_settings(args_config: dict[str, Any]) -> BgmConfig:
    """The config a Ray application runs with: the file BGM_CONFIG names (a ConfigMap in
    Kubernetes), if any, with the application's args from the Serve config merged over it."""
    base = load_config().model_dump(mode="json", exclude_unset=True)
    return BgmConfig.model_validate(_merged(base, args_config))
