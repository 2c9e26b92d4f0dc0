"""The gateway's channels to the tagger and the generator: retries of the idempotent
methods, and TLS whose client certificate is read again when its files change."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
from collections.abc import Callable
from typing import Any

import grpc

from services.config import ClientTlsConfig
from services.serving import service_channel_options
from services.tls import channel_credentials, channel_tls_files, channel_tls_options
from services.watched_files import WatchedFiles

log = logging.getLogger("bgm")


def _retry_options(service: str, idempotent: list[str], attempts: int) -> list[tuple[str, Any]]:
    """Retry the idempotent methods on UNAVAILABLE, with backoff (gRPC refuses a policy of
    fewer than 2 attempts, so `attempts: 1` has none)."""
    if attempts < 2 or not idempotent:
        return [("grpc.enable_retries", 0)]
    return [("grpc.enable_retries", 1), ("grpc.service_config", json.dumps({
        "methodConfig": [{
            "name": [{"service": service, "method": method} for method in idempotent],
            "retryPolicy": {
                "maxAttempts": attempts,
                "initialBackoff": "0.2s",
                "maxBackoff": "2s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }]
    }))]  # fmt: skip


class ServiceChannel:
    """A stub on a channel to one service. With TLS, the CA, certificate and key files are
    watched: the first call after they change opens a new channel with them (a rotated
    client certificate is shown from then on), and the old channel closes once the calls
    on it are done (at the latest after `retire_after_s`, the longest deadline they have)."""

    def __init__(
        self,
        address: str,
        service: str,
        stub_class: Callable[[grpc.aio.Channel], Any],
        idempotent: list[str],
        attempts: int,
        max_message_bytes: int,
        tls: ClientTlsConfig | None,
        retire_after_s: float,
    ):
        self.address, self.stub_class = address, stub_class
        self.retire_after_s = retire_after_s
        self.options = [*service_channel_options(max_message_bytes),
                        *_retry_options(service, idempotent, attempts),
                        *channel_tls_options(tls)]  # fmt: skip
        self.credentials = (
            WatchedFiles(channel_tls_files(tls), lambda: channel_credentials(tls),
                         f"the TLS files of the channel to {address}")
            if tls is not None else None
        )  # fmt: skip
        self.channel = self._open()
        self._stub = stub_class(self.channel)
        self._retiring: set[asyncio.Task[None]] = set()

    def _open(self) -> grpc.aio.Channel:
        if self.credentials is None:
            return grpc.aio.insecure_channel(self.address, options=self.options)
        return grpc.aio.secure_channel(self.address, self.credentials.value, options=self.options)

    @property
    def stub(self) -> Any:
        self._renew()
        return self._stub

    def serialized_stream(self, method: str, response: Any) -> grpc.aio.UnaryStreamMultiCallable:
        """The server-streaming `method` ("/package.Service/Method"), called with its request
        already serialized (a long one is serialized off the event loop), answering
        `response` messages."""
        self._renew()
        return self.channel.unary_stream(method, response_deserializer=response.FromString)

    def _renew(self) -> None:
        if self.credentials is not None and self.credentials.reloaded() is not None:
            retired, self.channel = self.channel, self._open()
            self._stub = self.stub_class(self.channel)
            # In a context of its own: made during a request, it is no part of it.
            closing = retired.close(self.retire_after_s)
            loop = asyncio.get_running_loop()
            task = loop.create_task(closing, context=contextvars.Context())
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    async def close(self) -> None:
        for task in list(self._retiring):
            task.cancel()
        await self.channel.close()
