"""Fetching the media a request names, confined to what the configuration allows.

file:// only under configured roots; http(s):// only to allowed hosts and never to private,
loopback or link-local addresses unless configured, checked for every redirect hop and for the
address actually connected to (DNS may answer differently between the check and the connect);
s3:// and gs:// through fsspec when the matching extra is installed. Downloads are bounded in
size, in total time (a source that trickles cannot hold a request past the deadline) and in
number at once per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import http.client
import ipaddress
import os
import selectors
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from services.errors import (
    BgmError,
    CancelledError,
    DeadlineExceededError,
    InvalidInputError,
    MediaNotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
)
from services.knobs import MAX_WAIT_S, Folder
from services.media.files import LOOPED, leads_round, special_kind

# The most downloads a policy may allow at once.
MAX_DOWNLOADS = 16


class SourcePolicy(BaseModel):
    """Which URIs a service may read."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    # Folders whose files file:// URIs may name (the gateway's staging folder is added).
    file_roots: list[Folder] = Field(default_factory=list)
    # Host names http(s):// URIs may name; empty = none.
    http_hosts: list[str] = Field(default_factory=list)
    # Let http(s) reach private, loopback and link-local addresses (tests, private clusters).
    allow_private_addresses: bool = False
    # URI prefixes read through fsspec ("s3://bucket/videos/", "gs://...", or any fsspec
    # protocol, e.g. a gateway's staging store); s3:// and gs:// URIs must start with one.
    object_prefixes: list[str] = Field(default_factory=list)
    max_bytes: int = Field(4 * 1024**3, gt=0)
    # The whole download, connect to last byte (not per read).
    timeout_s: float = Field(60.0, gt=0, le=MAX_WAIT_S)
    # Downloads at once in one process; more are refused with RESOURCE_EXHAUSTED.
    max_downloads: int = Field(4, gt=0, le=MAX_DOWNLOADS)


def parse_uri(uri: str) -> urllib.parse.ParseResult:
    """`uri` taken apart; INVALID_ARGUMENT for one that cannot be (`http://[::1`)."""
    try:
        parsed = urllib.parse.urlparse(uri)
        parsed.port  # noqa: B018 (parses the port, which may be malformed)
    except ValueError as error:
        raise InvalidInputError(f"malformed URI ({error})") from None
    return parsed


def inside_roots(path: Path, roots: list[Path]) -> bool:
    if leads_round(path):
        # Not resolved (Python 3.11 raises RuntimeError for a loop: an INTERNAL error). Said
        # only of a path inside the roots as written; any other is outside them.
        absolute = Path(os.path.abspath(path))
        if any(absolute.is_relative_to(root.resolve()) for root in roots):
            raise InvalidInputError(f"{path.name} is {LOOPED}")
        return False
    resolved = path.resolve()
    return any(resolved.is_relative_to(root.resolve()) for root in roots)


# A file's name, and a path with room for the names bgm writes in it (an output's temporary
# name, a request's folder), as Linux takes them.
NAME_MAX_BYTES = 255
PATH_MAX_BYTES = 3840


def file_uri_path(uri: str, roots: list[Path], access: str) -> Path:
    """The path a file:// URI names, if it is on this host and inside `roots` (for `access`,
    "read" or "write")."""
    parsed = parse_uri(uri)
    if parsed.netloc not in ("", "localhost"):
        raise PermissionDeniedError(f"file URI {uri} names another host")
    if parsed.query or parsed.fragment:
        # Dropped, they had named another file than the caller meant (`clip?.mp4` as `clip`).
        raise InvalidInputError(
            "a file URI has no query or fragment: a '?' or '#' in a name is written %3F or %23"
        )
    unquoted = urllib.parse.unquote(parsed.path)
    if "\x00" in unquoted:
        raise InvalidInputError("a file URI may not name a NUL character (%00)")
    path = Path(unquoted)
    # The file system's own limits, said as such: a name of 300 bytes had been an INTERNAL
    # error, and an output folder 2,030 deep was made, used and left behind before it was.
    if any(len(part.encode()) > NAME_MAX_BYTES for part in path.parts):
        raise InvalidInputError(f"a name in the file URI is over {NAME_MAX_BYTES} bytes")
    if len(unquoted.encode()) > PATH_MAX_BYTES:
        raise InvalidInputError(f"the file URI's path is over {PATH_MAX_BYTES} bytes")
    if not inside_roots(path, roots):
        raise PermissionDeniedError(f"{uri} is outside the folders this server may {access}")
    return path


