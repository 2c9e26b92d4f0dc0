"""What every standalone gRPC service shares: errors to status codes, metrics, health,
reflection, message limits and a graceful stop on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import errno
import functools
import gc
import inspect
import ipaddress
import json
import logging
import re
import signal
import socket
import threading
import time
import urllib.parse
import uuid
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Sequence,
)
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import Any, TypeVar
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2, status_pb2
from grpc._cython import cygrpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import make_wsgi_app

from services import metrics
from services.config import GATEWAY_API, DeliveryLimit, PeerLimit, ServingConfig
from services.errors import (
    BgmError,
    CallerStalledError,
    CancelledError,
    DeadlineExceededError,
    DownstreamError,
    InvalidInputError,
    ResourceExhaustedError,
    UnavailableError,
)

log = logging.getLogger("bgm")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s%(request)s"
# The id of the request being served where a line is logged (its audit line's request_id),
# in its task and the threads it hands work to (`in_request`).
CURRENT_REQUEST: contextvars.ContextVar[str] = contextvars.ContextVar("bgm_request", default="")


class RequestOfLine(logging.Filter):
    """Names the request a line was logged for, after the line (` (request <id>)`): a
    warning any caller can cause (a damaged audio track's) had named none. Not on the audit
    log's lines, whose JSON holds it."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = CURRENT_REQUEST.get()
        named = request and not record.name.startswith(audit_log.name)
        record.request = f" (request {request})" if named else ""
        return True


def of_no_request() -> None:
    """The current task serves no one request (a batch of several): its lines name none."""
    CURRENT_REQUEST.set("")


def in_request(function: Callable[..., T], *args: Any) -> Callable[[], T]:
    """`function(*args)`, to run in another thread as part of the current request (its lines
    name it): a thread pool's thread does not take the caller's context."""
    return functools.partial(contextvars.copy_context().run, function, *args)


def configure_logging() -> None:
    """The `bgm` loggers' lines, INFO and above (the audit log's among them), and every other
    library's warnings, on standard error with their time and level, in whatever process
    serves: `bgm serve`, the studio, a Ray Serve replica. Only `bgm serve` had set up logging:
    in a replica (whose root logger Ray leaves unset) and in the studio every audit line was
    dropped and a warning printed bare. A handler already on the root logger is kept."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler.addFilter(RequestOfLine())
        root.addHandler(handler)
    logging.getLogger("bgm").setLevel(logging.INFO)


# The longest message a client gets: a message can echo what the caller sent (a 1 MB genre
# name), and past the client's metadata limit the status itself would be lost.
MAX_MESSAGE_CHARS = 1000


# The errors' ErrorInfo domain.
ERROR_DOMAIN = "bgm.v1"
# Where gRPC carries a google.rpc.Status with details.
STATUS_DETAILS_KEY = "grpc-status-details-bin"
# What gRPC libraries say of a message, or of metadata (a status's message), over a channel's
# limits, received or sent (gRPC's core, Go's, Java's), in lower case: only the core's
# received wording had been known, and a refusal sent in another was taken for a service's.
OVERSIZED = ("message larger than max", "metadata size exceeds", "exceeds maximum size")


def is_oversized(message: str) -> bool:
    """Whether a status's message is gRPC's refusal of a message or metadata too large."""
    lowered = message.lower()
    return any(words in lowered for words in OVERSIZED)


# Characters of a downstream service's message a client is not sent: controls (a terminal's
# escapes, line breaks) and the bidirectional overrides that reorder what a reader sees.
UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


@dataclass(frozen=True)
class Refusal:
    """What a client gets for an error: a status code, a message, and the google.rpc.Status
    (code, message, details) to send in the trailing metadata."""

    code: grpc.StatusCode
    message: str
    details: bytes = b""


# When to try again after the server's disk filled, seconds.
DISK_FULL_RETRY_S = 60.0


def status_for(error: BaseException) -> Refusal:
    """The status a client sees; never a stack trace, never a message longer than
    MAX_MESSAGE_CHARS. A BgmError carries machine-readable details: BadRequest (the field),
    ErrorInfo (a stable reason) and RetryInfo (when trying again later may work)."""
    if isinstance(error, BgmError):
        code = grpc.StatusCode[error.status_code]
        message = _bounded(str(error))
        return Refusal(code, message, _details(code, message, error))
    if isinstance(error, grpc.aio.AioRpcError):
        # A downstream service's error reaches the client with its code and details.
        passed_on = dict(error.trailing_metadata() or ()).get(STATUS_DETAILS_KEY, b"")
        message = _bounded(UNPRINTABLE.sub(" ", error.details() or error.code().name))
        if isinstance(passed_on, bytes) and passed_on:
            return Refusal(error.code(), message, passed_on)
        if error.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
            # A failure inside a service of another make, whose message may be its stack
            # trace and its paths (passed on whole, they had crossed the wire): logged here.
            log.error("a service this one calls failed, %s: %s", error.code().name,
                      error.details())  # fmt: skip
            return status_for(DownstreamError(
                f"a service this one calls failed ({error.code().name}); its message is in "
                "this service's log"))  # fmt: skip
        oversized = is_oversized(message)
        if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and oversized:
            # gRPC's own refusal of a message between this service and one it calls (a reply
            # over this one's limit, as a generator's whole piece in one chunk, or a status
            # message over 8 KiB): not the caller's fault, who had been told
            # RESOURCE_EXHAUSTED as if its request were.
            return status_for(DownstreamError(
                f"a message between this service and one it calls was over gRPC's message "
                f"limit: {message}"))  # fmt: skip
        if error.code() == grpc.StatusCode.UNAVAILABLE:
            # A service down or restarting: worth trying again shortly. gRPC's own words name
            # its address, which is this service's to know (logged), not the caller's.
            log.warning("a service this one calls cannot be reached: %s", error.details())
            down = UnavailableError("a service this one calls cannot be reached (this "
                                    "service's log says why); try again shortly",
                                    retry_after_s=1.0)  # fmt: skip
            return status_for(down)
        return Refusal(error.code(), message)
    if isinstance(error, asyncio.TimeoutError):
        return Refusal(grpc.StatusCode.DEADLINE_EXCEEDED, "the request took longer than allowed")
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        # The server's disk filled while the request wrote (its partial files are removed):
        # the server's state, not the request's fault, and said so; the operator is told.
        log.warning("a request failed for want of disk space: %s", error)
        return status_for(ResourceExhaustedError(
            "the server's disk filled while this request was written; nothing of it was "
            "kept", error_reason="DISK_FULL", retry_after_s=DISK_FULL_RETRY_S))  # fmt: skip
    return Refusal(grpc.StatusCode.INTERNAL, "internal error (the server log has the details)")


def _details(code: grpc.StatusCode, message: str, error: BgmError) -> bytes:
    details = []
    if error.field is not None:
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=error.field, description=message
        )
        details.append(error_details_pb2.BadRequest(field_violations=[violation]))
    details.append(error_details_pb2.ErrorInfo(reason=error.error_reason, domain=ERROR_DOMAIN))
    if error.retry_after_s is not None:
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(round(error.retry_after_s * 1000))
        details.append(error_details_pb2.RetryInfo(retry_delay=delay))
    packed = []
    for detail in details:
        holder = any_pb2.Any()
        holder.Pack(detail)
        packed.append(holder)
    status = status_pb2.Status(code=code.value[0], message=message, details=packed)
    return status.SerializeToString()


def _bounded(message: str) -> str:
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    cut = len(message) - MAX_MESSAGE_CHARS
    return f"{message[: MAX_MESSAGE_CHARS - 40]} ... ({cut + 40} more characters)"


# The metadata key of the id every response carries (the audit log names requests by it).
REQUEST_ID_KEY = "x-request-id"
# The metadata key of the id of the request a call is made for (the gateway's, on its calls to
# the tagger and the generator): their audit lines name it, and whom it was for. Nothing had
# tied a gateway request to its calls. Taken only as a request id: 32 hex digits.
PARENT_REQUEST_KEY = "bgm-parent-request-id"
PARENT_REQUEST_ID = re.compile("[0-9a-f]{32}")
# What an audit line keeps of what a caller says of its call (ON_BEHALF_OF, x-request-id).
MAX_SAID_CHARS = 256
audit_log = logging.getLogger("bgm.audit")
# Metadata of a call a service makes to see that another answers (the gateway's Describe of
# the tagger and the generator, every second): no request anyone made, so not audited (at
# INFO). Any caller can send it, so it quiets only a Describe, which does no work.
PROBE = ("bgm-probe", "dependency")
PROBED_METHOD = "Describe"


# The metrics' tenant label of a call refused for its credentials (auth on): counted apart
# from auth off's "" (they had shared it).
UNAUTHENTICATED_TENANT = "unauthenticated"


@dataclass
class RequestRecord:
    """One request, as the audit log records it; servicers fill in the tenant and the
    seconds of music delivered."""

    request_id: str
    tenant: str = ""
    # The tenant as the metrics label it (a listed tenant, or "other").
    tenant_label: str = ""
    music_s: float = 0.0


@contextlib.asynccontextmanager
async def observed(
    service: str, method: str, context: grpc.aio.ServicerContext
) -> AsyncIterator[RequestRecord]:
    """Metrics and one audit line for one request, its id in the trailing metadata, and
    errors turned into a status, a message and details."""
    started = time.perf_counter()
    # (Not the gateway's own Describe: any caller could have kept its calls out of the log.)
    probe = (service != GATEWAY_API and method == PROBED_METHOD
             and PROBE in tuple(context.invocation_metadata() or ()))  # fmt: skip
    record = RequestRecord(uuid.uuid4().hex)
    # Who called, for the audit line (a flood of refused calls had said nothing of where it
    # came from). Asked now: asked of a call gRPC has finished, peer() crashed the process.
    peer = peer_address(context)
    # Whose call this is, as the gateway says it on its calls to the tagger and the
    # generator: on theirs only (a gateway's own caller could have named another request).
    metadata = dict(context.invocation_metadata() or ())
    said = metadata if service != GATEWAY_API else {}
    parent = said.get(PARENT_REQUEST_KEY, "")
    parent = parent if isinstance(parent, str) and PARENT_REQUEST_ID.fullmatch(parent) else ""
    on_behalf = said.get(ON_BEHALF_OF, "")
    on_behalf = on_behalf[:MAX_SAID_CHARS] if isinstance(on_behalf, str) else ""
    # The caller's own id for its call (a proxy's or a client's x-request-id), kept beside
    # this service's in the audit line: it had been dropped, and nothing tied the two.
    client_id = metadata.get(REQUEST_ID_KEY, "")
    client_id = client_id[:MAX_SAID_CHARS] if isinstance(client_id, str) else ""
    tagged = ((REQUEST_ID_KEY, record.request_id),)
    context.set_trailing_metadata(tagged)
    serving = CURRENT_REQUEST.set(record.request_id)
    metrics.request_started(service, method)
    code = grpc.StatusCode.OK
    # Why it was refused, where the status says (its ErrorInfo's reason: RESOURCE_EXHAUSTED
    # alone had not told a full staging disk from a busy client).
    reason = ""
    # The status to end with, sent once the request is counted: a stream's status waits
    # behind the messages its caller has not read, for as long as the caller likes.
    ending: tuple[grpc.StatusCode, str, tuple[tuple[str, str | bytes], ...]] | None = None
    try:
        # In the headers too: a call that ends without its trailers reaching the caller (its
        # own deadline passed, gRPC refused its message) had no id to name in a report. A
        # call that has ended already (its caller cancelled, gRPC refused its message), or
        # whose headers went with a message of a wrapper's, takes none; a cancel here is
        # counted and audited as any other.
        with contextlib.suppress(cygrpc.UsageError, cygrpc.ExecuteBatchError):
            await context.send_initial_metadata(tagged)
        yield record
    except asyncio.CancelledError:
        code = grpc.StatusCode.CANCELLED
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            # Cancelled because the deadline passed: say so, or a finished handler could reach
            # the client as OK before the client's own timer fires.
            code = grpc.StatusCode.DEADLINE_EXCEEDED
            ending = (code, "the request took longer than its deadline", tagged)
        else:
            raise
    except grpc.aio.AbortError:
        code = context.code() or grpc.StatusCode.UNKNOWN
        raise
    except GeneratorExit:
        # A stream closed before its end: its caller went away while a message waited for
        # it (it had been counted OK).
        code = grpc.StatusCode.CANCELLED
        raise
    except Exception as error:  # every error becomes a status, never a crash
        refusal = status_for(error)
        code = refusal.code
        reason = reason_of(refusal.details)
        if code == grpc.StatusCode.INTERNAL:
            log.exception("%s.%s failed (request %s)", service, method, record.request_id)
        details = ((STATUS_DETAILS_KEY, refusal.details),) if refusal.details else ()
        ending = (code, refusal.message, tagged + details)
    finally:
        seconds = time.perf_counter() - started
        metrics.request_finished(service, method, code.name, seconds, record.tenant_label)
        audit_log.log(logging.DEBUG if probe else logging.INFO, json.dumps({
            "request_id": record.request_id, "service": service, "method": method,
            "tenant": record.tenant, "status": code.name, "reason": reason,
            "seconds": round(seconds, 3),
            "music_s": round(record.music_s, 3),
            "peer": peer, "parent_request_id": parent, "on_behalf_of": on_behalf,
            "client_request_id": client_id,
        }, sort_keys=True))  # fmt: skip
        CURRENT_REQUEST.reset(serving)
    if ending is not None:
        await abort(context, *ending)


def reason_of(details: bytes) -> str:
    """The ErrorInfo reason of a status's details (a google.rpc.Status), or ""."""
    try:
        status = status_pb2.Status.FromString(details)
    except DecodeError:
        return ""
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info.reason
    return ""


async def abort(
    context: grpc.aio.ServicerContext,
    code: grpc.StatusCode,
    message: str,
    metadata: tuple[tuple[str, str | bytes], ...],
) -> None:
    """context.abort; where the caller has gone before its status could be sent, the request
    ends as cancelled. (gRPC reports a status it could not send as ExecuteBatchError, and
    logs it with its traceback unless it has already seen the caller leave, which it learns
    at about the same moment.)"""
    try:
        await context.abort(code, message, metadata)
    except cygrpc.ExecuteBatchError:
        raise asyncio.CancelledError from None


def address_group(address: str) -> str:
    """The address limits count a caller by: an IPv4 address itself, an IPv6 one's /64 (a
    host is handed a whole /64, and had as many "addresses", and shares, as it liked; an
    IPv4 address written as IPv6 is that IPv4 address). Anything else as it is."""
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def peer_address(context: grpc.aio.ServicerContext) -> str:
    """The calling peer's address without its port, as the audit line names it."""
    peer = context.peer() or "unknown"
    kind, _, rest = peer.partition(":")
    if kind in ("ipv4", "ipv6") and ":" in rest:
        return f"{kind}:{urllib.parse.unquote(rest.rsplit(':', 1)[0])}"
    return peer


def client_of(context: grpc.aio.ServicerContext) -> str:
    """Who is calling, as the limits and turns count callers, as far as the connection
    tells: the peer's address without its port (one client's connections share it), an
    IPv6 address by its /64 (address_group). An authentication layer would name an
    identity."""
    peer = peer_address(context)
    kind, _, address = peer.partition(":")
    if kind not in ("ipv4", "ipv6"):
        return peer
    group = address_group(address)
    # (An IPv4 address written as IPv6 is that IPv4 client.)
    return f"{'ipv6' if ':' in group else 'ipv4'}:{group}"


# The gateway names, in this metadata, the client (its tenant, with auth on) a call to the
# tagger or the generator is made for, so those services take turns between its clients.
ON_BEHALF_OF = "bgm-on-behalf-of"


def callers_of(context: grpc.aio.ServicerContext) -> tuple[str, str]:
    """Who a call comes from: the peer (client_of) and whom that peer says it calls for
    ("" when it says nothing)."""
    named = dict(context.invocation_metadata() or ()).get(ON_BEHALF_OF, "")
    return client_of(context), named if isinstance(named, str) else ""


class FairTurns:
    """At most `capacity` requests worked on at once; the others wait, and are served by
    turns rather than in arrival order: the peers take turns, and within a peer's turns the
    callers it speaks for (a gateway's clients) take theirs. A caller that sends many
    requests waits behind its own, not another's waiting behind all of them. A long request
    may also step aside while another caller waits (Turn.give_way), so that one caller's
    long work does not hold every turn for minutes; at most `max_set_aside` requests are set
    aside at once, so the work (and the memory, and the worker threads) held at once is at
    most capacity + max_set_aside requests'. One event loop's tool, like asyncio.Semaphore.

    A turn may weigh more than one (bytes of memory, say): the turns held then weigh at most
    `capacity` together. The next in turn order that does not fit waits until it does; other
    callers' requests go past it only within the room it leaves (capacity less its weight),
    so it never waits for them (a light request had waited minutes behind a heavy one, and a
    heavy one, with light ones let past freely, could wait for ever). One heavier than the
    whole capacity has its turn alone."""

    def __init__(self, capacity: int, max_set_aside: int = 1):
        self.capacity = capacity
        self.max_set_aside = max_set_aside
        self._running = 0
        # Peer -> caller -> its waiters and their weights, each dict in turn order (served
        # first at the front).
        self._waiting: dict[str, dict[str, deque[tuple[asyncio.Future[int], int]]]] = {}
        self._set_aside = 0
        # The waiter that did not fit, the weight let past it that is still held, and a count
        # that tells the turns let past one blocked waiter from those let past another.
        self._blocked: asyncio.Future[int] | None = None
        self._blocked_at: tuple[str, str] | None = None
        self._held_past = 0
        self._epoch = 0

    @contextlib.asynccontextmanager
    async def turn(self, peer: str, caller: str = "", weight: int = 1) -> AsyncIterator[Turn]:
        turn = Turn(self, peer, caller, weight)
        await turn.take()
        try:
            yield turn
        finally:
            if turn.held:
                turn.held = False
                self._release(weight, epoch=turn.epoch)

    @property
    def held(self) -> int:
        """The weight of the turns held now."""
        return self._running

    @property
    def anyone_waits(self) -> bool:
        """Whether a request waits for a turn: readable from a worker thread (a dict's
        emptiness), as a hint that asking the loop (Turn.give_way) may find one."""
        return bool(self._waiting)

    def _fits(self, weight: int) -> bool:
        return self._running == 0 or self._running + weight <= self.capacity

    async def _wait(self, peer: str, caller: str, weight: int, first: bool = False) -> int:
        """Until a turn is granted; `first` waits before the caller's other requests. The
        epoch of the blocked waiter it went past, else -1."""
        if not self._waiting and self._fits(weight):
            self._running += weight
            return -1
        granted: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        waiters = self._waiting.setdefault(peer, {}).setdefault(caller, deque())
        if first:
            waiters.appendleft((granted, weight))
        else:
            waiters.append((granted, weight))
        self._grant()  # it may go past one that waits for room
        try:
            return await granted
        except asyncio.CancelledError:
            if granted.cancelled():
                self._withdraw(peer, caller, granted)
            else:  # granted as the wait was cancelled: the next one's turn
                self._release(weight, epoch=granted.result())
            raise

    def _others_wait(self, peer: str, caller: str) -> bool:
        return any(p != peer or any(c != caller for c in callers)
                   for p, callers in self._waiting.items())  # fmt: skip

    def _release(
        self, weight: int, passing: tuple[str, str] | None = None, epoch: int = -1
    ) -> None:
        """A turn of `weight` ended (let past the blocked waiter of `epoch`): the next
        waiting requests have theirs, by turns, while their weight fits; a turn `passing`
        from a (peer, caller) giving way goes to another's, where another waits."""
        self._running -= weight
        if epoch == self._epoch:
            self._held_past -= weight
        self._grant(passing)

    def _grant(self, passing: tuple[str, str] | None = None) -> None:
        while self._waiting:
            order = [(p, c) for p, callers in self._waiting.items() for c in callers]
            # A blocked waiter stays first, wherever serving those let past it (its own
            # peer's other callers among them) has moved its peer in the order: else another
            # peer's could take a turn ahead of it, and block it again, for ever.
            # A turn given way goes to another's first (Turn.give_way).
            pinned = self._still_blocked() and self._blocked_at != passing
            head = self._blocked_at if pinned else None
            if head is None:
                head = next((pc for pc in order if pc != passing), order[0])
            granted, wanted = self._waiting[head[0]][head[1]][0]
            if granted.cancelled() or self._fits(wanted):
                if granted is self._blocked:
                    self._blocked, self._blocked_at, self._held_past = None, None, 0
                    self._epoch += 1
                self._serve(*head, -1)
                passing = None
                continue
            if granted is not self._blocked:
                self._blocked, self._blocked_at, self._held_past = granted, head, 0
                self._epoch += 1
            # Others' requests that fit now, within the room the blocked one leaves them.
            for peer, caller in order:
                if (peer, caller) == head:
                    continue
                waiter, weight = self._waiting[peer][caller][0]
                room = self.capacity - wanted - self._held_past
                if not waiter.cancelled() and weight <= room and self._fits(weight):
                    self._held_past += weight
                    self._serve(peer, caller, self._epoch)
            return

    def _still_blocked(self) -> bool:
        """The blocked waiter still waits, first of its caller's."""
        if self._blocked is None or self._blocked_at is None:
            return False
        peer, caller = self._blocked_at
        waiters = self._waiting.get(peer, {}).get(caller)
        return waiters is not None and waiters[0][0] is self._blocked and not self._blocked.done()

    def _serve(self, peer: str, caller: str, epoch: int) -> None:
        """The first waiter of (peer, caller) has its turn (none, if its wait was cancelled);
        the caller goes behind the peer's others, and the peer behind the rest."""
        callers = self._waiting[peer]
        waiters = callers[caller]
        granted, wanted = waiters.popleft()
        del callers[caller], self._waiting[peer]
        if waiters:
            callers[caller] = waiters
        if callers:
            self._waiting[peer] = callers
        # A wait cancelled before its task has run again is over: no turn for it.
        if not granted.cancelled():
            self._running += wanted
            granted.set_result(epoch)

    def _withdraw(self, peer: str, caller: str, waiter: asyncio.Future[int]) -> None:
        """A cancelled wait out of the queue, unless _release took it out already."""
        callers = self._waiting.get(peer, {})
        waiters = callers.get(caller)
        entry = next((e for e in waiters or () if e[0] is waiter), None)
        if waiters is None or entry is None:
            return
        waiters.remove(entry)
        if not waiters:
            del callers[caller]
        if not callers:
            del self._waiting[peer]
        # One that waited for room may have held back others that fit.
        self._grant()


class Turn:
    """One request's turn in FairTurns: held while it works, handed on by give_way."""

    def __init__(self, turns: FairTurns, peer: str, caller: str, weight: int = 1):
        self.turns, self.peer, self.caller, self.weight = turns, peer, caller, weight
        self.held = False
        # The blocked waiter's epoch it was let past (FairTurns), else -1.
        self.epoch = -1
        # When it last took its turn (time.monotonic()).
        self.since = 0.0

    async def take(self, resuming: bool = False) -> None:
        """Wait for the turn; a request `resuming` after it gave way waits before its
        caller's requests that have not started (else the one set aside could wait behind all
        of them, and no other request could step aside meanwhile)."""
        self.epoch = await self.turns._wait(self.peer, self.caller, self.weight, first=resuming)
        self.held = True
        self.since = time.monotonic()

    async def give_way(self) -> None:
        """Hand the turn to another caller who waits, if one does and fewer than
        max_set_aside requests are set aside already, and wait for the next turn (this
        caller's, after the others'); else keep it, counted as taken now."""
        turns = self.turns
        if not (self.held and turns._set_aside < turns.max_set_aside
                and turns._others_wait(self.peer, self.caller)):  # fmt: skip
            self.since = time.monotonic()
            return
        self.held = False
        turns._set_aside += 1
        turns._release(self.weight, passing=(self.peer, self.caller), epoch=self.epoch)
        try:
            await self.take(resuming=True)
        finally:
            turns._set_aside -= 1


@contextlib.asynccontextmanager
async def audio_share(
    budget: FairTurns, service: str, peer: str, caller: str, weight: int
) -> AsyncIterator[None]:
    """A request's share of `service`'s audio budget (a FairTurns of bytes), counted in the
    bgm_audio_held_bytes gauge while it holds it."""
    async with budget.turn(peer, caller, weight):
        metrics.audio_held(service, weight)
        try:
            yield
        finally:
            metrics.audio_held(service, -weight)


# How often a request set aside listens for a cancel while it waits for its next turn.
SET_ASIDE_CHECK_S = 0.1
# Requests a service may have set aside at once, per worker (its max_concurrent): each holds
# a worker thread and its work's memory while it waits. With one in all, once capacity + 1
# long requests had started no other could step aside, and a short request from another
# caller waited for a whole long one to end (minutes, for a long piece). Past capacity +
# capacity * this many long requests started at once, a new caller waits for one to end.
SET_ASIDE_PER_WORKER = 2


def sliced_turns(capacity: int, name: str) -> tuple[FairTurns, ThreadPoolExecutor]:
    """Turns for `capacity` workers whose long requests step aside (turn_keeper), and the
    threads their work runs in: one per turn and per request set aside, which holds its
    thread while it waits. (In the shared default pool, requests set aside could hold every
    thread the work that would end their wait needs.)"""
    turns = FairTurns(capacity, max_set_aside=SET_ASIDE_PER_WORKER * capacity)
    return turns, ThreadPoolExecutor(capacity + turns.max_set_aside, thread_name_prefix=name)


def turn_keeper(
    turn: Turn, loop: asyncio.AbstractEventLoop, slice_s: float, check: Callable[[], None]
) -> Callable[[float], None]:
    """A progress callback for a request's worker threads: it hears `check` (which raises to
    cancel), and once the request has held its turn for `slice_s` it gives way
    (Turn.give_way, on `loop`) and waits there for its next turn, hearing `check` meanwhile."""
    lock = threading.Lock()

    def keep(fraction: float = 0.0) -> None:
        check()
        # Past its slice with nobody waiting, the request works on and asks again at its
        # next report: a caller who came just after the loop was asked had waited out a
        # whole new slice (up to 2 s for a generator turn, 0.5 s on average).
        if time.monotonic() - turn.since < slice_s or not turn.turns.anyone_waits:
            return
        with lock:  # one of the request's threads asks; the others wait with it
            if time.monotonic() - turn.since < slice_s:
                return
            waiting = asyncio.run_coroutine_threadsafe(turn.give_way(), loop)
            while True:
                try:
                    waiting.result(timeout=SET_ASIDE_CHECK_S)
                    return
                except TimeoutError:
                    try:
                        check()
                    except BaseException:
                        waiting.cancel()
                        raise

    return keep


class Cancellation:
    """Set once a request is over (cancelled, past its deadline, or ended); `check`, a
    progress callback, then raises, so work in a thread stops at its next report."""

    def __init__(self, context: grpc.aio.ServicerContext):
        self.over = threading.Event()
        context.add_done_callback(lambda _: self.over.set())

    def check(self, fraction: float = 0.0) -> None:
        if self.over.is_set():
            raise CancelledError("the caller cancelled the request")

    async def in_thread(
        self, function: Callable[..., T], *args: Any, workers: ThreadPoolExecutor | None = None
    ) -> T:
        """`function(*args)` in a thread (of `workers`, else the loop's own) that reports to
        `check` and that the awaiting task does not leave behind: cancelled, the task ends
        the request and waits for the thread to stop before the cancel goes on. What the
        thread uses is let go only after it: a request's folder had been removed while its
        outputs were being written into it, and the write left it behind (a caller that
        stopped reading mid-writing)."""
        loop = asyncio.get_running_loop()
        work = asyncio.ensure_future(loop.run_in_executor(workers, in_request(function, *args)))
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            self.over.set()
            while not work.done():
                # A second cancel does not cut the wait short; the thread stops at its next
                # report (HEARTBEAT_S).
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait({work})
            if not work.cancelled():
                work.exception()  # its CancelledError is expected, not news
            raise


class RunningRequests:
    """Requests running per key (a client, a tenant), each key at most its limit; one more
    is refused with the error `refusal` makes of the count. A request may weigh more than
    one (its bytes): the first of a key is always taken."""

    def __init__(self) -> None:
        self._running: dict[str, int] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def slot(
        self, key: str, limit: int, refusal: Callable[[int], BgmError], weight: int = 1
    ) -> Iterator[None]:
        with self._lock:
            running = self._running.get(key, 0)
            if running and running + weight > limit:
                raise refusal(running)
            self._running[key] = running + weight
        try:
            yield
        finally:
            with self._lock:
                self._running[key] -= weight
                if not self._running[key]:
                    del self._running[key]


class PerClientLimit:
    """At most `limit` requests of one client at once; more are refused with
    RESOURCE_EXHAUSTED, so one caller cannot take every worker."""

    def __init__(self, limit: int):
        self.limit = limit
        self._running = RunningRequests()

    def slot(self, context: grpc.aio.ServicerContext) -> contextlib.AbstractContextManager[None]:
        return self._running.slot(client_of(context), self.limit, self._refusal)

    def _refusal(self, running: int) -> BgmError:
        return ResourceExhaustedError(
            f"this client already has {running} requests running; the limit per client is "
            f"{self.limit}",
            error_reason="CLIENT_BUSY",
            retry_after_s=1.0,
        )


class PerPeerLimit:
    """serving.peer at a service: what one caller's connection address may have in flight,
    in requests and in their bytes."""

    def __init__(self, limit: PeerLimit):
        self.limit = limit
        self._requests = RunningRequests()
        self._bytes = RunningRequests()

    @contextlib.contextmanager
    def held(self, context: grpc.aio.ServicerContext, request: Message) -> Iterator[None]:
        """`request` in flight, or refused."""
        size = request_bytes(request)
        peer = client_of(context)
        limit = self.limit
        with (
            self._requests.slot(peer, limit.max_requests,
                                _busy(" has {} requests", limit.max_requests, "max_requests")),
            self._bytes.slot(peer, limit.max_bytes,
                             _busy("'s requests hold {} bytes", limit.max_bytes, "max_bytes"),
                             weight=size),
        ):  # fmt: skip
            yield


def _busy(holds: str, limit: int, knob: str) -> Callable[[int], BgmError]:
    """The refusal of a caller that `holds` (a format of what it holds) at serving.peer's
    `knob`."""

    def refusal(held: int) -> BgmError:
        return ResourceExhaustedError(
            f"this caller{holds.format(held)} in flight here; the limit per caller is {limit} "
            f"(serving.peer.{knob})",
            error_reason="CALLER_BUSY", retry_after_s=1.0,
        )  # fmt: skip

    return refusal


@dataclass(frozen=True)
class ServiceBinding:
    """One gRPC service to host: its full name, how to add it, and its servicer."""

    name: str
    add_to_server: Callable[[Any, grpc.aio.Server], None]
    servicer: Any
    # Awaited before the service is reported SERVING (loads its backend).
    ready: Callable[[], Awaitable[None]] | None = None
    # Awaited after the server has stopped (closes the servicer's own channels).
    close: Callable[[], Awaitable[None]] | None = None
    # Runs while the server does, given a function that reports the service SERVING or
    # NOT_SERVING (the gateway: whether the services it needs answer).
    watch: Callable[[Callable[[bool], Awaitable[None]]], Coroutine[Any, Any, None]] | None = None
    # Server interceptors the service needs (the gateway's: tokens for health and reflection).
    interceptors: tuple[grpc.aio.ServerInterceptor, ...] = ()


def channel_options(max_message_bytes: int) -> list[tuple[str, Any]]:
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
    ]


