"""`bgm studio`: a web page for editors and integrators, served by a small ASGI app
(Starlette) with plain JavaScript and every asset in the package (no CDN). It is a client of a
gateway like `bgm client`: uploads become Gateway.Score calls, their events stream to the page
(Server-Sent Events), and the outputs are kept per browser session until `keep_s` after its
last use."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import json
import logging
import math
import mimetypes
import os
import re
import secrets
import shutil
import threading
import time
import urllib.parse
import zipfile
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf.json_format import MessageToDict
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from services import scratch
from services.config import BgmConfig, ClientTlsConfig, StudioConfig
from services.contract import tags_from_proto
from services.domain import OutputOptions, UserControls
from services.errors import ConfigError
from services.gateway.client import (
    analyze_remote,
    describe_remote,
    error_details,
    score_remote,
)
from services.gen.bgm.v1 import gateway_pb2
from services.media.audio import decode_audio_to_wav
from services.media.sources import SourcePolicy
from services.rules import SPEECH_MODES
from services.serve import check_tagger_reads_gateway_files, in_process_services
from services.serving import FairTurns, address_group

log = logging.getLogger("bgm")
STATIC = Path(__file__).parent / "static"
COOKIE = "bgm_studio"
# Whose folders these are, for the start-up sweep.
SCRATCH_OWNER = "studio"
# The sample videos a visitor may pick instead of uploading one.
SAMPLES = {"sample": "The project's sample: 20 s of calm, busy and closing shots"}
# Names of a job's downloads.
VIDEO_OUT, AUDIO_OUT, MIDI_OUT, STEMS_DIR = "scored.mp4", "music.wav", "music.mid", "stems"
SAFE_NAME = re.compile(r"[^\w.-]+")
# An upload's name where nothing of the visitor's is left once made safe (empty, "." or "..",
# emoji alone); its extension, where that is left, replaces this one's.
DEFAULT_VIDEO_NAME = "video.mp4"
# A session that holds nothing is forgotten after this many seconds unused.
EMPTY_SESSION_S = 600.0
# A score request is a few controls: a body past this is refused unread (a 20 MB prompt had
# been read whole and kept with the job for a day).
MAX_SCORE_BODY_BYTES = 64 * 1024
# What the page is told of a video (its entry also holds where it lies and what it takes).
VIDEO_KEYS = ("id", "name", "url")
# What the gateway said its generator takes is kept this long for the page's choices: every
# page load (or a visitor asking in a loop) had otherwise been a call to the gateway.
DESCRIPTION_KEEP_S = 5.0
T = TypeVar("T")


@dataclass(frozen=True)
class GatewayLink:
    """How the studio reaches its gateway (as `bgm client` does); `reads_folder`: the
    gateway (the studio's own, in its process) reads the studio's folder, so a video goes
    to it by file:// URI, whatever its size."""

    server: str
    metadata: tuple[tuple[str, str], ...] = ()
    tls: ClientTlsConfig | None = None
    reads_folder: bool = False


@dataclass
class Job:
    id: str
    video_id: str
    folder: Path
    settings: dict[str, Any]
    # Its events as JSON, each encoded once as it comes: a long video's analysis is megabytes
    # of it, and encoding it again on the page's event loop at every look had slowed every
    # visitor (a 20-minute video's, 4.6 MB, fetched over 8 connections: another visitor's
    # request 718 ms, 1 ms alone).
    encoded: list[str] = field(default_factory=list)
    state: str = "running"  # running, done, failed
    # What its results take on disk, counted when it ends (and when its stems are zipped).
    bytes: int = 0
    # The address it was asked from.
    address: str = ""
    # The loop its event streams wait on, and what wakes them: set (and replaced) once there
    # is news, so a stream waits on the one that was current when it last looked. Streams had
    # looked ten times a second each: a thousand open took 7% of a core.
    loop: asyncio.AbstractEventLoop | None = None
    news: asyncio.Event = field(default_factory=asyncio.Event)

    def publish(self, event: dict[str, Any], state: str = "running") -> None:
        """From the job's thread: an event, the state the job is in after it, and its event
        streams woken."""
        self.encoded.append(json.dumps(event))
        self.state = state
        if self.loop is not None:
            with contextlib.suppress(RuntimeError):  # the studio has stopped
                self.loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        news, self.news = self.news, asyncio.Event()
        news.set()

    async def stream(self) -> AsyncIterator[str]:
        """Its events so far, then each as it comes, until it ends (as JSON)."""
        sent = 0
        while True:
            news = self.news
            while sent < len(self.encoded):
                yield self.encoded[sent]
                sent += 1
            if self.state != "running":
                return
            await news.wait()

    def summary(self) -> str:
        """The job as JSON: its state, settings and events (as they were encoded)."""
        head = json.dumps({"id": self.id, "video_id": self.video_id, "state": self.state,
                           "settings": self.settings})  # fmt: skip
        return f'{head[:-1]}, "events": [{", ".join(self.encoded)}]}}'


@dataclass
class Session:
    folder: Path
    # The address that made it: what it holds counts against that address.
    address: str = ""
    videos: dict[str, dict[str, Any]] = field(default_factory=dict)
    jobs: dict[str, Job] = field(default_factory=dict)
    used: float = field(default_factory=time.monotonic)
    # What its videos and results take on disk, an upload counted as it arrives.
    held_bytes: int = 0
    # Event streams open.
    streams: int = 0
    # Uploads arriving: a session receiving its first video holds nothing yet, and a slow
    # one had been swept as empty while its bytes came in.
    uploads: int = 0

    def new_video_path(self, name: str) -> Path:
        """Where a new video named `name` goes: a folder of its own, named by its id."""
        folder = self.folder / "videos" / secrets.token_hex(6)
        folder.mkdir(parents=True)
        return folder / name

    def add_video(self, path: Path, size: int) -> dict[str, Any]:
        """Keep the video at `path` (from new_video_path); what the page is told of it."""
        return self._add(path.parent.name, path, size, shared=False)

    def add_sample(self, path: Path) -> dict[str, Any]:
        """Show the sample the studio keeps at `path` for every session (it holds no bytes
        of this one)."""
        return self._add(secrets.token_hex(6), path, 0, shared=True)

    def _add(self, video_id: str, path: Path, size: int, shared: bool) -> dict[str, Any]:
        entry = {"id": video_id, "name": path.name, "url": f"/api/videos/{video_id}"}
        self.videos[video_id] = {**entry, "path": str(path), "bytes": size, "shared": shared}
        return entry

    def analysis_path(self, entry: dict[str, Any]) -> Path:
        """Where the analysis of the video `entry` is kept: beside an upload, in the session's
        folder for the shared sample."""
        if not entry["shared"]:
            return Path(entry["path"]).parent / "analysis.json"
        folder = self.folder / "analyses"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{entry['id']}.json"

    def running(self) -> int:
        return sum(job.state == "running" for job in self.jobs.values())


def _change(counts: Counter[str], key: str, by: int) -> None:
    """`counts[key]` changed `by`; a key counted down to nothing goes (the counts are per
    address, and visitors come and go)."""
    counts[key] += by
    if not counts[key]:
        del counts[key]


class Studio:
    """Sessions, their videos and jobs, and the gateway calls."""

    def __init__(self, config: StudioConfig, link: GatewayLink):
        self.config, self.link = config, link
        # A folder of its own in config.folder, removed when it closes: a second studio on
        # this host had emptied the whole folder, the first's files with it. What a killed
        # studio left goes at the next start.
        self._held = contextlib.ExitStack()
        scratch.sweep(config.folder, SCRATCH_OWNER, "studio.folder")
        self.folder = self._held.enter_context(scratch.scratch_folder(config.folder,
                                                                      SCRATCH_OWNER))  # fmt: skip
        self.sessions: dict[str, Session] = {}
        # Sessions and bytes held per address that made them.
        self.address_sessions: Counter[str] = Counter()
        self.address_bytes: Counter[str] = Counter()
        # Signs the session keys this studio hands out: only those make a session.
        self._secret = secrets.token_bytes(32)
        self.lock = threading.Lock()
        self.pending: dict[str, asyncio.Future[Any]] = {}
        # Analyses run one at a time per address, its sessions taking turns: all of one
        # visitor's at once had held every thread the studio's requests share, and the
        # gateway's tagger, and another visitor's waited behind the whole burst.
        self.analysis_turns: dict[str, FairTurns] = {}
        # The studio's calls to the gateway, every address's, by turns (`max_gateway_*`).
        self.gateway_analyses = FairTurns(config.max_gateway_analyses)
        self.gateway_scores = FairTurns(config.max_gateway_scores)
        # Scores waiting for their turn or running (held here: a task only the loop
        # references may be collected).
        self.score_tasks: set[asyncio.Task[None]] = set()
        self._described: tuple[float, gateway_pb2.GatewayDescribeResponse] | None = None
        self.closed = False

    def close(self) -> None:
        """Its folder removed, every session's files with it."""
        self.closed = True
        self._held.close()

    async def once(self, key: str, work: Callable[[], Awaitable[T]]) -> T:
        """What `work` gives, made once for every request that asks for `key` while it is
        being made: a page asking a hundred times at once for a video's analysis or a job's
        stems had a hundred made (and the zips written over each other), holding the threads
        every other visitor's requests wait for. Shielded: one visitor leaving cancels
        nothing for the others."""
        task = self.pending.get(key)
        if task is None:
            task = asyncio.ensure_future(work())
            self.pending[key] = task
            task.add_done_callback(lambda _: self.pending.pop(key, None))
            # Seen here, whoever awaits it: all who asked may have left.
            task.add_done_callback(lambda done: done.cancelled() or done.exception())
        result: T = await asyncio.shield(task)
        return result

    def describe(self) -> gateway_pb2.GatewayDescribeResponse:
        """Gateway.Describe: what the gateway's generator takes now (raises grpc.RpcError)."""
        link = self.link
        described = describe_remote(link.server, link.metadata, link.tls,
                                    self.config.describe_timeout_s)  # fmt: skip
        self._described = (time.monotonic(), described)
        return described

    async def description(self) -> gateway_pb2.GatewayDescribeResponse:
        """`describe`'s answer, asked once for every request in DESCRIPTION_KEEP_S."""
        kept = self._described
        if kept is not None and time.monotonic() - kept[0] < DESCRIPTION_KEEP_S:
            return kept[1]
        return await self.once("describe", lambda: asyncio.to_thread(self.describe))

    @contextlib.asynccontextmanager
    async def analysis_turn(self, address: str, session_key: str) -> AsyncIterator[None]:
        """The turn of one analysis asked from `address` by the session `session_key`."""
        turns = self.analysis_turns.setdefault(address, FairTurns(1))
        try:
            async with turns.turn(session_key), self.gateway_analyses.turn(address, session_key):
                yield
        finally:
            if not turns.held and not turns.anyone_waits:
                self.analysis_turns.pop(address, None)

    def reserve(self, session: Session, size: int) -> str | None:
        """Count `size` more bytes against the session and its address, or say why they
        cannot be kept."""
        with self.lock:
            most = self.config.max_session_bytes
            if session.held_bytes + size > most:
                return (
                    f"this session keeps at most {most} bytes of videos and results and "
                    f"holds {session.held_bytes}: remove a video or a version first"
                )
            # (A visitor who dropped the cookie for a session each had filled the disk,
            # every other visitor's upload refused for the day they were kept.)
            most = self.config.max_address_bytes
            if self.address_bytes[session.address] + size > most:
                return (f"this address keeps at most {most} bytes of videos and results in "
                        "all its sessions: remove a video or a version first")  # fmt: skip
            if shutil.disk_usage(self.folder).free - size < self.config.min_free_bytes:
                return "the studio's disk is nearly full: try again later"
            self.count_bytes(session, size)
        return None

    def count_bytes(self, session: Session, size: int) -> None:
        """(Under the lock.) `size` bytes more (or fewer) held by the session."""
        session.held_bytes += size
        _change(self.address_bytes, session.address, size)

    def running_from(self, address: str) -> int:
        """Scores running that `address` asked for, in any session."""
        with self.lock:
            sessions = list(self.sessions.values())
        return sum(job.state == "running" and job.address == address
                   for session in sessions for job in session.jobs.values())  # fmt: skip

    def release(self, session: Session, size: int) -> None:
        with self.lock:
            self.count_bytes(session, -size)

    def room_refusal(self, session: Session) -> str | None:
        """Why the session can keep nothing more now (a video or a score), or None."""
        most = self.config.max_session_items
        # Uploads arriving count: uploads sent at once had all passed this before any was kept.
        # A failed score keeps nothing to remove (the page shows it no Remove button): four
        # had filled a session of five for a day.
        kept = sum(job.state != "failed" for job in session.jobs.values())
        if len(session.videos) + kept + session.uploads >= most:
            return (f"this session keeps at most {most} videos and versions: remove one "
                    "first")  # fmt: skip
        return self.reserve(session, 0)

    def sample_video(self, name: str) -> Path:
        """The sample `name`, written once for every session (it takes seconds to make)."""
        from services.media.synth import sample_shots, write_video

        path = self.folder / "samples" / f"{name}.mp4"
        if path.exists():
            return path
        path.parent.mkdir(exist_ok=True)
        partial = path.with_name(f"partial-{name}.mp4")
        write_video(partial, sample_shots())
        partial.rename(path)
        return path

    def session(self, request: Request) -> tuple[str, Session]:
        """The request's session, and its key for the cookie. One it has not kept anything
        in is not kept (an empty one, under a key for the cookie): every request without a
        cookie had made a session, and a flood of them took memory and, swept, held the
        event loop for every visitor for seconds."""
        key = request.cookies.get(COOKIE, "")
        with self.lock:
            session = self.sessions.get(key)
            if session is not None:
                session.used = time.monotonic()
                return key, session
        if not self._issued(key):
            key = self._new_key()
        address = visitor_address(request)
        return key, Session(self.folder / key, address)

    def kept_session(self, request: Request) -> tuple[str, Session]:
        """The request's session, kept from now on (it is about to hold something); refused
        (SessionRefused) past max_sessions_per_address."""
        key, session = self.session(request)
        with self.lock:
            if key in self.sessions:
                return key, self.sessions[key]
            most = self.config.max_sessions_per_address
            if self.address_sessions[session.address] >= most:
                raise SessionRefused(f"this address holds {most} sessions of the studio: "
                                     "use one of them (a browser keeps its cookie)")  # fmt: skip
            self.address_sessions[session.address] += 1
            self.sessions[key] = session
        return key, session

    def forget_if_empty(self, key: str) -> None:
        """Forget the session `key` if it holds nothing and receives nothing (an upload
        refused as a session's first: its place counted against its address)."""
        with self.lock:
            session = self.sessions.get(key)
            if session is None or session.videos or session.jobs or session.uploads:
                return
            self._forget(key)
        shutil.rmtree(session.folder, ignore_errors=True)

    def _forget(self, key: str) -> Session:
        """(Under the lock.) Forget the session `key` and what it held."""
        session = self.sessions.pop(key)
        self.count_bytes(session, -session.held_bytes)
        _change(self.address_sessions, session.address, -1)
        return session

    def _new_key(self) -> str:
        token = secrets.token_urlsafe(18)
        return f"{token}.{self._signature(token)}"

    def _issued(self, key: str) -> bool:
        """Whether this studio handed out `key` (a key a visitor made up makes no session)."""
        token, _, signature = key.partition(".")
        # As bytes: compare_digest refuses a str with a character past ASCII (a cookie of one
        # had made every page's request a 500 with a traceback).
        expected = self._signature(token).encode()
        return bool(token) and hmac.compare_digest(signature.encode(), expected)

    def _signature(self, token: str) -> str:
        return hmac.new(self._secret, token.encode(), "sha256").hexdigest()[:32]

    def sweep(self) -> None:
        """Remove sessions unused for `keep_s` (their files too), and those that hold nothing
        after EMPTY_SESSION_S (5,000 emptied sessions had kept 5,000 folders a day); running
        jobs keep theirs. Run in a thread: the files go outside the lock, which the page's
        requests take (a sweep on the event loop had held every visitor's request)."""
        now = time.monotonic()
        with self.lock:
            stale = [key for key, s in self.sessions.items()
                     if now - s.used > (self.config.keep_s if s.videos or s.jobs
                                        else min(self.config.keep_s, EMPTY_SESSION_S))
                     and not s.uploads
                     and all(j.state != "running" for j in s.jobs.values())]  # fmt: skip
            gone = [self._forget(key) for key in stale]
        for session in gone:
            shutil.rmtree(session.folder, ignore_errors=True)

    async def score_in_turn(self, session_key: str, session: Session, job: Job, video: Path,
                            controls: UserControls, outputs: JobOutputs) -> None:  # fmt: skip
        """`run_job` in a thread of its own once the score's turn at the gateway comes
        (`max_gateway_scores`; the addresses, and an address's sessions, take turns); the
        page hears that it waits."""
        turns = self.gateway_scores
        if turns.anyone_waits or turns.held >= self.config.max_gateway_scores:
            job.publish({"type": "progress", "fraction": 0.0, "stage": "waiting for a turn"})
        async with turns.turn(job.address, session_key):
            loop = asyncio.get_running_loop()
            ended = loop.create_future()

            def end() -> None:
                if not ended.done():  # (cancelled as the studio stops)
                    ended.set_result(None)

            def work() -> None:
                try:
                    self.run_job(session, job, video, controls, outputs)
                finally:
                    # (The studio may have stopped meanwhile, its loop closed.)
                    with contextlib.suppress(RuntimeError):
                        loop.call_soon_threadsafe(end)

            threading.Thread(target=work, daemon=True).start()
            await ended

    def run_job(self, session: Session, job: Job, video: Path, controls: UserControls,
                outputs: JobOutputs) -> None:  # fmt: skip
        """One Gateway.Score call (in a thread); its events land in `job.encoded`, and what
        its results take counts against the session before the page hears it ended."""
        try:
            self._score(job, video, controls, outputs)
            outcome, state = {"type": "done", "files": self.files(job)}, "done"
        except grpc.RpcError as error:
            outcome, state = {"type": "error", **rpc_error(error)}, "failed"
        except Exception:
            if not self.closed:  # (a job the stop cut off finds its folder gone)
                log.exception("studio job %s failed", job.id)
            outcome, state = {"type": "error", "code": "INTERNAL", "fields": [], "reason": "",
                              "message": "the studio could not finish this job (its log "
                                         "has the details)"}, "failed"  # fmt: skip
        size = scratch.folder_bytes(job.folder)
        with self.lock:
            job.bytes = size
            self.count_bytes(session, size)
        job.publish(outcome, state)
        if state == "failed":
            self._forget_old_failures(session)

    def _forget_old_failures(self, session: Session) -> None:
        """The session's failed scores past the newest max_failed_scores, removed (they count
        as no item, so a caller asking for failures would pile them up)."""
        with self.lock:
            failed = [job.id for job in session.jobs.values() if job.state == "failed"]
        for job_id in failed[: max(0, len(failed) - self.config.max_failed_scores)]:
            self.remove_job(session, job_id)

    def _score(self, job: Job, video: Path, controls: UserControls, outputs: JobOutputs) -> None:
        duration_s = 0.0

        def record(event: gateway_pb2.ScoreEvent) -> None:
            nonlocal duration_s
            which = event.WhichOneof("event")
            message = getattr(event, which)
            if which == "analysis":
                duration_s = message.duration_s
            body = analysis_json(message) if which in ("analysis", "result") else (
                MessageToDict(message, preserving_proto_field_name=True))  # fmt: skip
            job.publish({"type": which, **body})

        # Asked afresh: a generator swapped since the page loaded may make no MIDI (a
        # diffusion model's audio only), and asking for it had failed every score.
        offered = self.describe()
        stems = offered.stems if outputs.stems is None else outputs.stems
        options = OutputOptions(output=job.folder / VIDEO_OUT,
                                midi=job.folder / MIDI_OUT if offered.midi else None,
                                stems_dir=job.folder / STEMS_DIR if stems else None,
                                lufs=outputs.lufs,
                                keep_original_audio=outputs.keep_original_audio)  # fmt: skip
        score_remote(self.link.server, str(video), controls, options, lambda _: None,
                     metadata=self.link.metadata, tls=self.link.tls,
                     on_event=record)  # fmt: skip
        # The page's player switches between versions on an audio element.
        decode_audio_to_wav(job.folder / VIDEO_OUT, job.folder / AUDIO_OUT, 48000,
                            max(1, round(duration_s * 48000)))  # fmt: skip

    def remove_video(self, session: Session, video_id: str) -> None:
        with self.lock:
            entry = session.videos.pop(video_id)
            self.count_bytes(session, -entry["bytes"])
        if not entry["shared"]:
            shutil.rmtree(Path(entry["path"]).parent, ignore_errors=True)
        elif "analysis" in entry:
            Path(entry["analysis"]).unlink(missing_ok=True)

    def remove_job(self, session: Session, job_id: str) -> None:
        with self.lock:
            job = session.jobs.pop(job_id)
            self.count_bytes(session, -job.bytes)
        shutil.rmtree(job.folder, ignore_errors=True)

    @staticmethod
    def files(job: Job) -> list[str]:
        names = [n for n in (VIDEO_OUT, AUDIO_OUT, MIDI_OUT) if (job.folder / n).is_file()]
        return [*names, "stems.zip"] if (job.folder / STEMS_DIR).is_dir() else names


# The names a studio on a loopback address answers to, beside studio.allowed_hosts.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARD_HOSTS = ("", "0.0.0.0", "::")


def visitor_address(request: Request) -> str:
    """The address the studio's per-address limits count a visitor by (address_group: an
    IPv6 address by its /64)."""
    return address_group(request.client.host) if request.client else ""


class RequestHeadCheck:
    """A request's line and headers past `max_bytes` are refused (431), counted whole: h11
    holds them to that size only while they arrive in pieces, and 100 KB in one read had
    been answered. And requests whose Host header names none of the studio's names are
    refused (400). A web page on another site can make a visitor's browser call a name it
    controls that resolves to 127.0.0.1 (DNS rebinding): the studio had answered it, and
    would upload and score for it (with `--server ... --token`, with the studio's token). A
    studio on every address (0.0.0.0) without studio.allowed_hosts answers any name. Both
    answered in the API's shape."""

    def __init__(self, app: Any, names: frozenset[str] | None, max_bytes: int):
        self.app, self.names, self.max_bytes = app, names, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            # As they came: "METHOD target HTTP/1.1", then "name: value" lines.
            size = len(scope["raw_path"]) + len(scope["query_string"]) + 16
            size += sum(len(name) + len(value) + 4 for name, value in scope["headers"])
            if size > self.max_bytes:
                await _headers_over(self.max_bytes)(scope, receive, send)
                return
        if self.names is not None and scope["type"] in ("http", "websocket"):
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            name = name.strip("[]").lower()
            if name not in self.names:
                answer = _error(400, f"this studio answers to {', '.join(sorted(self.names))}, "
                                     f"not {name or 'no name'} (studio.allowed_hosts)")  # fmt: skip
                await answer(scope, receive, send)
                return
        await self.app(scope, receive, send)


def studio_names(config: StudioConfig) -> frozenset[str] | None:
    """The names the studio answers to (None: any)."""
    names = {name.strip("[]").lower() for name in config.allowed_hosts}
    if config.host in WILDCARD_HOSTS:
        return frozenset(names) if names else None
    return frozenset({*names, *LOOPBACK_NAMES, config.host.strip("[]").lower()})


class SessionRefused(Exception):
    """A session cannot be kept for the request's address; the message says why."""


class EventStream(StreamingResponse):
    """A job's events as Server-Sent Events, calling `ended` once its response ends, however
    it ends (its caller gone before its first event included)."""

    def __init__(self, events: AsyncIterator[str], ended: Callable[[], None]):
        super().__init__(events, media_type="text/event-stream",
                         headers={"Cache-Control": "no-store"})  # fmt: skip
        self.ended = ended

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.ended()


class StudioHTTP(H11Protocol):
    """uvicorn's HTTP/1.1 on h11, which holds a request's line and headers to
    h11_max_incomplete_event_size (httptools, uvicorn's default, takes any: an 8 MB header had
    been read whole and answered); a request it refuses is answered in the API's shape.

    And what uvicorn leaves open: a request's line and headers must have come within
    `header_timeout_s` of the connection (or of its last response), and one address holds at
    most `max_connections_per_address` connections, the studio `max_connections`. A
    connection sending nothing, or its headers a byte at a time, had been held for good:
    1,100 of them from one client had taken every file descriptor, and every other visitor
    was refused. `studio_protocol` binds these to a StudioConfig."""

    limits: StudioConfig
    # Connections open per address, shared by one server's connections.
    peers: Counter[str]
    _counted = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._address = address_group(self.client[0]) if self.client else ""
        self._headers_due: asyncio.TimerHandle | None = None
        if len(self.connections) > self.limits.max_connections:
            self._refuse(_error(503, f"the studio holds {self.limits.max_connections} "
                                     "connections: try again later"))  # fmt: skip
            return
        most = self.limits.max_connections_per_address
        if self.peers[self._address] >= most:
            self._refuse(_error(429, f"this address holds {most} connections to the studio: "
                                     "close one first"))  # fmt: skip
            return
        self.peers[self._address] += 1
        self._counted = True
        self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._headers_arrived()
        if self._counted:
            self._counted = False
            _change(self.peers, self._address, -1)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._between_requests():
            self._await_headers()  # a request begun, its headers not all here
        else:
            self._headers_arrived()

    def _between_requests(self) -> bool:
        """No request is being answered (bytes after an answer, the rest of a body refused
        early, count as none: they had kept a connection for good, a byte at a time)."""
        return not self.transport.is_closing() and (
            self.cycle is None or self.cycle.response_complete
        )

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._await_headers()

    def _await_headers(self) -> None:
        if self._headers_due is None:
            self._headers_due = self.loop.call_later(self.limits.header_timeout_s,
                                                     self._headers_late)  # fmt: skip

    def _headers_arrived(self) -> None:
        if self._headers_due is not None:
            self._headers_due.cancel()
            self._headers_due = None

    def _headers_late(self) -> None:
        self._headers_due = None
        if self._between_requests():
            self._refuse(_error(408, f"the request's line and headers did not come within "
                                     f"{self.limits.header_timeout_s:g} s"))  # fmt: skip

    def _refuse(self, answer: Response) -> None:
        """Send `answer` (the API's shape) with no request read, or with one h11 refused, and
        close."""
        status = answer.status_code
        head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}".encode()]
        head += [name + b": " + value for name, value in answer.raw_headers]
        head += [b"connection: close", b"", b""]
        self.transport.write(b"\r\n".join(head) + bytes(answer.body))
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        limit = self.config.h11_max_incomplete_event_size
        if limit is not None and len(self.conn.trailing_data[0]) > limit:
            self._refuse(_headers_over(limit))
        else:
            self._refuse(_error(400, "the request is not valid HTTP"))