def local_path(uri: str, policy: SourcePolicy) -> Path | None:
    """The local file a file:// URI names (checked against the roots); None for other schemes."""
    if parse_uri(uri).scheme != "file":
        return None
    path = file_uri_path(uri, policy.file_roots, "read")
    if path.is_dir():
        raise InvalidInputError(f"{uri} is a folder, not a video file")
    kind = special_kind(path.stat().st_mode) if path.exists() else None
    if kind is not None:
        # It had been NOT_FOUND, "does not exist".
        raise InvalidInputError(f"{uri} is {kind}, not a video file")
    if not path.is_file():
        raise MediaNotFoundError(f"{uri} does not exist")
    return path


def _private(address: str) -> bool:
    ip = ipaddress.ip_address(str(address).split("%")[0])
    return ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved


def _http_host(parsed: urllib.parse.ParseResult) -> str:
    """The host an http(s) URL names. One with credentials in it (user:password@host) is
    refused, without repeating them: urllib took them for part of the host, and the
    caller was told that host could not be resolved, password and all."""
    if "@" in parsed.netloc:
        raise InvalidInputError("a source URL may not carry credentials (user:password@host)")
    return parsed.hostname or ""


def _check_allowed(host: str, policy: SourcePolicy) -> None:
    if host not in policy.http_hosts:
        raise PermissionDeniedError(f"host {host[:100]} is not on this server's allow-list")