# A channel to another service tries to reconnect at least this often while it is down, so
# calls work again within about this long of the service coming back (gRPC's default backoff
# grows to two minutes).
RECONNECT_BACKOFF_MS = 500
# Keepalive pings during calls find a peer that vanished without closing its connection (a
# pod gone from the network). Not more often than servers accept by default (5 minutes
# without data), or they would close the connection.
KEEPALIVE_MS = 300_000
KEEPALIVE_TIMEOUT_MS = 20_000
# gRPC's limits on a request's headers, over serving.max_metadata_bytes (see Server).
METADATA_HEADROOM = 4


def service_channel_options(max_message_bytes: int) -> list[tuple[str, Any]]:
    """Options of a channel from one service to another."""
    return [
        *channel_options(max_message_bytes),
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MS),
        ("grpc.keepalive_time_ms", KEEPALIVE_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
    ]


class Delivery:
    """The time a caller has to take what a stream has ready for it: serving.delivery's
    grace and `size_bytes` at its rate, from now (its first message)."""

    def __init__(self, size_bytes: int, limit: DeliveryLimit):
        self.size = size_bytes
        self.allowed_s = limit.grace_s + size_bytes / limit.min_bytes_per_s
        self.started = time.monotonic()

    def check(self) -> None:
        """Before each message: DeadlineExceededError once the time is up."""
        if time.monotonic() - self.started > self.allowed_s:
            raise DeadlineExceededError(
                f"the caller did not take the {self.size} bytes ready for it within "
                f"{self.allowed_s:.0f} s (serving.delivery); the stream was ended",
                error_reason="DELIVERY_TOO_SLOW",
            )