class CutOffRequests(logging.Filter):
    """Leaves out uvicorn's traceback of each request it cancels, a CancelledError, when the
    studio stops with requests still running after grace_s: its one line ("Cancel N running
    task(s), timeout graceful shutdown exceeded") says what happened, and each request's
    traceback had followed it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError))


CUT_OFF_REQUESTS = CutOffRequests()


class InvalidRequests(logging.Filter):
    """Leaves out uvicorn's warning for each connection that sent no valid HTTP (the caller
    is answered 400 and the connection closed): one line each, with no time or address, a
    loop of junk connections had written 20,000 in 5 s."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "Invalid HTTP request received."


INVALID_REQUESTS = InvalidRequests()


# File descriptors a studio needs beside its connections' (its gateway, tagger and generator,
# their models and media, the uploads' files).
OWN_FILES = 1024


def raise_open_file_limit(config: StudioConfig) -> None:
    """Lift the process's soft limit on open files towards what max_connections asks (a
    connection one, an upload two): at the common 1,024, 988 held connections had left the
    studio's own gateway without one ("Too many open files"). Said where the hard limit is
    lower."""
    import resource

    wanted = 2 * config.max_connections + OWN_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return
    ceiling = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, ceiling), hard))
    if ceiling < wanted:
        log.warning("studio: %d open files allowed, and studio.max_connections %d asks for "
                    "about %d: raise the limit (ulimit -n) or lower it", ceiling,
                    config.max_connections, wanted)  # fmt: skip