def _check_host(host: str, policy: SourcePolicy, watch: _Watch) -> None:
    """An allowed host, resolving (within the download's bounds) to no private address."""
    _check_allowed(host, policy)
    if policy.allow_private_addresses:
        return
    addresses = {info[4][0] for info in watch.resolve(host, None)}
    if any(_private(str(address)) for address in addresses):
        raise PermissionDeniedError(f"host {host} resolves to a private address")


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Every hop of a redirect is held to the same rules as the first URL."""

    def __init__(self, policy: SourcePolicy, watch: _Watch):
        self.policy = policy
        self.watch = watch

    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:  # fmt: skip
        parsed = parse_uri(newurl)
        if parsed.scheme not in ("http", "https"):
            raise PermissionDeniedError("a redirect away from http(s) is not followed")
        _check_host(_http_host(parsed), self.policy, self.watch)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class _Watch:
    """A download's bounds, its deadline and its cancel, held while it resolves, connects and
    reads. Its sockets are closed from outside once the deadline passes or the download is
    cancelled: a source answering its headers a line at a time would otherwise hold the
    request (each read waits up to `timeout_s`, and the deadline and the cancel are checked
    only between reads of the body)."""

    def __init__(self, uri: str, timeout_s: float, deadline: float, cancelled: threading.Event):
        self.uri = uri
        self.timeout_s = timeout_s
        self.deadline = deadline
        self.cancelled = cancelled
        self.sockets: list[socket.socket] = []
        self.done = threading.Event()
        self.tripped = False
        self._lock = threading.Lock()
        threading.Thread(target=self._run, daemon=True).start()

    def add(self, sock: socket.socket) -> None:
        with self._lock:
            self.sockets.append(sock)
            if self.tripped:
                sock.shutdown(socket.SHUT_RDWR)

    def _run(self) -> None:
        while not self.done.wait(WATCH_S):
            if self.cancelled.is_set() or time.monotonic() >= self.deadline:
                with self._lock:
                    self.tripped = True
                    for sock in self.sockets:
                        with contextlib.suppress(OSError):
                            sock.shutdown(socket.SHUT_RDWR)
                return

    def verdict(self) -> BgmError | None:
        """Why the download was stopped from outside, if it was."""
        return self._stop() if self.tripped else None

    def _stop(self) -> BgmError:
        if self.cancelled.is_set():
            return CancelledError(f"the download of {self.uri} was cancelled")
        return DeadlineExceededError(f"{self.uri} did not arrive within {self.timeout_s:g} s")

    def _wait(self, ready: Callable[[float], bool]) -> None:
        """Call `ready` with at most WATCH_S to wait until it says so; stop at the deadline or
        a cancel."""
        while True:
            if self.cancelled.is_set() or time.monotonic() >= self.deadline:
                raise self._stop()
            if ready(min(WATCH_S, max(self.deadline - time.monotonic(), 0.0))):
                return

    def resolve(self, host: str, port: int | None) -> list[Any]:
        """getaddrinfo, waited on only until the deadline or a cancel: the resolver sets its
        own time (5 s per server and try with glibc's defaults, and more where it is told),
        which a download's bounds must not wait out. A lookup left waiting ends on its own
        thread."""
        answer: list[Any] = []
        done = threading.Event()

        def run() -> None:
            try:
                answer.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
            except OSError as error:
                answer.append(error)
            done.set()

        threading.Thread(target=run, name="bgm-resolve", daemon=True).start()
        self._wait(done.wait)
        if isinstance(answer[0], OSError):
            raise MediaNotFoundError(f"host {host} cannot be resolved") from None
        infos: list[Any] = answer[0]
        return infos

    def connect(self, address: tuple[str, int], timeout: object) -> socket.socket:
        """socket.create_connection, bounded by the deadline and a cancel: a blocking connect
        to an address that never answers waits its whole timeout, which a deadline near
        its end, a redirect or a cancel cannot cut short (the socket is not the watch's
        until it connects)."""
        last: OSError | None = None
        for family, kind, proto, _, sockaddr in self.resolve(*address):
            sock = socket.socket(family, kind, proto)
            try:
                self._connect(sock, sockaddr)
            except OSError as error:
                sock.close()
                last = error
                continue
            except BaseException:
                sock.close()
                raise
            # http.client's default is a marker object for the process's default timeout.
            sock.settimeout(timeout if isinstance(timeout, float | int) else
                            socket.getdefaulttimeout())  # fmt: skip
            self.add(sock)
            return sock
        raise last or OSError(f"{address[0]} has no address to connect to")

    def _connect(self, sock: socket.socket, sockaddr: Any) -> None:
        sock.setblocking(False)
        code = sock.connect_ex(sockaddr)
        if code in (errno.EINPROGRESS, errno.EAGAIN):
            with selectors.DefaultSelector() as selector:
                selector.register(sock, selectors.EVENT_WRITE)
                self._wait(lambda wait: bool(selector.select(wait)))
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            raise OSError(code, os.strerror(code))


def _checked_connection(
    base: type[http.client.HTTPConnection], policy: SourcePolicy, watch: _Watch
) -> Any:
    class CheckedConnection(base):  # type: ignore[valid-type, misc]
        """Connects within the download's bounds (`_Watch.connect`), which then holds its
        socket; refuses, once connected, a peer address the policy does not allow."""

        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__(*args, **kwargs)
            # http.client's one seam for how it opens the socket (plain, and under TLS).
            self._create_connection = self._connect_within_bounds

        @staticmethod
        def _connect_within_bounds(address: tuple[str, int], timeout: object,
                                   *_: Any) -> socket.socket:  # fmt: skip
            return watch.connect(address, timeout)

        def connect(self) -> None:
            super().connect()
            watch.add(self.sock)
            if not policy.allow_private_addresses and _private(self.sock.getpeername()[0]):
                self.sock.close()
                raise PermissionDeniedError(f"host {self.host} connected to a private address")

    return CheckedConnection


class _CheckedHttp(urllib.request.HTTPHandler):
    def __init__(self, policy: SourcePolicy, watch: _Watch):
        super().__init__()
        self.policy = policy
        self.watch = watch

    def http_open(self, req: urllib.request.Request) -> Any:
        connection = _checked_connection(http.client.HTTPConnection, self.policy, self.watch)
        return self.do_open(connection, req)


class _CheckedHttps(urllib.request.HTTPSHandler):
    def __init__(self, policy: SourcePolicy, watch: _Watch):
        super().__init__()
        self.policy = policy
        self.watch = watch

    def https_open(self, req: urllib.request.Request) -> Any:
        connection = _checked_connection(http.client.HTTPSConnection, self.policy, self.watch)
        return self.do_open(connection, req, context=self._context)  # type: ignore[attr-defined]


# How often a download's watch looks at its deadline and its cancel (seconds).
WATCH_S = 0.05

# Downloads running in this process, against SourcePolicy.max_downloads.
_downloads = 0
_downloads_lock = threading.Lock()


async def fetch_off_loop(uri: str, policy: SourcePolicy, destination: Path) -> Path:
    """fetch() on a thread of its own (a daemon: a process that stops does not wait for it),
    never one that other requests' work runs on (asyncio's default pool). When the request
    is cancelled, the download stops at the next bytes that arrive."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Path] = loop.create_future()
    cancelled = threading.Event()

    def run() -> None:
        try:
            result: Path | BaseException = fetch(uri, policy, destination, cancelled)
        except BaseException as error:  # handed to the awaiting request, whatever it is
            result = error
        loop.call_soon_threadsafe(_settle, done, result)

    threading.Thread(target=run, name="bgm-fetch", daemon=True).start()
    try:
        return await done
    finally:
        cancelled.set()