class HandlerWrapper(grpc.aio.ServerInterceptor):
    """An interceptor that gives each method's handler in its `wrapped` form."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        return handler if handler is None else self.wrapped(handler, handler_call_details.method)

    def wrapped(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        """`handler` wrapped; `method` is its path, "/package.Service/Method"."""
        raise NotImplementedError


class StallLimit(HandlerWrapper):
    """Streams whose caller takes none of their messages for `stall_s` end, and what they
    held is let go (serving.reader_stall_s).

    gRPC's flow control holds a write until the caller reads; a servicer's stream (an async
    generator) waits at its `yield` meanwhile, holding whatever it holds. Here each message is
    written with a time limit; past it, CallerStalledError is thrown into the stream at its
    `yield`, so its own handling ends it (its context managers let go, its metrics and audit
    log see the status, and count it then). The status itself reaches the caller after the
    message it left unread, if it ever reads again."""

    def __init__(self, stall_s: float):
        self.stall_s = stall_s

    def wrapped(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        streams = handler.unary_stream or handler.stream_stream
        if not inspect.isasyncgenfunction(streams):
            return handler

        async def written(request: Any, context: grpc.aio.ServicerContext) -> None:
            await self._write_all(streams(request, context), context)

        make = (grpc.unary_stream_rpc_method_handler if handler.unary_stream
                else grpc.stream_stream_rpc_method_handler)  # fmt: skip
        return make(written, request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer)  # fmt: skip

    async def _write_all(
        self, messages: AsyncGenerator[Any, None], context: grpc.aio.ServicerContext
    ) -> None:
        stalled = None
        async with contextlib.aclosing(messages):
            async for message in messages:
                try:
                    async with asyncio.timeout(self.stall_s):
                        await context.write(message)
                except cygrpc.ExecuteBatchError:
                    # The caller left while the message waited for it (as at `abort`).
                    raise asyncio.CancelledError from None
                except TimeoutError:
                    stalled = CallerStalledError(
                        f"the caller took no message for {self.stall_s:g} s "
                        "(serving.reader_stall_s); the stream was ended"
                    )
                    # A stream with no handling of its own is ended below.
                    with contextlib.suppress(CallerStalledError, StopAsyncIteration):
                        await messages.athrow(stalled)
                    break
        if stalled is not None:
            refusal = status_for(stalled)
            await abort(context, refusal.code, refusal.message,
                        ((STATUS_DETAILS_KEY, refusal.details),))  # fmt: skip


def _kind_of(handler: grpc.RpcMethodHandler) -> tuple[str, Callable[..., Any]]:
    """The handler's kind ("unary_unary", ...) and what makes a handler of that kind."""
    kinds = (("unary_unary", grpc.unary_unary_rpc_method_handler),
             ("unary_stream", grpc.unary_stream_rpc_method_handler),
             ("stream_unary", grpc.stream_unary_rpc_method_handler),
             ("stream_stream", grpc.stream_stream_rpc_method_handler))  # fmt: skip
    return next((k, m) for k, m in kinds if getattr(handler, k) is not None)