def studio_protocol(config: StudioConfig) -> type[StudioHTTP]:
    """StudioHTTP held to `config`'s limits, with a count of connections per address of its
    own (one per server)."""
    return type("StudioHTTP", (StudioHTTP,), {"limits": config, "peers": Counter()})


def server_options(config: StudioConfig) -> dict[str, Any]:
    """How uvicorn serves the studio (`bgm studio`, and the tests that serve it)."""
    return {"host": config.host, "port": config.port, "log_level": "warning",
            "timeout_graceful_shutdown": config.grace_s, "http": studio_protocol(config),
            "h11_max_incomplete_event_size": config.max_header_bytes}  # fmt: skip


def _kept_analysis(message: Any, path: Path) -> int:
    """The analysis `message` written to `path` as the page reads it (JSON); its size."""
    data = json.dumps(analysis_json(message)).encode()
    path.write_bytes(data)
    return len(data)


def analysis_json(message: Any) -> dict[str, Any]:
    """An analysis or a result as the page reads it: protobuf's JSON (thumbnails in base64),
    with the tags and their origins as the domain names them ("genre", "user", ...)."""
    body = MessageToDict(message, preserving_proto_field_name=True)
    body["tags"] = dataclasses.asdict(tags_from_proto(message.tags))
    return body


