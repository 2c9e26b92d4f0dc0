"""Who is calling, and what their tenant may spend.

A caller shows a bearer token in the `authorization` metadata: an API key (the server keeps
only its SHA-256, with the tenant it belongs to) or a JWT signed by a key of a local JWKS,
with the configured issuer and audience and an unexpired `exp`; the tenant is the key's, or
the token's tenant claim. Each tenant has its limits: requests at once, music seconds per
hour, the longest video, candidates. The tagger and the generator may accept only the
gateway, by a shared service token.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import yaml

from services.config import AuthConfig, TenantLimits, TlsConfig
from services.errors import ConfigError, ResourceExhaustedError, UnauthenticatedError
from services.serving import RunningRequests
from services.watched_files import WatchedFiles

log = logging.getLogger("bgm")

# The ledger forgets idle tenants once it holds this many (and then at twice what is left).
LEDGER_SWEEP_AT = 1024
# What may name a tenant (see tenant_name).
TENANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

Metadata = Sequence[tuple[str, Any]]


def bearer_token(metadata: Metadata) -> str | None:
    for key, value in metadata:
        if key.lower() == "authorization":
            text = value.decode() if isinstance(value, bytes) else str(value)
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


@dataclass(frozen=True)
class Caller:
    tenant: str


def tenant_name(name: str) -> bool:
    """Whether `name` can name a tenant: a tenant's files live in a folder of that name under
    every root, so it must be one plain path component (a JWT claim of "/" or "../.." would
    have moved a tenant's roots to the filesystem's)."""
    return TENANT_NAME.fullmatch(name) is not None


def _api_keys(path: Path) -> dict[str, str]:
    try:
        entries = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not YAML: {error}") from None
    # An empty file is what a rewrite looks like before its first byte: taken for a list of
    # no keys, it had revoked every key until the writer finished. Revoking them all is `[]`.
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: expected a list of {{tenant: NAME, sha256: HEX}} "
                          "([] for none)")  # fmt: skip
    try:
        pairs = [(str(e["sha256"]).lower(), str(e["tenant"])) for e in entries]
    except (TypeError, KeyError):
        raise ConfigError(f"{path}: expected a list of {{tenant: NAME, sha256: HEX}}") from None
    keys: dict[str, str] = {}
    for digest, tenant in pairs:
        if not tenant_name(tenant):
            raise ConfigError(f"{path}: {tenant!r} is not a tenant name ({TENANT_NAME.pattern})")
        # A digest no key can have, or one given twice (for two tenants, the last had won),
        # had been taken without a word.
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ConfigError(f"{path}: {digest[:16]!r}... is not a SHA-256 (64 hex digits)")
        if digest in keys:
            raise ConfigError(f"{path}: the SHA-256 {digest[:16]}... is given twice")
        keys[digest] = tenant
    return keys


def _jwks(path: Path) -> list[Any]:
    """The JWKS's keys (PyJWT's PyJWK)."""
    import jwt

    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
            raise ValueError("a JSON object whose 'keys' lists the keys")
        if not data["keys"]:
            # Every key revoked. PyJWT refuses an empty set, and a set that cannot be read
            # keeps the last good keys: the revoked keys had gone on signing for tenants.
            log.warning("%s holds no keys: every JWT is refused", path)
            return []
        return list(jwt.PyJWKSet.from_dict(data).keys)
    # PyJWT's own errors, and those it lets through for a key of no algorithm it knows
    # (NotImplementedError for alg 'none', TypeError for a key that is not an object): each
    # had failed every JWT call as INTERNAL, with a traceback, until the file was mended.
    except (jwt.PyJWTError, ValueError, TypeError, KeyError, NotImplementedError) as error:
        why = str(error) or "a key of an algorithm PyJWT does not verify"
        raise ConfigError(f"{path} is not a usable JWKS: {why}") from None


class Authenticator:
    """The tenant a call acts for, from its bearer token."""

    def __init__(self, config: AuthConfig):
        if not (config.api_keys_file or config.jwks_file):
            raise ConfigError("auth is enabled but neither api_keys_file nor jwks_file is set")
        if config.jwks_file and not (config.jwt_issuer and config.jwt_audience):
            # Without them a token with no issuer or audience had been taken: any token
            # the keys signed, for any service, from any issuer.
            raise ConfigError("auth.jwks_file needs auth.jwt_issuer and auth.jwt_audience")
        # A limit for a name no key or token can carry would never be met.
        unnamed = [name for name in config.tenants if not tenant_name(name)]
        if unnamed:
            raise ConfigError(f"auth.tenants: {', '.join(map(repr, unnamed))} is not a tenant "
                              f"name ({TENANT_NAME.pattern})")  # fmt: skip
        self.config = config
        keys, jwks = config.api_keys_file, config.jwks_file
        self._keys = WatchedFiles([keys], lambda: _api_keys(keys), "the API keys") if keys else None
        self._jwks = WatchedFiles([jwks], lambda: _jwks(jwks), "the JWKS") if jwks else None

    def caller(self, metadata: Metadata) -> Caller:
        token = bearer_token(metadata)
        if token is None:
            raise UnauthenticatedError(
                "this call needs a bearer token: metadata 'authorization: Bearer <API key or "
                "JWT>'", error_reason="NO_CREDENTIALS",
            )  # fmt: skip
        if self._keys is not None:
            digest = hashlib.sha256(token.encode()).hexdigest()
            for known, tenant in self._keys.current().items():
                if hmac.compare_digest(known, digest):
                    return Caller(tenant)
        if self._jwks is not None and token.count(".") == 2:
            return Caller(self._jwt_tenant(token))
        raise UnauthenticatedError("the bearer token is not a known API key or a valid JWT")

    def _jwt_tenant(self, token: str) -> str:
        import jwt

        assert self._jwks is not None
        keys = self._jwks.current()
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            # A token naming no key is tried with each (only the first had been, so a key
            # added to rotate to was refused until the old one left the set).
            named = [key for key in keys if key.key_id == kid] if kid else keys
            if not named:
                raise UnauthenticatedError(
                    f"the JWT is not accepted: the JWKS has no key {kid!r}" if kid
                    else "the JWT is not accepted: the JWKS holds no keys"
                )  # fmt: skip
            for key in named:
                try:
                    claims = jwt.decode(
                        token, key.key, algorithms=[key.algorithm_name],
                        audience=self.config.jwt_audience, issuer=self.config.jwt_issuer,
                        options={"require": ["exp"]}, leeway=self.config.jwt_leeway_s,
                    )  # fmt: skip
                    break
                except (jwt.InvalidSignatureError, jwt.InvalidAlgorithmError) as error:
                    refused = error
            else:
                raise refused
        except jwt.PyJWTError as error:
            raise UnauthenticatedError(f"the JWT is not accepted: {error}") from None
        tenant = claims.get(self.config.tenant_claim)
        if not isinstance(tenant, str) or not tenant:
            raise UnauthenticatedError(f"the JWT names no tenant ({self.config.tenant_claim!r})")
        if not tenant_name(tenant):
            raise UnauthenticatedError(
                f"the JWT's {self.config.tenant_claim!r} is not a tenant name: letters, digits, "
                "'.', '_' and '-', at most 64, starting with a letter or digit"
            )
        return tenant


class TenantLedger:
    """What each tenant is spending: requests running, music delivered in the last hour."""

    HOUR_S = 3600.0

    def __init__(self, config: AuthConfig):
        self.config = config
        self._running = RunningRequests()
        self._music: dict[str, deque[tuple[float, float]]] = {}
        # When the ledger next forgets the tenants with nothing booked in the last hour (it
        # holds one queue for every tenant a JWT has named).
        self._sweep_at = LEDGER_SWEEP_AT
        self._lock = threading.Lock()

    def limits(self, tenant: str) -> TenantLimits:
        return self.config.tenants.get(tenant, self.config.default_limits)

    def running(self, tenant: str) -> contextlib.AbstractContextManager[None]:
        most = self.limits(tenant).max_concurrent
        return self._running.slot(tenant, most, lambda _: ResourceExhaustedError(
            f"tenant {tenant} already has {most} requests running",
            error_reason="TENANT_BUSY", retry_after_s=1.0,
        ))  # fmt: skip

    def check_length(self, tenant: str, video_s: float) -> None:
        """A video longer than the tenant may score is refused (analysed as well: Analyze
        had taken any length, and kept the tagger busy with it)."""
        most = self.limits(tenant).max_video_s
        if video_s > most:
            raise ResourceExhaustedError(
                f"tenant {tenant} may score videos of at most {most:g} s; this one lasts "
                f"{video_s:.1f} s", error_reason="TENANT_VIDEO_TOO_LONG",
            )  # fmt: skip

    def reserve(self, tenant: str, video_s: float, candidates: int) -> float:
        """Check the request against the tenant's limits and book its music; returns the
        seconds booked (give them back with `refund` if the request fails)."""
        limits = self.limits(tenant)
        self.check_length(tenant, video_s)
        if candidates > limits.max_candidates:
            raise ResourceExhaustedError(
                f"tenant {tenant} may ask for at most {limits.max_candidates} candidates",
                field="controls.candidates", error_reason="TENANT_CANDIDATES",
            )  # fmt: skip
        music_s = video_s * max(candidates, 1)
        now = time.monotonic()
        with self._lock:
            if len(self._music) >= self._sweep_at:
                self._forget_idle(now)
            booked = self._music.setdefault(tenant, deque())
            while booked and booked[0][0] <= now - self.HOUR_S:
                booked.popleft()
            used = sum(seconds for _, seconds in booked)
            if used + music_s > limits.music_s_per_hour:
                # When enough of the hour's music has aged out for this request to fit.
                needed, freed, wait = used + music_s - limits.music_s_per_hour, 0.0, 0.0
                for at, seconds in booked:
                    freed += seconds
                    wait = at + self.HOUR_S - now
                    if freed >= needed:
                        break
                raise ResourceExhaustedError(
                    f"tenant {tenant} has used {used:.0f} of its {limits.music_s_per_hour:g} s "
                    f"of music this hour; this request needs {music_s:.0f} s",
                    error_reason="TENANT_QUOTA", retry_after_s=max(1.0, wait),
                )  # fmt: skip
            booked.append((now, music_s))
        return music_s

    def _forget_idle(self, now: float) -> None:
        """Drop the tenants with nothing booked in the last hour (under the lock)."""
        idle = [name for name, booked in self._music.items()
                if not booked or booked[-1][0] <= now - self.HOUR_S]  # fmt: skip
        for name in idle:
            del self._music[name]
        self._sweep_at = max(LEDGER_SWEEP_AT, 2 * len(self._music))

    def refund(self, tenant: str, music_s: float) -> None:
        with self._lock:
            booked = self._music.get(tenant)
            if booked:
                for index in range(len(booked) - 1, -1, -1):
                    if booked[index][1] == music_s:
                        del booked[index]
                        return


def service_token(config: AuthConfig) -> str | None:
    """The token the gateway shows the tagger and the generator (None: not locked down)."""
    if config.service_token_env is None:
        return None
    token = os.environ.get(config.service_token_env)
    if not token:
        raise ConfigError(f"auth.service_token_env names {config.service_token_env}, which is "
                          "not set")  # fmt: skip
    return token


@dataclass(frozen=True)
class ServiceGate:
    """The tagger's and generator's gate, when configured: only the gateway passes, by the
    service token it shows and/or the common name on its client certificate (mutual TLS)."""

    token: str | None = None
    client_names: tuple[str, ...] = ()

    def check_token(self, metadata: Sequence[tuple[str, Any]]) -> None:
        """Refuse a call whose `metadata` does not carry the service token (where one is set)."""
        if self.token is not None:
            shown = bearer_token(metadata)
            if shown is None or not hmac.compare_digest(shown.encode(), self.token.encode()):
                raise UnauthenticatedError("only the gateway may call this service",
                                           error_reason="NOT_THE_GATEWAY")  # fmt: skip

    def check(self, context: Any) -> None:
        self.check_token(context.invocation_metadata() or ())
        if self.client_names:
            auth = context.auth_context() if hasattr(context, "auth_context") else {}
            names = {n.decode() for n in auth.get("x509_common_name", [])}
            if not names & set(self.client_names):
                raise UnauthenticatedError(
                    "only the gateway may call this service (its client certificate)",
                    error_reason="NOT_THE_GATEWAY",
                )


def service_gate(config: AuthConfig, tls: TlsConfig | None) -> ServiceGate:
    return ServiceGate(service_token(config), tuple(tls.client_names) if tls else ())


class GatedMethods(grpc.aio.ServerInterceptor):
    """The tagger's and generator's API refused before its request is read to a caller
    without the service token (their handlers still check the gate whole): a tagger's
    Analyze carrying 60 MB inline had been read, and held, before its handler refused it
    (eight at once: +221 MB; a hostile auth review)."""

    def __init__(self, gate: ServiceGate, api: str):
        self.gate = gate
        self.api = api

    async def intercept_service(self, continuation: Any, details: Any) -> Any:
        handler = await continuation(details)
        if handler is None or not details.method.startswith(self.api):
            return handler
        try:
            self.gate.check_token(details.invocation_metadata or ())
        except UnauthenticatedError as error:
            return _refusing_unread(handler, error, details.method)
        return handler


def gated(gate: ServiceGate, service: str) -> tuple[grpc.aio.ServerInterceptor, ...]:
    """The interceptors of a service behind `gate`: GatedMethods where it asks for a token."""
    return (GatedMethods(gate, f"/{service}/"),) if gate.token is not None else ()


class LockedMethods(grpc.aio.ServerInterceptor):
    """The server's other services (health, reflection) need a token too, but for the
    methods listed open. The API's own methods are refused here too, before their request is
    read, and counted and audited as their servicer counts them: a Score carrying 60 MB
    inline had been read whole, and held, before its servicer found it had no token."""

    def __init__(self, authenticator: Authenticator, open_methods: Sequence[str], api: str):
        self.authenticator = authenticator
        self.open = set(open_methods)
        self.api = api

    async def intercept_service(self, continuation: Any, details: Any) -> Any:
        handler = await continuation(details)
        if handler is None or details.method in self.open:
            return handler
        try:
            self.authenticator.caller(details.invocation_metadata or ())
        except UnauthenticatedError as error:
            if details.method.startswith(self.api):
                return _refusing_unread(handler, error, details.method)
            return _refusing(handler, str(error))
        return handler


def _refusing_unread(handler: Any, error: UnauthenticatedError, method: str) -> Any:
    """A handler that answers `error` without reading the request: a request-streaming one
    (gRPC reads a single request before it calls its handler, and one that streams only as
    the handler asks), through `observed` for the metrics and the audit line."""
    from services.serving import UNAUTHENTICATED_TENANT, observed

    service, _, name = method.strip("/").partition("/")

    async def refuse(requests: Any, context: Any) -> Any:
        async with observed(service, name, context) as record:
            record.tenant_label = UNAUTHENTICATED_TENANT
            raise error

    async def refuse_stream(requests: Any, context: Any) -> Any:
        async with observed(service, name, context) as record:
            record.tenant_label = UNAUTHENTICATED_TENANT
            raise error
        yield  # an async generator, as streaming handlers are

    codecs = {"request_deserializer": handler.request_deserializer,
              "response_serializer": handler.response_serializer}  # fmt: skip
    if handler.unary_unary or handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(refuse, **codecs)
    return grpc.stream_stream_rpc_method_handler(refuse_stream, **codecs)


def _refusing(handler: Any, message: str) -> Any:
    """A handler of the same kind as `handler` that answers UNAUTHENTICATED."""

    async def refuse(request: Any, context: Any) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    async def refuse_stream(request: Any, context: Any) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
        yield  # an async generator, as streaming handlers are

    codecs = {"request_deserializer": handler.request_deserializer,
              "response_serializer": handler.response_serializer}  # fmt: skip
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(refuse, **codecs)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(refuse_stream, **codecs)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(refuse, **codecs)
    return grpc.stream_stream_rpc_method_handler(refuse_stream, **codecs)