class ReleasedOnError(HandlerWrapper):
    """A refused request lets go at once of what its handler held (a video sent inline,
    60 MB). gRPC keeps the AbortError a handler's status is sent by as long as the call's
    state; its traceback, and those of the errors it arose from, hold the handler's frames,
    which hold the state in turn (through the context): a cycle only Python's collector
    frees, and it runs by counts of objects, not bytes. Eight 60 MB requests refused at once
    had left the gateway 500 MB larger each time, 3.7 GB after six. The tracebacks are let go
    as the AbortError leaves the handler (its status is sent; observed has logged what it
    logs); this wrapper holds no request."""

    def wrapped(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        kind, make = _kind_of(handler)
        behaviour = getattr(handler, kind)
        if not inspect.iscoroutinefunction(behaviour):
            return handler

        async def released(request: Any, context: grpc.aio.ServicerContext) -> Any:
            handling = behaviour(request, context)
            del request
            try:
                return await handling
            except grpc.aio.AbortError as refusal:
                refusal.__traceback__ = refusal.__context__ = refusal.__cause__ = None
                raise

        return make(released, request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer)  # fmt: skip


# A request's message still arriving after this long counts as the largest message there
# can be (serving.max_message_bytes) among its caller's requests still arriving, which may
# hold serving.peer.max_bytes; one that has arrived by then (any ordinary request) counts
# for nothing here.
ARRIVING_FREE_S = 0.5


class RequestArrival(HandlerWrapper):
    """A single request's message must arrive within serving.max_arrival_s of its call, and
    one still arriving after ARRIVING_FREE_S counts as the largest message among its
    caller's requests still arriving, which may hold serving.peer.max_bytes (a count of its
    own, beside each service's of requests in flight): more is refused RESOURCE_EXHAUSTED
    (CALLER_BUSY), and a message not arrived in time DEADLINE_EXCEEDED, and what gRPC held of
    it is let go. gRPC reads a single request before it calls the handler, so the method is
    served as a request stream, read here: a caller that sent 16 messages of 60 MB but for
    their last byte had held 900 MB at the gateway, and 64 at the generator 3.7 GB, for as
    long as it liked, counted against no limit."""

    def __init__(self, serving: ServingConfig):
        self.max_arrival_s = serving.max_arrival_s
        self.max_bytes = serving.peer.max_bytes
        self.weight = serving.max_message_bytes
        self._arriving = RunningRequests()

    def wrapped(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        kind, _ = _kind_of(handler)
        behaviour = getattr(handler, kind)
        if kind.startswith("stream") or not inspect.iscoroutinefunction(behaviour):
            return handler
        service, _, name = method.strip("/").partition("/")

        async def arrived(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
            try:
                request = await self._first(context)
            except BgmError as error:
                async with observed(service, name, context):
                    raise error from None
            except asyncio.CancelledError:
                # Ended before its message came: the caller's cancel, or gRPC's own refusal of
                # a message over serving.max_message_bytes. Counted and audited as cancelled
                # (a 70 MB request, refused so, had left no trace in either).
                async with observed(service, name, context):
                    raise
            handling = behaviour(request, context)
            del request  # held by no frame of this one's (as in ReleasedOnError)
            return await handling

        make = (grpc.stream_unary_rpc_method_handler if kind == "unary_unary"
                else grpc.stream_stream_rpc_method_handler)  # fmt: skip
        return make(arrived, request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer)  # fmt: skip

    async def _first(self, context: grpc.aio.ServicerContext) -> Any:
        """The call's one request, as it arrives in time (or refused). Read from the context:
        the request stream's iterator would hold it as long as the call."""
        reading = asyncio.ensure_future(context.read())
        try:
            done, _ = await asyncio.wait({reading}, timeout=ARRIVING_FREE_S)
            if not done:
                refusal = _busy("'s requests still arriving hold {} bytes", self.max_bytes,
                                "max_bytes")  # fmt: skip
                with self._arriving.slot(client_of(context), self.max_bytes, refusal,
                                         weight=self.weight):  # fmt: skip
                    done, _ = await asyncio.wait(
                        {reading}, timeout=self.max_arrival_s - ARRIVING_FREE_S
                    )
            if not done:
                raise DeadlineExceededError(
                    f"the request's message did not arrive within {self.max_arrival_s:g} s "
                    "(serving.max_arrival_s)", error_reason="REQUEST_TOO_SLOW")  # fmt: skip
            request = reading.result()
        finally:
            reading.cancel()
        if request is grpc.aio.EOF:
            raise InvalidInputError("the call carried no request message")
        return request


@dataclass(frozen=True)
class MalformedRequest:
    """Request bytes that are not the method's message, and why (the parser's reason)."""

    reason: str


@dataclass(frozen=True)
class _Received:
    """A request message as parsed (or why it could not be), and its size on the wire."""

    message: Any
    wire_bytes: int


# The size on the wire of the unary request this task handles (set by WellFormedRequests).
# Measuring a parsed message (ByteSize) serializes it again, holding the interpreter: 0.45 s
# for a brief at the limits (40 MB), during which another caller's Describe had waited.
_WIRE_BYTES: contextvars.ContextVar[int | None] = contextvars.ContextVar("wire_bytes", default=None)


def request_bytes(request: Message) -> int:
    """The size of the request this task handles: as it came over the wire where this server
    parsed it, else measured (a request handed on by Ray Serve's proxy)."""
    size = _WIRE_BYTES.get()
    return request.ByteSize() if size is None else size


class WellFormedRequests(HandlerWrapper):
    """Request bytes that are not the method's message (cut short, corrupt, a string field
    that is not UTF-8) are refused INVALID_ARGUMENT, and metadata over `max_metadata_bytes`
    RESOURCE_EXHAUSTED, through `observed` (its metrics and audit line). gRPC had answered
    UNKNOWN with the parser's class name, and a request stream's handler INTERNAL with a
    traceback in the log. It sits outside StallLimit, whose handlers are coroutines (a
    stream's messages written by it), and so outside authentication too: bytes that are no
    request are refused as such, before any check of who sent them, and nothing is done for
    them."""

    def __init__(self, max_metadata_bytes: int):
        self.max_metadata_bytes = max_metadata_bytes

    def wrapped(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        if handler.request_deserializer is None:
            return handler
        kind, make = _kind_of(handler)
        behaviour = getattr(handler, kind)
        if not inspect.iscoroutinefunction(behaviour):
            return handler
        service, _, name = method.strip("/").partition("/")
        streams_in = kind.startswith("stream")

        async def checked(request: Any, context: grpc.aio.ServicerContext) -> Any:
            size = metadata_bytes(context.invocation_metadata() or ())
            if size > self.max_metadata_bytes:
                async with observed(service, name, context):
                    raise ResourceExhaustedError(
                        f"the request's metadata is {size} bytes, over the "
                        f"{self.max_metadata_bytes} this server takes "
                        "(serving.max_metadata_bytes)")  # fmt: skip
            if streams_in:
                return await behaviour(_checked_stream(request), context)
            received: _Received = request
            del request
            if isinstance(received.message, MalformedRequest):
                async with observed(service, name, context):
                    raise _refusal(received.message)
            _WIRE_BYTES.set(received.wire_bytes)
            handling = behaviour(received.message, context)
            del received  # held by no frame of this one's (as in ReleasedOnError)
            return await handling

        return make(checked, request_deserializer=_lenient(handler.request_deserializer),
                    response_serializer=handler.response_serializer)  # fmt: skip


def metadata_bytes(metadata: Iterable[tuple[str, str | bytes]]) -> int:
    """A request's metadata as gRPC counts it against its limits (HTTP/2's header list
    size): each entry's name, its value and 32 bytes."""
    return sum(len(key) + len(value) + 32 for key, value in metadata)


def _lenient(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], _Received]:
    def parsed(data: bytes) -> _Received:
        try:
            return _Received(deserialize(data), len(data))
        except DecodeError as error:
            return _Received(MalformedRequest(str(error)), len(data))

    return parsed


def _refusal(request: MalformedRequest) -> InvalidInputError:
    return InvalidInputError(f"the request is not a well-formed message: {request.reason}")


async def _checked_stream(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """A request stream's messages; one that is not well formed ends it, refused."""
    async for request in requests:
        if isinstance(request.message, MalformedRequest):
            raise _refusal(request.message)
        yield request.message


def _why_not_bound(error: OSError) -> str:
    if error.errno == errno.EADDRINUSE:
        return "the port is in use (another program, or another bgm, listens on it)"
    if error.errno == errno.EADDRNOTAVAIL:
        return "no network interface of this machine has that address"
    if error.errno == errno.EACCES:
        return "a port under 1024 needs privileges"
    return error.strerror or str(error)


def _check_free(address: str) -> None:
    """Whether `address` (host:port) can be listened on, said plainly before gRPC tries: its
    own refusal is "Failed to bind to address ...; set GRPC_VERBOSITY=debug", after a line of
    its C core's log. Probed as gRPC binds (a port left in TIME_WAIT is free)."""
    host, _, port = address.rpartition(":")
    if not port.isdigit() or int(port) == 0:
        return
    try:
        found = socket.getaddrinfo(host.strip("[]") or None, int(port),
                                   type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)  # fmt: skip
    except socket.gaierror:
        return  # gRPC names what is wrong with the host
    for found_address in found:
        _bound(found_address, address).close()


def _bound(found: tuple[Any, ...], address: str) -> socket.socket:
    """A TCP socket bound as gRPC binds (SO_REUSEADDR) to `found` (a getaddrinfo entry for
    `address`), or one line saying why not."""
    family, kind, proto, _, sockaddr = found
    listener = socket.socket(family, kind, proto)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(sockaddr)
    except OSError as error:
        listener.close()
        raise OSError(f"cannot listen on {address}: {_why_not_bound(error)}") from None
    return listener


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port) for an HTTP server to listen on (the studio), or one
    line saying why not, as the gRPC services' ports are (uvicorn's own had been its log's
    "ERROR: [Errno 98] ...", exit 3, and with port 0 the port was never said)."""
    try:
        found = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)  # fmt: skip
    except socket.gaierror as error:
        raise OSError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    return _bound(found[0], f"{host}:{port}")


class HostedServer:
    """A grpc.aio server with health checking and reflection for its services."""

    def __init__(
        self,
        bindings: Sequence[ServiceBinding],
        address: str,
        serving: ServingConfig,
        credentials: grpc.ServerCredentials | None = None,
    ):
        self.bindings = list(bindings)
        self.server = grpc.aio.server(
            options=[*channel_options(serving.max_message_bytes),
                     # Both of gRPC's limits on a request's headers (its soft one refuses at
                     # random) lie above the server's own, so that WellFormedRequests sees a
                     # request over it and says what is wrong.
                     *[(option, serving.max_metadata_bytes * METADATA_HEADROOM) for option in
                       ("grpc.max_metadata_size", "grpc.absolute_max_metadata_size")],
                     # A second server on a port this one holds is refused: gRPC's
                     # SO_REUSEPORT had let both listen, each taking some of the requests.
                     ("grpc.so_reuseport", 0),
                     ("grpc.max_connection_idle_ms", round(serving.max_connection_idle_s * 1000)),
                     ("grpc.http2.min_ping_interval_without_data_ms",
                      round(serving.min_client_ping_interval_s * 1000)),
                     ("grpc.keepalive_permit_without_calls", 1),
                     # Requests come uncompressed (identity alone is enabled; gRPC refuses
                     # another): gzip let a client stage 4.7 GiB of upload from 4.7 MiB on the
                     # wire and fill the staging disk for others, and a video gains nothing.
                     ("grpc.compression_enabled_algorithms_bitset", 1)],
            interceptors=[ReleasedOnError(), RequestArrival(serving),
                          WellFormedRequests(serving.max_metadata_bytes),
                          StallLimit(serving.reader_stall_s),
                          *(i for binding in self.bindings for i in binding.interceptors)],
        )  # fmt: skip
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        for binding in self.bindings:
            binding.add_to_server(binding.servicer, self.server)
        names = [b.name for b in self.bindings] + [
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ]
        reflection.enable_server_reflection(names, self.server)
        _check_free(address)
        try:
            if credentials is None:
                self.port = self.server.add_insecure_port(address)
            else:
                self.port = self.server.add_secure_port(address, credentials)
        except RuntimeError as error:  # grpc's "Failed to bind": the port is taken
            raise OSError(f"cannot listen on {address}: {error}") from None
        if self.port == 0:
            raise OSError(f"cannot listen on {address}")
        self._watches: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for binding in self.bindings:
            await self.health.set(binding.name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.start()
        for binding in self.bindings:
            if binding.ready is not None:
                await binding.ready()
            await self.health.set(binding.name, health_pb2.HealthCheckResponse.SERVING)
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        for binding in self.bindings:
            if binding.watch is not None:
                self._watches.append(asyncio.create_task(binding.watch(self._reporter(binding))))

    def _reporter(self, binding: ServiceBinding) -> Callable[[bool], Awaitable[None]]:
        async def report(serving: bool) -> None:
            status = health_pb2.HealthCheckResponse.SERVING if serving else (
                health_pb2.HealthCheckResponse.NOT_SERVING)  # fmt: skip
            await self.health.set(binding.name, status)
            await self.health.set("", status)

        return report

    async def stop(self, grace_s: float) -> None:
        """Stop taking requests, let those in flight finish (up to `grace_s`), then exit."""
        for watch in self._watches:
            watch.cancel()
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace_s)
        for binding in self.bindings:
            if binding.close is not None:
                await binding.close()


T = TypeVar("T")

# Turning a message into domain types (or back) costs about 15 us an item: 0.6 s for a brief
# at the limits (40,000 segments and cuts), 0.3 s for the gateway's work on the tagger's most
# (14,400 cuts and 4,800 segments). A message with more items than this is converted off the
# event loop, one at a time: converting holds the interpreter, so several at once only take
# turns with the loop (three 40 MB briefs at once had kept it from another caller for up to
# 0.9 s; one at a time, 0.2 s). A shorter one is converted at once (a few milliseconds).
LONG_MESSAGE_ITEMS = 200


class LongMessages:
    """Converts long messages on a thread of its own, one at a time (LONG_MESSAGE_ITEMS)."""

    def __init__(self) -> None:
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="long-messages")

    async def convert(self, items: int, work: Callable[[], T]) -> T:
        """`work`'s result: at once for a message of up to LONG_MESSAGE_ITEMS items (its
        segments, cuts and spoken stretches), else from the thread."""
        if items <= LONG_MESSAGE_ITEMS:
            return work()
        return await asyncio.get_running_loop().run_in_executor(self._thread, in_request(work))


# Curve values (an analysis's motion and loudness) that cost about one timeline item to
# convert.
CURVE_VALUES_PER_ITEM = 100


def timeline_items(message: Any) -> int:
    """The items of a timeline (an analysis or a brief, as a message or a domain object)
    that its size follows: its segments, cuts and spoken stretches, and an analysis's curves
    (16 million motion values, converted on the event loop, had held another caller's
    health check 1.2 s)."""
    items = len(message.segments) + len(message.cuts) + len(message.speech)
    curves = (getattr(message, name, None) for name in ("motion", "loudness"))
    values = sum(len(curve.values) for curve in curves if curve is not None)
    return items + values // CURVE_VALUES_PER_ITEM


def freeze_start_up_heap() -> None:
    """Put what start-up made (libraries, models, config) out of the collector's reach.

    A full collection walks every object it tracks, holding the event loop and every thread:
    175 ms in a `bgm serve all` process (246,000 objects), on its own schedule, while a render
    or a request was under way. Frozen, a full collection walks what requests made since."""
    gc.collect()  # what start-up left as garbage is freed, not kept for good
    gc.freeze()


class _MetricsHandler(WSGIRequestHandler):
    """A scrape's request, read within `timeout` (a class attribute: MetricsServer sets
    it); nothing logged per request."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