def rpc_error(error: grpc.RpcError) -> dict[str, Any]:
    """A gateway's error as the page shows it: its code, message, fields and reason."""
    details = error_details(error)
    return {"code": error.code().name, "message": error.details() or "",
            "fields": details.fields, "reason": details.reason}  # fmt: skip


async def _limited_body(request: Request, most: int, config: StudioConfig) -> bytes | None:
    """The request's body, or None once it passes `most` bytes (read no further); raises
    ClientDisconnect, or BodyTooSlow."""
    body = bytearray()
    async for chunk in _chunks(request, config):
        body += chunk
        if len(body) > most:
            return None
    return bytes(body)


class BodyTooSlow(Exception):
    """A request's body stalled or came too slowly; the message says which."""


async def _chunks(request: Request, config: StudioConfig) -> AsyncIterator[bytes]:
    """The request's body as it comes. BodyTooSlow once nothing comes for `upload_stall_s`
    (an upload that stalled had held its connection, its file and a place in its session
    for good, and kept the studio from stopping), or once, after that long, fewer than
    `min_upload_bytes_per_s` a second have come on average (one byte every 59 s had kept
    both for good)."""
    stream = request.stream()
    stall_s, rate = config.upload_stall_s, config.min_upload_bytes_per_s
    start, received = time.monotonic(), 0
    while True:
        # The next bytes are due within stall_s, and by when the average would fall short.
        due = start + stall_s + (received / rate if rate else math.inf)
        wait = min(stall_s, due - time.monotonic())
        try:
            chunk = await asyncio.wait_for(anext(stream), max(0.0, wait))
        except StopAsyncIteration:
            return
        except TimeoutError:
            if wait < stall_s:
                raise BodyTooSlow(f"it came at under {rate:g} bytes a second") from None
            raise BodyTooSlow(f"it stalled: nothing came for {stall_s:g} s") from None
        received += len(chunk)
        yield chunk


