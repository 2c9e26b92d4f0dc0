"""`bgm serve`: the services as standalone grpc.aio servers on localhost ports."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from services.config import BgmConfig, Endpoint
from services.errors import ConfigError
from services.media.sources import inside_roots
from services.serving import HostedServer, configure_logging, freeze_start_up_heap, run_servers
from services.tls import check_plaintext, is_loopback, server_credentials

SERVICES = ("tagger", "generator", "gateway")


def serve(config: BgmConfig, which: str, on_started: Callable[[], None] | None = None) -> None:
    if which == "all":
        check_tagger_reads_gateway_files(config)
        check_gateway_reaches_its_own(config)
    from services.gateway.server import binding as gateway_binding
    from services.generator.server import binding as generator_binding
    from services.tagger.server import binding as tagger_binding

    builders = {"tagger": tagger_binding, "generator": generator_binding,
                "gateway": gateway_binding}  # fmt: skip
    names = SERVICES if which == "all" else (which,)
    configure_logging()

    async def main() -> None:
        servers, metrics = [], []
        for name in names:
            endpoint = getattr(config.serving, name)
            check_plaintext(name, endpoint)
            check_gated(name, endpoint, config)
            credentials = server_credentials(endpoint.tls) if endpoint.tls else None
            servers.append(HostedServer([builders[name](config)],
                                        f"{endpoint.host}:{endpoint.port}", config.serving,
                                        credentials))  # fmt: skip
            # An IPv6 address is written in brackets for gRPC ("[::]"); the metrics server
            # takes it bare.
            metrics_host = (endpoint.metrics_host or endpoint.host).strip("[]")
            # One process has one registry: `serve all` serves it once, on the gateway's
            # metrics port (the `service` label tells the services apart).
            if which != "all" or name == "gateway":
                metrics.append((metrics_host, endpoint.metrics_port))
            # The port bound: with --port 0 the system chose it (it had been logged as 0).
            logging.getLogger("bgm").info("%s on %s:%d", name, endpoint.host, servers[-1].port)
        await run_servers(servers, metrics, config.serving, on_started)

    asyncio.run(main())


def check_gated(name: str, endpoint: Endpoint, config: BgmConfig) -> None:
    """With auth on, a tagger or generator that anyone beyond this machine may call (no
    service token, no client certificate names) is said at start-up: it had answered any
    caller without a word, past the gateway's tenants and quotas."""
    tls = endpoint.tls
    gated = config.auth.service_token_env or (tls is not None and tls.client_names)
    if name == "gateway" or not config.auth.enabled or gated or is_loopback(endpoint.host):
        return
    logging.getLogger("bgm").warning(
        "auth is on, but the %s on %s answers any caller that reaches it: set "
        "auth.service_token_env, or serving.%s.tls.client_ca_file and client_names, or "
        "keep it off the network", name, endpoint.host, name,
    )  # fmt: skip


def check_tagger_reads_gateway_files(config: BgmConfig) -> None:
    """Where the tagger serves beside the gateway: every folder the gateway hands it files
    from (its staging folder and its file roots; none where a shared store, staging_url,
    carries every video) must be one the tagger may read, else every upload fails, named a
    permission the caller lacks."""
    gateway = config.gateway
    if gateway.staging_url:
        return
    handed = [gateway.staging_dir, *gateway.sources.file_roots]
    roots = config.tagger.sources.file_roots
    unread = [str(folder) for folder in handed if not inside_roots(folder, roots)]
    if unread:
        raise ConfigError(
            f"the tagger may not read what the gateway hands it from {', '.join(unread)}: add "
            f"to tagger.sources.file_roots ({', '.join(map(str, roots)) or 'none'}), which "
            "must hold gateway.staging_dir and gateway.sources.file_roots"
        )


def check_gateway_reaches_its_own(config: BgmConfig) -> None:
    """Under `serve all` the gateway calls the tagger and the generator this process serves:
    with their ports moved and its addresses left at the defaults, it had reported
    NOT_SERVING, or called whatever else listened there."""
    for name in ("tagger", "generator"):
        port = getattr(config.serving, name).port
        address = getattr(config.gateway, f"{name}_address")
        if port and address.rpartition(":")[2] != str(port):
            raise ConfigError(f"gateway.{name}_address is {address}, but this process serves "
                              f"the {name} on port {port} (serving.{name}.port): set "
                              f"gateway.{name}_address to reach it")  # fmt: skip


# The address the in-process services listen on (loopback only, any free port).
IN_PROCESS_HOST = "127.0.0.1"


@contextlib.asynccontextmanager
async def in_process_services(config: BgmConfig) -> AsyncIterator[str]:
    """The tagger, generator and gateway in this process and event loop, on free loopback
    ports (plaintext: nothing leaves the machine); yields the gateway's address and stops
    all three, the gateway first, when done."""
    from services.gateway.server import binding as gateway_binding
    from services.generator.server import binding as generator_binding
    from services.tagger.server import binding as tagger_binding

    check_tagger_reads_gateway_files(config)
    serving = config.serving
    tagger = HostedServer([tagger_binding(config)], f"{IN_PROCESS_HOST}:0", serving)
    generator = HostedServer([generator_binding(config)], f"{IN_PROCESS_HOST}:0", serving)
    reaching = config.gateway.model_copy(update={
        "tagger_address": f"{IN_PROCESS_HOST}:{tagger.port}",
        "generator_address": f"{IN_PROCESS_HOST}:{generator.port}",
        "tagger_tls": None, "generator_tls": None})  # fmt: skip
    local = config.model_copy(update={"gateway": reaching})
    gateway = HostedServer([gateway_binding(local)], f"{IN_PROCESS_HOST}:0", serving)
    servers = [tagger, generator, gateway]
    for server in servers:
        await server.start()
    freeze_start_up_heap()
    try:
        yield f"{IN_PROCESS_HOST}:{gateway.port}"
    finally:
        for server in reversed(servers):
            await server.stop(config.serving.grace_s)