class MetricsServer(ThreadingMixIn, WSGIServer):
    """Prometheus's WSGI app, each connection in a thread of its own as prometheus_client's
    server serves it, but a request must come within `timeout` and at most `most` are served
    at once: more are closed as they come."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], timeout: float, most: int):
        self.address_family = socket.getaddrinfo(address[0], address[1])[0][0]
        super().__init__(address, type("MetricsHandler", (_MetricsHandler,), {"timeout": timeout}))
        self._slots = threading.BoundedSemaphore(most)
        self.set_app(make_wsgi_app())

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        # The slot is free before the connection closes: freed after, a scrape that came as
        # the caller saw the close found none and was closed unanswered.
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self._slots.release()
            self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a scrape cut off, or too slow: nothing to tell


def serve_metrics(host: str, port: int, serving: ServingConfig) -> MetricsServer:
    """Prometheus metrics on (host, port), in threads, until the process ends (or the
    server's shutdown())."""
    try:
        server = MetricsServer((host, port), serving.metrics_timeout_s,
                               serving.metrics_max_connections)  # fmt: skip
    except OSError as error:  # it had been "[Errno 98] Address already in use"
        raise OSError(f"cannot serve metrics on {host}:{port}: "
                      f"{_why_not_bound(error)}") from None  # fmt: skip
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server


async def run_servers(
    servers: Sequence[HostedServer],
    metrics_addresses: Sequence[tuple[str, int]],
    serving: ServingConfig,
    on_started: Callable[[], None] | None = None,
) -> None:
    """Run until SIGTERM or SIGINT, then drain and stop. Metrics are served on each
    (host, port) whose port is not 0."""
    grace_s = serving.grace_s
    for host, port in metrics_addresses:
        if port:
            serve_metrics(host, port, serving)
            # Said once bound (it had been said before, then the port was found taken).
            log.info("metrics on %s:%d", host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        for server in servers:
            await server.start()
    except BaseException:
        # A service that cannot start (a folder its config names is unusable) stops the
        # others: left running, each had printed a traceback as the process ended.
        for server in servers:
            await server.server.stop(0)
        raise
    freeze_start_up_heap()
    if on_started is not None:
        on_started()
    await stop.wait()
    log.info("stopping: draining requests in flight (up to %.0f s)", grace_s)
    # Every service says NOT_SERVING at once, and all drain within one grace_s. Last
    # started, first stopped: the gateway drains while the services its requests still call
    # are up, and they take what is left of the grace. Each had had a grace of its own, one
    # after another: `serve all` had answered SERVING from the tagger and the generator, and
    # taken new work there, for up to twice grace_s, and exited after three.
    for server in servers:
        await server.health.enter_graceful_shutdown()
    ends = loop.time() + grace_s
    for server in reversed(servers):
        await server.stop(max(0.0, ends - loop.time()))