def _zipped_stems(folder: Path) -> int:
    """Zip the job's stems into one file beside them; its size."""
    partial = folder / "stems.zip.partial"
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
        for stem in sorted((folder / STEMS_DIR).glob("*.wav")):
            archive.write(stem, f"stems/{stem.name}")
    partial.rename(folder / "stems.zip")
    return (folder / "stems.zip").stat().st_size


# The API's code for each HTTP status the studio answers with itself.
STATUS_CODES = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 405: "UNIMPLEMENTED",
                408: "DEADLINE_EXCEEDED", 409: "FAILED_PRECONDITION",
                413: "RESOURCE_EXHAUSTED", 415: "INVALID_ARGUMENT",
                429: "RESOURCE_EXHAUSTED",
                431: "RESOURCE_EXHAUSTED", 503: "UNAVAILABLE",
                507: "RESOURCE_EXHAUSTED"}  # fmt: skip


MAX_NAME_BYTES = 200


def upload_name(asked: str) -> str:
    """The file name an upload is kept under: the visitor's (percent-encoded UTF-8, as the
    page sends it: a header holds no CJK or emoji), made safe, and always a name in its own
    folder ("." or ".." would be the folder or the session's videos), one that says what it
    is: "video" with the visitor's extension where nothing else of theirs is left."""
    name = SAFE_NAME.sub("_", urllib.parse.unquote(asked, errors="replace"))[-100:]
    # A file name takes at most 255 bytes: 90 CJK characters are 270 (had been a 500).
    while len(name.encode()) > MAX_NAME_BYTES:
        name = name[1:]
    stem, extension = os.path.splitext(name)
    if stem.strip("._"):
        return name
    # (A name in emoji alone had been kept, and shown, as "_.mp4".)
    default = Path(DEFAULT_VIDEO_NAME)
    return (default.with_suffix(extension) if extension.strip("._") else default).name