def _settle(done: asyncio.Future[Path], result: Path | BaseException) -> None:
    if done.cancelled():
        return
    if isinstance(result, BaseException):
        done.set_exception(result)
    else:
        done.set_result(result)


def fetch(
    uri: str, policy: SourcePolicy, destination: Path, cancelled: threading.Event | None = None
) -> Path:
    """Make the media `uri` names available as a local file: the file itself for file://,
    else a download to `destination` (which the caller removes); a download stops once
    `cancelled` is set."""
    stop = cancelled or threading.Event()
    if any(uri.startswith(prefix) for prefix in policy.object_prefixes):
        if {".", ".."} & set(parse_uri(uri).path.split("/")):
            # A store's filesystem may resolve them, and leave the prefix (another tenant's).
            raise InvalidInputError(f"{uri}: an object-store URI may not name . or ..")
        return _copy_object(uri, policy, destination, stop)
    path = local_path(uri, policy)
    if path is not None:
        return path
    parsed = parse_uri(uri)
    if parsed.scheme in ("http", "https"):
        _check_allowed(_http_host(parsed), policy)
        return _download(uri, policy, destination, stop)
    stores = {"s3", "gs"} | {prefix.split("://")[0] for prefix in policy.object_prefixes}
    if parsed.scheme in stores:
        raise PermissionDeniedError(f"{uri} is outside the allowed object-store prefixes")
    raise InvalidInputError(f"unsupported URI scheme in {uri!r}; use file, http(s), s3 or gs")


@contextlib.contextmanager
def _download_slot(policy: SourcePolicy) -> Iterator[None]:
    global _downloads
    with _downloads_lock:
        if _downloads >= policy.max_downloads:
            raise ResourceExhaustedError(
                f"{policy.max_downloads} downloads are running; try again shortly",
                error_reason="DOWNLOADS_BUSY",
                retry_after_s=1.0,
            )
        _downloads += 1
    try:
        yield
    finally:
        with _downloads_lock:
            _downloads -= 1


def _download(
    uri: str, policy: SourcePolicy, destination: Path, cancelled: threading.Event
) -> Path:
    with _download_slot(policy):
        deadline = time.monotonic() + policy.timeout_s
        return _download_within(uri, policy, destination, deadline, cancelled)


def _download_within(
    uri: str, policy: SourcePolicy, destination: Path, deadline: float, cancelled: threading.Event
) -> Path:
    watch = _Watch(uri, policy.timeout_s, deadline, cancelled)
    opener = urllib.request.build_opener(
        _CheckedRedirects(policy, watch), _CheckedHttp(policy, watch), _CheckedHttps(policy, watch)
    )
    try:
        _check_host(_http_host(parse_uri(uri)), policy, watch)
        _fetched(opener, uri, policy, destination, deadline, cancelled)
    except (BgmError, OSError) as error:
        # A read the watch broke off: its verdict, not the broken read's.
        raise watch.verdict() or error from None
    finally:
        watch.done.set()
    # A body the watch broke off reads as ended.
    stopped = watch.verdict()
    if stopped is not None:
        raise stopped
    return destination