class ControlError(ValueError):
    """A score request's control that is not what the gateway takes, and which control."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


# Each score control, the form the gateway takes it in; a value of another type is refused
# here (a list of numbers as genres, a seed of 2**80, a lone surrogate in the prompt had
# each failed inside the job, INTERNAL, with a traceback in the log), and only what was
# taken is kept with the job to show again.
INT64 = 2**63


def _text(body: dict[str, Any], name: str, default: str) -> str:
    value = body.get(name, default)
    if not isinstance(value, str):
        raise ControlError(name, "must be text")
    return _unicode(name, value)


def _names(body: dict[str, Any], name: str) -> list[str]:
    value = body.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ControlError(name, "must be a list of names")
    return [_unicode(name, v) for v in value]


def _unicode(name: str, text: str) -> str:
    """`text`, which protobuf can encode (JSON's lone surrogates it cannot)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ControlError(name, "is not valid Unicode text") from None
    return text


def _number(body: dict[str, Any], name: str, default: float | None) -> float | None:
    """A number, or one written as text (a form field's value)."""
    value = body.get(name, default)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ControlError(name, "must be a finite number") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ControlError(name, "must be a finite number")
    try:
        number = float(value)  # a JSON integer of 400 digits is past any float
    except OverflowError:
        raise ControlError(name, "must be a finite number") from None
    if not math.isfinite(number):
        raise ControlError(name, "must be a finite number")
    return number


def _whole(body: dict[str, Any], name: str, default: int, limit: int) -> int:
    """A whole number, taken as written where it is an integer (as a float, a seed past 2**53
    would lose its last digits)."""
    value = body.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool):
        number = _number(body, name, default)
        value = int(number) if number is not None and number.is_integer() else None
    if value is None or not -limit <= value < limit:
        raise ControlError(name, f"must be a whole number under {limit} in size")
    return value


@dataclass(frozen=True)
class JobOutputs:
    """What a score request asks of its outputs: the video's own sound kept under the music,
    the loudness, and stems (each a track of audio as long as the video, so leaving them out
    lets a longer video be scored within the gateway's audio limit; unsaid: where the
    generator makes them)."""

    keep_original_audio: bool = False
    lufs: float = -14.0
    stems: bool | None = None


def _flag(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise ControlError(name, "must be true or false")
    return value


# What a score request may hold: the video, and the settings `score_controls` reads.
SCORE_FIELDS = frozenset({
    "video_id", "genres", "moods", "instruments", "negative", "prompt", "bpm", "key", "seed",
    "candidates", "speech", "lufs", "keep_original_audio", "stems",
})  # fmt: skip


def score_controls(body: dict[str, Any]) -> tuple[UserControls, JobOutputs, dict[str, Any]]:
    """The controls and the outputs a score request asks for, and the settings kept to show
    them again; ControlError names a bad one, or one the studio does not know (a misspelt
    control, `genre` for `genres`, had been scored with the defaults, nothing said)."""
    unknown = sorted(set(body) - SCORE_FIELDS)
    if unknown:
        raise ControlError(unknown[0], f"is not a score setting; the settings are "
                                       f"{', '.join(sorted(SCORE_FIELDS))}")  # fmt: skip
    keep = _flag(body, "keep_original_audio", False)
    stems = _flag(body, "stems", True) if "stems" in body else None
    lufs = _number(body, "lufs", -14.0)
    if lufs is None:
        raise ControlError("lufs", "must be a finite number")
    key = _text(body, "key", "") if body.get("key") is not None else ""
    controls = UserControls(
        genres=_names(body, "genres"), moods=_names(body, "moods"),
        instruments=_names(body, "instruments"), negative=_names(body, "negative"),
        prompt=_text(body, "prompt", ""), bpm=_number(body, "bpm", None), key=key or None,
        seed=_whole(body, "seed", 0, INT64), candidates=_whole(body, "candidates", 1, 2**31),
        speech=_text(body, "speech", "auto"),
    )  # fmt: skip
    settings = {
        "genres": controls.genres, "moods": controls.moods, "instruments": controls.instruments,
        "negative": controls.negative, "prompt": controls.prompt, "bpm": controls.bpm,
        "key": controls.key, "seed": controls.seed, "candidates": controls.candidates,
        "speech": controls.speech, "lufs": lufs, "keep_original_audio": keep, "stems": stems,
    }  # fmt: skip
    outputs = JobOutputs(keep_original_audio=keep, lufs=lufs, stems=stems)
    return controls, outputs, {k: v for k, v in settings.items() if k in body}


def _headers_over(limit: int) -> JSONResponse:
    return _error(431, f"the request's headers are over {limit} bytes")


def _error(status: int, message: str, field: str = "") -> JSONResponse:
    return JSONResponse({"code": STATUS_CODES[status], "message": message,
                         "fields": [field] if field else []}, status_code=status)  # fmt: skip


async def _no_such_path(request: Request, error: Exception) -> Response:
    return _error(404, f"no such path: {request.url.path}")


async def _method_not_allowed(request: Request, error: Exception) -> Response:
    response = _error(405, f"{request.method} is not allowed on {request.url.path}")
    if isinstance(error, HTTPException) and error.headers:  # Allow: what the path takes
        response.headers.update(error.headers)
    return response


def _reading(config: BgmConfig, folder: Path) -> BgmConfig:
    """`config` with `folder` among the file roots of its gateway and its tagger."""
    gateway, tagger = config.gateway, config.tagger

    def rooted(policy: SourcePolicy) -> SourcePolicy:
        return policy.model_copy(update={"file_roots": [*policy.file_roots, folder]})

    return config.model_copy(update={
        "gateway": gateway.model_copy(update={"sources": rooted(gateway.sources)}),
        "tagger": tagger.model_copy(update={"sources": rooted(tagger.sources)}),
    })  # fmt: skip


def create_app(config: StudioConfig, link: GatewayLink | BgmConfig) -> Starlette:
    """The studio's app, calling the gateway at `link`, or, given the whole config, a gateway
    (with its tagger and generator) it runs in its own process while it serves."""
    services = link if isinstance(link, BgmConfig) else None
    if services is not None:
        # Before anything starts: refused inside the server's start-up, it had been a
        # traceback and "Application startup failed".
        check_tagger_reads_gateway_files(services)
        calls, most = config.max_gateway_scores + config.max_gateway_analyses, (
            services.gateway.max_requests_per_client)  # fmt: skip
        if calls > most:
            raise ConfigError(
                f"studio.max_gateway_scores and studio.max_gateway_analyses add up to {calls}, "
                f"more than the {most} calls its gateway takes from one client "
                "(gateway.max_requests_per_client): lower them or raise it"
            )
    studio = Studio(config, link if isinstance(link, GatewayLink) else GatewayLink(""))

    def with_cookie(response: Response, key: str) -> Response:
        response.set_cookie(COOKIE, key, httponly=True, samesite="strict",
                            max_age=int(config.keep_s))  # fmt: skip
        return response

    async def index(request: Request) -> Response:
        key, _ = studio.session(request)
        return with_cookie(FileResponse(STATIC / "index.html"), key)

    async def choices(request: Request) -> Response:
        """What the page offers: the genres and instruments the gateway's generator plays, the
        moods and keys, its candidates and whether it makes stems (Gateway.Describe: the
        studio's own vocabulary had offered a swapped generator what it does not play), and
        the studio's speech modes and samples."""
        try:
            described = await studio.description()
        except grpc.RpcError as error:
            return JSONResponse(rpc_error(error), status_code=502)
        vocabulary = described.vocabulary
        return JSONResponse({
            "genres": list(vocabulary.genres), "moods": list(vocabulary.moods),
            "instruments": list(vocabulary.instruments),
            "keys": [f"{t} {m}" for m in vocabulary.modes for t in vocabulary.tonics],
            "candidates": described.max_candidates, "stems": described.stems,
            "midi": described.midi, "generator": described.generator, "sound": described.sound,
            "speech": list(SPEECH_MODES), "samples": SAMPLES,
        })  # fmt: skip

    async def state(request: Request) -> Response:
        key, session = studio.session(request)
        videos = json.dumps([{k: entry[k] for k in VIDEO_KEYS}
                             for entry in session.videos.values()])  # fmt: skip
        jobs = ", ".join(j.summary() for j in list(session.jobs.values()))
        body = f'{{"videos": {videos}, "jobs": [{jobs}]}}'
        return with_cookie(Response(body, media_type="application/json"), key)

    async def upload(request: Request) -> Response:
        if request.headers.get("content-type", "").lower().startswith("multipart/"):
            # (A form had been kept whole as the video, and its analysis said the file was
            # no video FFmpeg can read.)
            return _error(
                415,
                "send the video's bytes as the request's body (as the page "
                "does; curl --data-binary @video.mp4), not as a form",
                "video",
            )
        name = upload_name(request.headers.get("x-file-name", ""))
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > config.max_upload_bytes:
            # Refused from its stated size, before a byte is written (a 5 GiB upload had been
            # written to disk up to the limit first).
            return _error(413, f"the video is larger than {config.max_upload_bytes} bytes",
                          "video")  # fmt: skip
        key, session = studio.session(request)
        refusal = studio.room_refusal(session)
        if refusal:
            return _error(507, refusal, "video")
        try:
            key, session = studio.kept_session(request)
        except SessionRefused as refused:
            return _error(429, str(refused), "video")
        path = session.new_video_path(name)
        size, kept = 0, False
        with studio.lock:
            session.uploads += 1
        try:
            with path.open("wb") as out:
                async for chunk in _chunks(request, config):
                    if size + len(chunk) > config.max_upload_bytes:
                        return _error(413, f"the video is larger than "
                                           f"{config.max_upload_bytes} bytes", "video")  # fmt: skip
                    refusal = studio.reserve(session, len(chunk))
                    if refusal:
                        return _error(507, refusal, "video")
                    size += len(chunk)
                    out.write(chunk)
            if size == 0:
                return _error(400, "the upload is empty", "video")
            kept = True
            return with_cookie(JSONResponse(session.add_video(path, size)), key)
        except BodyTooSlow as slow:
            return _error(408, f"the upload was given up: {slow}", "video")
        except ClientDisconnect:
            # The visitor left (a tab closed mid-upload): nothing to answer, nothing kept.
            return Response(status_code=400)
        finally:
            with studio.lock:
                session.uploads -= 1
                session.used = time.monotonic()
            if not kept:  # refused, or the visitor left half-way
                # (Cut off as the studio stops, it may find the studio's folder gone.)
                shutil.rmtree(path.parent, ignore_errors=True)
                studio.release(session, size)
                studio.forget_if_empty(key)

    async def analysis(request: Request) -> Response:
        """What the gateway's tagger sees in a video, before scoring (cached per video)."""
        key, session = studio.session(request)
        entry = session.videos.get(request.path_params["video_id"])
        if entry is None:
            return _error(404, "no such video in this session")
        if "analysis" not in entry:
            gateway = studio.link
            address = visitor_address(request)

            async def analyse() -> str:
                async with studio.analysis_turn(address, key):
                    message = await asyncio.to_thread(analyze_remote, gateway.server,
                                                      Path(entry["path"]), gateway.metadata,
                                                      gateway.tls,
                                                      by_uri=gateway.reads_folder)  # fmt: skip
                # Encoded once, off the event loop (see Job.encoded), and kept on disk as the
                # session's: kept in memory, a visitor's analyses had been a cache no quota
                # counted (a 20-minute video's 4.6 MB each, a hostile studio review).
                path = session.analysis_path(entry)
                size = await asyncio.to_thread(_kept_analysis, message, path)
                with studio.lock:
                    studio.count_bytes(session, size)
                    entry["bytes"] += size
                return str(path)

            try:
                entry["analysis"] = await studio.once(f"analysis {entry['id']}", analyse)
            except grpc.RpcError as error:
                return JSONResponse(rpc_error(error), status_code=422)
            except ValueError as error:
                return JSONResponse({"code": "OUT_OF_RANGE", "message": str(error),
                                     "fields": ["video"]}, status_code=422)  # fmt: skip
        return FileResponse(entry["analysis"], media_type="application/json")

    async def sample(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in SAMPLES:
            return _error(404, f"no sample {name!r}")
        key, session = studio.session(request)
        refusal = studio.room_refusal(session)
        if refusal:
            return _error(507, refusal, "video")
        try:
            key, session = studio.kept_session(request)
        except SessionRefused as refused:
            return _error(429, str(refused), "video")
        path = await studio.once(f"sample {name}",
                                 lambda: asyncio.to_thread(studio.sample_video, name))  # fmt: skip
        return with_cookie(JSONResponse(session.add_sample(path)), key)

    async def remove_video(request: Request) -> Response:
        _, session = studio.session(request)
        video_id = request.path_params["video_id"]
        if video_id not in session.videos:
            return _error(404, "no such video in this session")
        if any(j.video_id == video_id and j.state == "running" for j in session.jobs.values()):
            return _error(409, "a score of this video is still running")
        if f"analysis {video_id}" in studio.pending:
            # (Removed under it, the analysis had ended in a plain-text 500.)
            return _error(409, "this video is being analysed")
        studio.remove_video(session, video_id)
        return JSONResponse({"id": video_id})

    async def remove_job(request: Request) -> Response:
        _, session = studio.session(request)
        job = session.jobs.get(request.path_params["job_id"])
        if job is None:
            return _error(404, "no such job in this session")
        if job.state == "running":
            return _error(409, "this score is still running")
        if f"stems {job.id}" in studio.pending:
            return _error(409, "this score's stems are being zipped for a download")
        studio.remove_job(session, job.id)
        return JSONResponse({"id": job.id})

    async def video(request: Request) -> Response:
        _, session = studio.session(request)
        entry = session.videos.get(request.path_params["video_id"])
        if entry is None:
            return _error(404, "no such video in this session")
        # Played by the page's <video>: served as what its name says only if that is a
        # video or sound; anything else (an uploaded .html or .svg had been served as a page
        # of the studio's own origin) as bytes, never sniffed.
        kind = mimetypes.guess_type(entry["name"])[0] or ""
        if not kind.startswith(("video/", "audio/")):
            kind = "application/octet-stream"
        return FileResponse(entry["path"], media_type=kind,
                            headers={"X-Content-Type-Options": "nosniff"})  # fmt: skip

    async def score(request: Request) -> Response:
        key, session = studio.session(request)
        try:
            raw = await _limited_body(request, MAX_SCORE_BODY_BYTES, config)
        except BodyTooSlow as slow:
            return _error(408, f"the request was given up: {slow}")
        except ClientDisconnect:
            return Response(status_code=400)
        if raw is None:
            return _error(413, f"the request is over {MAX_SCORE_BODY_BYTES} bytes")
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):  # (JSON nested 20,000 deep: had been a 500)
            return _error(400, "the request is not JSON")
        if not isinstance(body, dict):
            return _error(400, "the request is not a JSON object")
        entry = session.videos.get(str(body.get("video_id", "")))
        if entry is None:
            return _error(400, "choose a video first (upload one or pick a sample)", "video")
        if session.running() >= config.max_running_scores:
            return _error(429, f"this session has {config.max_running_scores} scores running: "
                               "wait for one to end")  # fmt: skip
        address = visitor_address(request)
        most = config.max_running_scores_per_address
        if studio.running_from(address) >= most:
            return _error(429, f"{most} scores asked from this address are running: wait for "
                               "one to end")  # fmt: skip
        refusal = studio.room_refusal(session)
        if refusal:
            return _error(507, refusal)
        try:
            controls, outputs, settings = score_controls(body)
        except ControlError as error:
            field = {"lufs": "output.loudness_lufs"}.get(error.field, error.field)
            return _error(400, str(error), field)
        job_id = secrets.token_hex(6)
        folder = session.folder / "jobs" / job_id
        folder.mkdir(parents=True)
        job = Job(job_id, entry["id"], folder, settings, address=address,
                  loop=asyncio.get_running_loop())  # fmt: skip
        session.jobs[job_id] = job
        task = asyncio.create_task(
            studio.score_in_turn(key, session, job, Path(entry["path"]), controls, outputs)
        )
        studio.score_tasks.add(task)
        task.add_done_callback(studio.score_tasks.discard)
        return with_cookie(JSONResponse({"id": job_id}), key)

    async def events(request: Request) -> Response:
        _, session = studio.session(request)
        job = session.jobs.get(request.path_params["job_id"])
        if job is None:
            return _error(404, "no such job in this session")

        if session.streams >= config.max_event_streams:
            return _error(429, f"this session has {config.max_event_streams} event streams "
                               "open: close one first")  # fmt: skip

        # Counted as it is granted: counted once it began, streams asked for at once had all
        # passed the check above before any was counted.
        session.streams += 1

        def ended() -> None:
            session.streams -= 1

        async def stream() -> AsyncIterator[str]:
            async for event in job.stream():
                yield f"data: {event}\n\n"

        return EventStream(stream(), ended)

    async def download(request: Request) -> Response:
        _, session = studio.session(request)
        job = session.jobs.get(request.path_params["job_id"])
        name = request.path_params["name"]
        if job is None or job.state != "done" or name not in Studio.files(job):
            return _error(404, "no such file")
        if name == "stems.zip":
            # Zipped once, in a thread, to a file: a long piece's stems are gigabytes, and
            # zipping them on the event loop at every download had held the page 5 s.
            archive = job.folder / name
            if not archive.exists():

                async def zipped() -> None:
                    size = await asyncio.to_thread(_zipped_stems, job.folder)
                    with studio.lock:
                        job.bytes += size
                        studio.count_bytes(session, size)

                await studio.once(f"stems {job.id}", zipped)
            return FileResponse(archive, filename=name, media_type="application/zip")
        return FileResponse(job.folder / name, filename=name)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async def sweeping() -> None:
            while True:
                await asyncio.sleep(min(60.0, config.keep_s))
                await asyncio.to_thread(studio.sweep)

        # A stop past grace_s, one line in the log (the same filter is added once, whatever
        # the number of studios).
        logging.getLogger("uvicorn.error").addFilter(CUT_OFF_REQUESTS)
        logging.getLogger("uvicorn.error").addFilter(INVALID_REQUESTS)
        task = asyncio.create_task(sweeping())
        async with contextlib.AsyncExitStack() as stack:
            if services is not None:
                # Its own gateway and tagger read the studio's folder: a video is analysed
                # by URI, where one over the 32 MiB a call carries had had no timeline.
                reading = _reading(services, studio.folder)
                address = await stack.enter_async_context(in_process_services(reading))
                studio.link = GatewayLink(address, reads_folder=True)
                log.info("studio: its own gateway on %s", address)
            yield
        task.cancel()
        studio.close()

    app = Starlette(routes=[
        Route("/", index),
        Route("/api/choices", choices),
        Route("/api/state", state),
        Route("/api/videos", upload, methods=["POST"]),
        Route("/api/samples/{name}", sample, methods=["POST"]),
        Route("/api/videos/{video_id}", video),
        Route("/api/videos/{video_id}", remove_video, methods=["DELETE"]),
        Route("/api/videos/{video_id}/analysis", analysis),
        Route("/api/scores", score, methods=["POST"]),
        Route("/api/scores/{job_id}", remove_job, methods=["DELETE"]),
        Route("/api/scores/{job_id}/events", events),
        Route("/api/scores/{job_id}/files/{name}", download),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ], lifespan=lifespan,
       # Starlette's own answers in the API's shape too (they had been text/plain).
       exception_handlers={404: _no_such_path, 405: _method_not_allowed})  # fmt: skip
    app.state.studio = studio
    app.add_middleware(RequestHeadCheck, names=studio_names(config),
                       max_bytes=config.max_header_bytes)  # fmt: skip
    return app