def _fetched(
    opener: urllib.request.OpenerDirector,
    uri: str,
    policy: SourcePolicy,
    destination: Path,
    deadline: float,
    cancelled: threading.Event,
) -> None:
    request = urllib.request.Request(uri, headers={"User-Agent": "bgm"})
    try:
        with opener.open(request, timeout=policy.timeout_s) as response:
            length = int(response.headers.get("Content-Length") or 0)
            if length > policy.max_bytes:
                raise ResourceExhaustedError(
                    f"{uri} is {length} bytes; the limit is {policy.max_bytes}"
                )
            _copy_bounded(response, destination, policy, uri, deadline, cancelled)
    except urllib.error.HTTPError as error:
        if error.code == 404:
            raise MediaNotFoundError(f"{uri} was not found (HTTP 404)") from None
        if 300 <= error.code < 400:
            # urllib itself refuses redirects to schemes other than http(s) and ftp.
            raise PermissionDeniedError("a redirect away from http(s) is not followed") from None
        raise InvalidInputError(f"{uri} could not be fetched (HTTP {error.code})") from None
    except urllib.error.URLError as error:
        raise MediaNotFoundError(f"{uri} could not be fetched ({error.reason})") from None
    except (http.client.InvalidURL, UnicodeError) as error:
        # A space or a non-ASCII character left unescaped in the URI.
        raise InvalidInputError(f"{uri} is not a valid URL ({error})") from None
    except TimeoutError:
        raise DeadlineExceededError(f"{uri} did not arrive within {policy.timeout_s:g} s") from None
    except (http.client.HTTPException, ConnectionError) as error:
        # The source closed the connection or answered something that is not HTTP/1: its
        # name, not its bytes (an HTTP/2 server's frames had been repeated to the caller).
        raise MediaNotFoundError(f"{uri} could not be fetched ({type(error).__name__})") from None


def _copy_bounded(
    source: Any,
    destination: Path,
    policy: SourcePolicy,
    uri: str,
    deadline: float,
    cancelled: threading.Event,
) -> None:
    """Copy what arrives (each read returns what one receive brought, so a trickle cannot
    keep a read waiting for a full buffer) until the end, the byte limit, the deadline or a
    cancel."""
    copied = 0
    read = getattr(source, "read1", source.read)
    with destination.open("wb") as target:
        while True:
            if cancelled.is_set():
                raise CancelledError(f"the download of {uri} was cancelled")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeadlineExceededError(f"{uri} did not arrive within {policy.timeout_s:g} s")
            _set_read_timeout(source, remaining)
            chunk = read(1 << 20)
            if not chunk:
                return
            copied += len(chunk)
            if copied > policy.max_bytes:
                raise ResourceExhaustedError(
                    f"{uri} is larger than the limit of {policy.max_bytes} bytes"
                )
            target.write(chunk)


def _set_read_timeout(response: Any, seconds: float) -> None:
    """The socket under an HTTP response waits no longer than the download has left."""
    sock = getattr(getattr(getattr(response, "fp", None), "raw", None), "_sock", None)
    if sock is not None:
        sock.settimeout(max(seconds, 0.001))


def _copy_object(
    uri: str, policy: SourcePolicy, destination: Path, cancelled: threading.Event
) -> Path:
    try:
        import fsspec
    except ImportError:
        raise InvalidInputError(
            f"{uri}: object-store URIs need the s3 or gs extra (pip install 'bgm[s3]')"
        ) from None
    try:
        with _download_slot(policy), fsspec.open(uri, "rb") as source:
            deadline = time.monotonic() + policy.timeout_s
            _copy_bounded(source, destination, policy, uri, deadline, cancelled)
    except FileNotFoundError:
        raise MediaNotFoundError(f"{uri} does not exist") from None
    except ImportError as error:
        raise InvalidInputError(f"{uri}: the object-store extra is missing ({error})") from None
    return destination
