"""Property-based fuzzing of every RPC of the three services, against real servers.

Hypothesis builds arbitrary protobuf messages from the contracts' descriptors (every field
type, nested messages, oneofs, repeated fields, unknown enum values, unknown fields), biased
towards values the services know (vocabulary tags, keys, URIs of the test media, small
durations) so that many requests get past the edge checks, and sends them to `bgm serve all`
started on free localhost ports. Whatever it sends:

1. no call ends INTERNAL or UNKNOWN (any other status, OK included, is fine; every call has
   a short deadline, since a fuzzed request can be valid and do real work, so
   DEADLINE_EXCEEDED is fine too);
2. afterwards the server process runs, every service reports SERVING and answers a normal
   request (Tagger.Describe, Generator.Describe, Gateway.Score of a small clip);
3. no file is left in the gateway's staging folder, the tagger's scratch folder or the output
   folder (files that an OK request delivered there are removed as they arrive), and the
   media folder is unchanged.

The servers run with the test's media folder (real videos, a truncated and a corrupt one, a
text file, an empty file, a folder and a symlink out of it), an HTTP server on 127.0.0.1
serving the same files (on the allow-list, so http URIs reach a real download) and an upload
limit of 512 KiB (so that fuzzed chunks cross it).

CI runs a few examples per RPC; a longer run is one command:

    BGM_FUZZ_EXAMPLES=2000 .venv/bin/python -m pytest -s tests/test_fuzz.py

Environment (all optional):
    BGM_FUZZ_EXAMPLES    examples per RPC (default 40)
    BGM_FUZZ_TIMEOUT_S   each call's deadline, seconds (default 8)
    BGM_FUZZ_BUDGET_S    seconds of calls per RPC, after which the remaining examples send
                         nothing (default 20 + 0.5 per example): bounds the time if the
                         servers turn slow
    BGM_FUZZ_SHRINK=1    shrink a failing example (minutes against real servers) and print
                         Hypothesis's report; by default the first failing request is reported
    BGM_FUZZ_KEEP_GOING=1  do not stop at an INTERNAL or UNKNOWN: fail at the end of the RPC's
                         examples with every distinct one (to survey the servers for bugs)
    BGM_FUZZ_VERBOSE=1   print every case's status and message (with -s)

Each test prints how many cases its RPC got and their statuses (with -s); the same counts are
in the run's summary without -s too, whichever worker ran the test (tests/conftest.py).
"""

from __future__ import annotations

import functools
import http.server
import io
import math
import os
import random
import re
import struct
import threading
import time
import urllib.parse
import wave
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import grpc
import numpy as np
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, OneofDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, Phase, Verbosity, example, given, settings
from hypothesis import strategies as st

from services.devserver import Running, start, stop
from services.gen.bgm.v1 import (
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    generator_pb2,
    generator_pb2_grpc,
    tagger_pb2,
    tagger_pb2_grpc,
)
from services.media.synth import Shot, write_video
from services.vocabulary import load_vocabulary
from tests.conftest import FUZZ_SUMMARY

pytestmark = [
    pytest.mark.slow,
    # Hypothesis formats a failing example even when it does not print it (quiet).
    pytest.mark.filterwarnings("ignore:Generating overly large repr"),
]

# pytest's record_property fixture.
RecordProperty = Callable[[str, object], None]

EXAMPLES = int(os.environ.get("BGM_FUZZ_EXAMPLES", "40"))
CALL_TIMEOUT_S = float(os.environ.get("BGM_FUZZ_TIMEOUT_S", "8"))
# BGM_FUZZ_VERBOSE=1 (with -s): every case's status and message.
VERBOSE = os.environ.get("BGM_FUZZ_VERBOSE", "") not in ("", "0")
SHRINK = os.environ.get("BGM_FUZZ_SHRINK", "") not in ("", "0")
# Seconds of requests per RPC; past it the remaining examples send nothing (a bound on the
# module's time should the servers turn slow: every call may run to its deadline).
BUDGET_S = float(os.environ.get("BGM_FUZZ_BUDGET_S", str(20 + 0.5 * EXAMPLES)))
# BGM_FUZZ_KEEP_GOING=1: an INTERNAL or UNKNOWN does not stop the examples (nor is it shrunk);
# the test fails at its end listing every distinct one (to survey a server for bugs).
KEEP_GOING = os.environ.get("BGM_FUZZ_KEEP_GOING", "") not in ("", "0")
# Small, so that a few fuzzed chunks cross it.
MAX_UPLOAD_BYTES = 512 * 1024
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]
# Nested messages deeper than this are left unset (the contracts nest four levels).
MAX_DEPTH = 6
# How long the checks after the examples wait for cancelled work to finish.
SETTLE_S = 30.0
BAD = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)

RPCS = (
    "Gateway.Score",
    "Gateway.ScoreUpload",
    "Gateway.Analyze",
    "Tagger.Analyze",
    "Tagger.Describe",
    "Generator.Generate",
    "Generator.Describe",
)
# Statuses per RPC, over every case tried (shrinking included).
STATUSES: dict[str, Counter[str]] = {rpc: Counter() for rpc in RPCS}
# With KEEP_GOING: each distinct INTERNAL or UNKNOWN (by its message and the exception in the
# server's traceback) and its first report.
FAILURES: dict[str, dict[tuple[str, str], str]] = {rpc: {} for rpc in RPCS}
# The test files' bytes by name, for the failure reports.
NAMED_BYTES: dict[bytes, str] = {}
# When each RPC's first case was sent, and the examples not sent once its budget ran out.
STARTED: dict[str, float] = {}
NOT_SENT: Counter[str] = Counter()

FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    # Shrinking re-sends a failing request hundreds of times (minutes against real servers)
    # and Hypothesis's own report of an unshrunk example can be megabytes: by default the
    # failure is the first example that fails, reported by the test (the request, the status,
    # the server's traceback). BGM_FUZZ_SHRINK=1 shrinks it and prints Hypothesis's report.
    phases=[Phase.explicit, Phase.generate, *([Phase.shrink, Phase.explain] * SHRINK)],
    verbosity=Verbosity.normal if SHRINK else Verbosity.quiet,
    print_blob=SHRINK,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)


# ---- the servers and what the requests may name ---------------------------------------


@dataclass
class Target:
    running: Running
    http: str
    uris: list[str]
    # The URIs of real videos.
    good_uris: list[str]
    videos: list[bytes]
    wav: bytes
    jpeg: bytes
    media_before: dict[str, int]


@dataclass
class Channels:
    gateway: grpc.Channel
    tagger: grpc.Channel
    generator: grpc.Channel


def listing(folder: Path) -> dict[str, int]:
    """Every path under `folder` (symlinks not followed) and its size (-1: not a file)."""
    if not folder.exists():
        return {}
    return {
        str(p.relative_to(folder)): p.lstat().st_size if p.is_file() and not p.is_symlink() else -1
        for p in sorted(folder.rglob("*"))
    }


def wav_bytes(seconds: float = 0.5, rate: int = 22050) -> bytes:
    """A small valid WAV: a tone (a reference_audio the server can read)."""
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return buffer.getvalue()


def write_media(media: Path) -> tuple[list[bytes], list[str]]:
    """Test media of every kind a URI may name; returns the video bytes and file names."""
    clip = write_video(
        media / "clip.mp4",
        [Shot(0.8, speed=0.4), Shot(0.8, speed=0.9, hue=0.6)],
        width=160,
        height=96,
    )
    silent = write_video(
        media / "silent.mkv", [Shot(1.0, speed=0.5)], width=128, height=72, audio=False
    )
    data = clip.path.read_bytes()
    (media / "truncated.mp4").write_bytes(data[: len(data) // 2])
    corrupt = bytearray(data)
    for i in range(len(corrupt) // 3, len(corrupt) // 3 + 64):
        corrupt[i] ^= 0xFF
    (media / "corrupt.mp4").write_bytes(bytes(corrupt))
    (media / "notes.txt").write_text("these are not the frames you are looking for\n")
    (media / "empty.mp4").write_bytes(b"")
    (media / "folder.mp4").mkdir()
    (media / "sub").mkdir()
    (media / "sub" / "clip copy #1.mp4").write_bytes(data)
    (media / "escape.mp4").symlink_to("/etc/passwd")
    videos = [data, silent.path.read_bytes(), data[: len(data) // 2], bytes(corrupt)]
    for video, name in zip(videos, ("clip.mp4", "silent.mkv", "truncated.mp4", "corrupt.mp4"),
                           strict=True):  # fmt: skip
        NAMED_BYTES[video] = name
    names = [
        "clip.mp4",
        "silent.mkv",
        "truncated.mp4",
        "corrupt.mp4",
        "notes.txt",
        "empty.mp4",
        "folder.mp4",
        "sub/clip%20copy%20%231.mp4",
        "escape.mp4",
        "missing.mp4",
        "sub/../clip.mp4",
        "%2e%2e/%2e%2e/etc/passwd",
        "clip.mp4%00.txt",
        "",
        "a b.mp4",
        "\u00e9t\u00e9.mp4",
        "clip.mp4?x=1#frag",
    ]
    return videos, names


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class QuietServer(http.server.ThreadingHTTPServer):
    """A real web server for the fetches; a request it cannot handle (a NUL in the path)
    just drops the connection, as any server may."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    media = tmp_path_factory.mktemp("fuzz-media")
    videos, names = write_media(media)
    # The media over http too: http(s) URIs get past the allow-list to a real download.
    httpd = QuietServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(media)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    web = f"http://127.0.0.1:{httpd.server_address[1]}"
    folder = tmp_path_factory.mktemp("fuzz-servers")
    http_sources = {
        "http_hosts": ["127.0.0.1", "localhost"],
        "allow_private_addresses": True,
        "timeout_s": 5.0,
    }
    try:
        running = start(
            folder,
            media,
            tagger_sources={"file_roots": [str(folder / "staging"), str(media)], **http_sources},
            sources={"file_roots": [str(media)], **http_sources},
            max_upload_bytes=MAX_UPLOAD_BYTES,
        )
    except BaseException:
        httpd.shutdown()
        raise
    media_uri = media.as_uri()
    uris = [
        *(f"{media_uri}/{name}" for name in names),
        *(f"{web}/{name}" for name in names),
        f"file://localhost{media}/clip.mp4",
        f"file://otherhost{media}/clip.mp4",
        f"{running.staging.as_uri()}/x.mp4",
        f"{running.staging.as_uri()}/../{media.name}/clip.mp4",
        f"{running.outputs.as_uri()}",
        f"{running.outputs.as_uri()}/",
        f"{running.outputs.as_uri()}/a/b",
        f"{running.outputs.as_uri()}/../escaped",
        f"{running.outputs.as_uri()}/%2e%2e/escaped",
        f"{running.outputs.as_uri()}/clip.mp4",
        "file:///etc/passwd",
        "file:///dev/zero",
        "file:///proc/self/environ",
        "file:///",
        "file:",
        "file://",
        f"https://127.0.0.1:{httpd.server_address[1]}/clip.mp4",
        f"http://localhost:{httpd.server_address[1]}/clip.mp4",
        f"http://user:pw@127.0.0.1:{httpd.server_address[1]}/clip.mp4",
        f"http://[::1]:{httpd.server_address[1]}/clip.mp4",
        f"{web}/",
        f"{web}/clip.mp4?x=1#frag",
        running.metrics,
        "http://127.0.0.1:1/x",
        "http://127.0.0.1:0/x",
        "http://[::1",
        "http://example.invalid/video.mp4",
        "https:///nohost",
        "s3://x/y",
        "gs://bucket/object.mp4",
        "ftp://127.0.0.1/x.mp4",
        "data:video/mp4;base64,AAAA",
        "//127.0.0.1/x",
        "clip.mp4",
        "../../etc/passwd",
    ]
    image = np.zeros((24, 32, 3), np.uint8)
    image[:, :16] = 200
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
    try:
        good = [f"{media_uri}/clip.mp4", f"{media_uri}/silent.mkv",
                f"{media_uri}/sub/clip%20copy%20%231.mp4", f"{web}/clip.mp4"]  # fmt: skip
        wav = wav_bytes()
        NAMED_BYTES.update({wav: "wav", jpeg: "jpeg"})
        yield Target(running, web, uris, good, videos, wav, jpeg, listing(media))
    finally:
        httpd.shutdown()
        assert stop(running) == 0, f"the server exited badly:\n{log_tail(running)}"


@pytest.fixture(scope="module")
def channels(target: Target) -> Iterator[Channels]:
    opened = Channels(
        grpc.insecure_channel(target.running.gateway, options=CHANNEL_OPTIONS),
        grpc.insecure_channel(target.running.tagger, options=CHANNEL_OPTIONS),
        grpc.insecure_channel(target.running.generator, options=CHANNEL_OPTIONS),
    )
    yield opened
    for channel in (opened.gateway, opened.tagger, opened.generator):
        channel.close()


def summary_line(rpc: str) -> str:
    counts = STATUSES[rpc]
    statuses = ", ".join(f"{name} {n}" for name, n in counts.most_common())
    line = f"fuzz: {sum(counts.values())} cases for {rpc} ({statuses})"
    if NOT_SENT[rpc]:
        line += f"; {NOT_SENT[rpc]} more not sent: its budget of {BUDGET_S:g} s ran out"
    return line


def log_tail(running: Running, since: int = 0, chars: int = 6000) -> str:
    """What the server logged from byte `since` on, from its first traceback (or the log's
    end when there is none)."""
    try:
        with running.log.open("rb") as log:
            log.seek(since)
            text = log.read().decode(errors="replace")
    except OSError as error:
        return f"(no server log: {error})"
    at = text.find("Traceback")
    if at >= 0:
        at = text.rfind("\n", 0, max(at - 1, 0)) + 1
        return text[at : at + chars]
    return text[-chars:] or "(nothing logged)"


def raised(server_log: str) -> str:
    """The exception line of the log's first traceback, request folders' and temporary
    files' ids left out ("" when there is none)."""
    lines = server_log.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("Traceback"):
            for after in lines[index + 1 :]:
                if after and not after[0].isspace():
                    return re.sub(r"[0-9a-f]{16,}", "<id>", after)[:160]
    return ""


def log_size(running: Running) -> int:
    try:
        return running.log.stat().st_size
    except OSError:
        return 0


# ---- messages from the descriptors --------------------------------------------------------

VOCABULARY = load_vocabulary()
TAGS = [*VOCABULARY.genres, *VOCABULARY.moods, *VOCABULARY.instruments]
TAGS_BY_FIELD = {
    "genres": list(VOCABULARY.genres),
    "moods": list(VOCABULARY.moods),
    "instruments": list(VOCABULARY.instruments),
}
KEYS = [f"{tonic} {mode}" for tonic in VOCABULARY.tonics for mode in VOCABULARY.modes]
# fmt: off
NEAR_TAGS = ["Pop", "pop ", " pop", "hip hop", "lofi", "piano,strings", "ambient\n", "ПОП", ""]
NEAR_KEYS = ["", "C", "C  major", "c minor", "H major", "C# major", "C major minor", " D minor"]
STRUCTURES = ["", "free", "composer", "reference"]
NEAR_STRUCTURES = ["Free", "diffusion", "composer ", "FREE", "reference\x00"]
FILE_NAMES = ["", "clip.mp4", "a.mkv", "b.webm", "c.mov", "d.avi", "x.wav", "noext", "clip.MP4"]
ODD_FILE_NAMES = [
    ".mp4", "a.b.c.mp4", "../../etc/passwd", "/etc/passwd", "con.mp4", "a/b.mp4", "a\\b.mp4",
    "." * 255, "x" * 256, "ü🎵.mp4", "clip.mp4 ", "clip.mp4\n", "clip.mp4\x00.txt",
]
ODD_STRINGS = [
    "", " ", "\x00", "a\x00b", "\x1b[31m", "\u202e", "\ufeff", "\u2028", "%s%n", "{}", "'\"",
    "../", "\\", "🎵" * 10, "NaN", "-1", "1e999",
]
CONTROL_ALPHABET = st.sampled_from("\x00\x01\x07\x08\t\n\r\x0b\x0c\x1b\x7f\x85\u2028 a/.%")
FLOAT_SPECIALS = [
    math.nan, math.inf, -math.inf, 0.0, -0.0, 1e308, -1e308, 5e-324, -5e-324, 1e-300,
    3.4028235e38, 1e39, -1.0, 0.5, 1.0, 2.0**53,
]
# fmt: on
PLAIN_TEXT = st.text(st.characters(exclude_categories=["Cc", "Cs"]), max_size=16)
TAG_FIELDS = ("genres", "moods", "instruments", "negative", "tag")
PROSE_FIELDS = ("prompt", "caption", "description", "scene")
UNIT_FIELDS = ("energy", "strength", "brightness", "saturation", "warmth", "contrast", "score")
INT_RANGES = {
    FieldDescriptor.CPPTYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.CPPTYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.CPPTYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.CPPTYPE_UINT64: (0, 2**64 - 1),
}
# Fields whose values a plausible message keeps in this order.
ORDERED = [("bpm_min", "bpm", "bpm_max"), ("start_s", "end_s")]
# How much of a message is out of the ordinary: nothing (values the services know or could
# accept), now and then a value (one field in several), or anything.
PLAUSIBLE, MIXED, WILD = "plausible", "mixed", "wild"
# In a MIXED message, a value is wild once in this many.
MIXED_ODDS = 16


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, each as often as its weight says (st.one_of neither weighs nor
    keeps repeated strategies); shrinks towards the first."""
    table = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.integers(0, len(table) - 1).flatmap(table.__getitem__)


def _synthetic(oneof: OneofDescriptor) -> bool:
    """The hidden oneof of a proto3 `optional` field (not a real choice)."""
    return len(oneof.fields) == 1 and oneof.name == f"_{oneof.fields[0].name}"


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _repeat(parts: tuple[Sequence[Any], int]) -> list[Any]:
    """`count` items cycling through `items` (many items, with duplicates, cheaply)."""
    items, count = parts
    return [items[i % len(items)] for i in range(count)]


def _long_text(parts: tuple[str, int]) -> str:
    unit, count = parts
    return (unit * (count // len(unit) + 1))[:count]


def _random_bytes(parts: tuple[int, int]) -> bytes:
    seed, count = parts
    return random.Random(seed).randbytes(count)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if not value:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def _unknown_fields(fields: list[tuple[int, int, int, bytes]]) -> bytes:
    """Well-formed fields with numbers no message here defines (every wire type)."""
    out = bytearray()
    for number, wire, integer, payload in fields:
        out += _varint(number << 3 | wire)
        if wire == 0:
            out += _varint(integer)
        elif wire == 1:
            out += struct.pack("<Q", integer)
        elif wire == 5:
            out += struct.pack("<I", integer & 0xFFFFFFFF)
        else:
            out += _varint(len(payload)) + payload
    return bytes(out)


def _pair(field: FieldDescriptor, value: Any) -> tuple[FieldDescriptor, Any]:
    return field, value


def _build(
    cls: type[Message], plausible: bool, pairs: tuple[tuple[FieldDescriptor, Any] | None, ...]
) -> Message:
    message = cls()
    for pair in pairs:
        if pair is None or pair[1] is None:
            continue
        field, value = pair
        if _is_map(field):
            target = getattr(message, field.name)
            for entry in value:
                if field.message_type.fields_by_name["value"].message_type is not None:
                    target[entry.key].CopyFrom(entry.value)
                else:
                    target[entry.key] = entry.value
        elif field.is_repeated:
            getattr(message, field.name).extend(value)
        elif field.message_type is not None:
            getattr(message, field.name).SetInParent()
            getattr(message, field.name).CopyFrom(value)
        else:
            setattr(message, field.name, value)
    if plausible:
        fields = cls.DESCRIPTOR.fields_by_name
        for names in ORDERED:
            if all(name in fields for name in names):
                for name, value in zip(
                    names, sorted(getattr(message, n) for n in names), strict=True
                ):
                    setattr(message, name, value)
    return message


def _with_unknown(parts: tuple[Message, bytes]) -> Message:
    message, extra = parts
    if extra:
        message.MergeFromString(extra)
    return message


class Fuzz:
    """Strategies for any message of the contracts, built by walking its descriptor.

    Every field gets values of its type: `sane` ones (what the field's name suggests the
    services expect: vocabulary tags, keys, URIs of the test media, small durations) and
    `wild` ones (any value of the type: control characters, NUL, long strings, NaN and
    infinities, extreme integers, unknown enum numbers, big bytes, long lists with
    duplicates). The mode picks between them (PLAUSIBLE, MIXED, WILD). `big` allows large
    values; it is off inside a long list, so one message stays a few MB at most."""

    def __init__(self, target: Target):
        self.target = target
        self._messages: dict[tuple[str, int, str, bool], st.SearchStrategy[Message]] = {}
        outputs = target.running.outputs.as_uri()
        self.output_uris = st.one_of(
            st.just(""),
            st.sampled_from([outputs, f"{outputs}/", f"{outputs}/a/b", f"{outputs}/sub"]),
            st.builds(lambda name: f"{outputs}/{urllib.parse.quote(name)}", PLAIN_TEXT),
        )
        self.composed_uri = st.builds(
            lambda scheme, rest: scheme + rest,
            st.sampled_from(
                ["file://", "file:", "http://", "https://", "s3://", "gs://", "",
                 f"{target.running.media.as_uri()}/", f"{target.http}/", f"{outputs}/"]
            ),
            st.text(max_size=40),
        )  # fmt: skip
        self.prose = st.lists(st.one_of(st.sampled_from(TAGS), PLAIN_TEXT), max_size=12).map(
            " ".join
        )

    def _mix(
        self, sane: Sequence[st.SearchStrategy[Any]], wild: Sequence[st.SearchStrategy[Any]],
        mode: str,
    ) -> st.SearchStrategy[Any]:  # fmt: skip
        """Sane values first (Hypothesis shrinks towards them)."""
        if mode == PLAUSIBLE:
            return st.one_of(*sane)
        if mode == MIXED:
            return weighted((MIXED_ODDS - 1, st.one_of(*sane)), (1, st.one_of(*wild)))
        return st.one_of(*sane, *wild)

    # -- scalars --

    def strings(self, field: FieldDescriptor, mode: str, big: bool) -> st.SearchStrategy[str]:
        name = field.name
        odd: list[st.SearchStrategy[str]] = []
        if name == "output_uri":
            sane = [self.output_uris, st.sampled_from(self.target.uris)]
            odd = [self.composed_uri]
        elif "uri" in name:
            sane = [st.sampled_from(self.target.good_uris), st.sampled_from(self.target.uris)]
            odd = [self.composed_uri]
        elif name in TAG_FIELDS:
            sane = [st.sampled_from(TAGS_BY_FIELD.get(name, TAGS))]
            odd = [st.sampled_from(NEAR_TAGS)]
        elif name == "key":
            sane = [st.sampled_from(KEYS)]
            odd = [st.sampled_from(NEAR_KEYS)]
        elif name == "structure":
            sane = [st.sampled_from(STRUCTURES)]
            odd = [st.sampled_from(NEAR_STRUCTURES)]
        elif name == "file_name":
            sane = [st.sampled_from(FILE_NAMES)]
            odd = [st.sampled_from(ODD_FILE_NAMES)]
        elif name in PROSE_FIELDS:
            sane = [self.prose]
        else:
            sane = [PLAIN_TEXT]
        wild = [
            *odd,
            st.text(max_size=24),
            st.text(CONTROL_ALPHABET, max_size=8),
            st.sampled_from(ODD_STRINGS),
        ]
        if big:
            lengths = st.one_of(
                st.sampled_from([255, 256, 2000, 2001, 4096, 4097]), st.integers(257, 5000)
            )
            wild.append(st.tuples(st.text(min_size=1, max_size=8), lengths).map(_long_text))
        return self._mix(sane, wild, mode)

    def binary(self, field: FieldDescriptor, mode: str, big: bool) -> st.SearchStrategy[bytes]:
        name = field.name
        target = self.target
        if name in ("data", "chunk"):
            sane = [st.sampled_from(target.videos)]
        elif name == "reference_audio":
            wav = target.wav
            # Mostly none: it goes with structure "reference" only.
            sane = [weighted((3, st.just(b"")), (1, st.sampled_from([wav, wav[:44], wav[:100]])))]
        elif name == "thumbnail_jpeg":
            sane = [st.sampled_from([b"", target.jpeg, target.jpeg[:20]])]
        else:
            sane = [st.binary(max_size=32)]
        wild = [st.binary(max_size=64)]
        if big:
            sizes = st.one_of(
                st.integers(1000, 400_000),
                st.sampled_from([MAX_UPLOAD_BYTES, MAX_UPLOAD_BYTES + 1]),
            )
            wild.append(st.tuples(st.integers(0, 2**32), sizes).map(_random_bytes))
        return self._mix(sane, wild, mode)

    def integers(self, field: FieldDescriptor, mode: str) -> st.SearchStrategy[int]:
        low, high = INT_RANGES[field.cpp_type]
        edges = [low, low + 1, -(2**31), -1, 0, 1, 2, 2**31 - 1, 2**31, 2**32 - 1, 2**53 + 1,
                 high - 1, high]  # fmt: skip
        name = field.name
        if name == "sample_rate":
            sane = [st.sampled_from([0, 44100, 48000])]
        elif name == "candidates":
            sane = [st.integers(0, 4)]
        elif name == "seed":
            sane = [st.integers(0, 2**32 - 1)]
        elif name == "size_bytes":
            sane = [st.integers(0, 2 * MAX_UPLOAD_BYTES)]
        else:
            sane = [st.integers(0, 10)]
        wild = [
            st.integers(low, high),
            st.sampled_from([v for v in edges if low <= v <= high]),
            st.integers(max(low, -3), 10),
            st.sampled_from([8000, 22050, 96000, 192000, MAX_UPLOAD_BYTES + 1, 5, 1000]),
        ]
        return self._mix(sane, wild, mode)

    def floats(self, field: FieldDescriptor, mode: str) -> st.SearchStrategy[float]:
        width: Literal[32, 64] = 32 if field.cpp_type == FieldDescriptor.CPPTYPE_FLOAT else 64
        name = field.name
        if name.endswith("_s"):
            # Durations and times: mostly small, so that a valid request does little work.
            sane = [st.floats(0.5, 20.0, width=width)]
        elif "bpm" in name:
            sane = [st.floats(30.0, 300.0, width=width)]
        elif "lufs" in name:
            sane = [st.floats(-40.0, -5.0, width=width)]
        else:
            sane = [st.floats(0.0, 1.0, width=width)]
        wild = [
            st.floats(width=width),
            st.sampled_from(FLOAT_SPECIALS),
            st.floats(-1.0, 2.0, width=width),
            st.floats(0.0, 8000.0, width=width),
        ]
        return self._mix(sane, wild, mode)

    def enums(self, field: FieldDescriptor, mode: str) -> st.SearchStrategy[int]:
        known = [value.number for value in field.enum_type.values]
        wild = [st.integers(-(2**31), 2**31 - 1), st.sampled_from([max(known) + 1, -1])]
        return self._mix([st.sampled_from(known)], wild, mode)

    # -- fields and messages --

    def single(
        self, field: FieldDescriptor, depth: int, mode: str, big: bool
    ) -> st.SearchStrategy[Any]:
        """One value of the field's type (an item, for a repeated field)."""
        cpp = field.cpp_type
        if cpp == FieldDescriptor.CPPTYPE_MESSAGE:
            return self.message(field.message_type, depth + 1, mode, big)
        if cpp == FieldDescriptor.CPPTYPE_STRING:
            if field.type == FieldDescriptor.TYPE_BYTES:
                return self.binary(field, mode, big)
            return self.strings(field, mode, big)
        if cpp in INT_RANGES:
            return self.integers(field, mode)
        if cpp in (FieldDescriptor.CPPTYPE_DOUBLE, FieldDescriptor.CPPTYPE_FLOAT):
            return self.floats(field, mode)
        if cpp == FieldDescriptor.CPPTYPE_BOOL:
            return st.booleans()
        if cpp == FieldDescriptor.CPPTYPE_ENUM:
            return self.enums(field, mode)
        raise AssertionError(f"no strategy for {field.full_name} (C++ type {cpp})")

    def value(
        self, field: FieldDescriptor, depth: int, mode: str, big: bool
    ) -> st.SearchStrategy[Any]:
        if field.message_type is not None and depth + 1 > MAX_DEPTH:
            return st.none()
        if not field.is_repeated:
            return self.single(field, depth, mode, big)
        item = self.single(field, depth, mode, big)
        if field.cpp_type == FieldDescriptor.CPPTYPE_STRING:
            # A plausible message names a tag or two, and rarely a negative one.
            most = 1 if field.name == "negative" else 3
            least = int(mode == PLAUSIBLE and field.name in TAGS_BY_FIELD)
            sane = [st.lists(item, min_size=least, max_size=most, unique=True)]
        else:
            sane = [st.lists(item, max_size=3)]
        wild = [st.lists(item, max_size=4), st.lists(item, min_size=1, max_size=4).map(
            lambda items: items + items[:1])]  # fmt: skip
        if big and not _is_map(field):
            few = st.lists(self.single(field, depth, mode, False), min_size=1, max_size=3)
            wild.append(st.tuples(few, st.integers(17, 300)).map(_repeat))
        return self._mix(sane, wild, mode)

    def message(
        self, descriptor: Descriptor, depth: int = 0, mode: str = WILD, big: bool = True
    ) -> st.SearchStrategy[Message]:
        key = (descriptor.full_name, depth, mode, big)
        if key in self._messages:
            return self._messages[key]
        cls = message_factory.GetMessageClass(descriptor)
        parts: list[st.SearchStrategy[tuple[FieldDescriptor, Any] | None]] = []
        for field in descriptor.fields:
            oneof = field.containing_oneof
            if oneof is not None and not _synthetic(oneof):
                continue
            value = self.value(field, depth, mode, big).map(functools.partial(_pair, field))
            if mode == WILD:
                parts.append(st.one_of(st.none(), value))
            elif mode == PLAUSIBLE or (field.message_type is not None and not field.is_repeated):
                # A plausible message has every field (a mixed one its parts): what a real
                # client sends; unset fields are left to the other modes.
                parts.append(value)
            else:
                parts.append(weighted((2, value), (1, st.none())))
        for oneof in descriptor.oneofs:
            if _synthetic(oneof):
                continue
            # At most one member (a member set to its default still picks it); only a wild
            # message may pick none.
            members = [
                self.value(f, depth, mode, big).map(functools.partial(_pair, f))
                for f in oneof.fields
            ]
            parts.append(st.one_of(*members) if mode != WILD else st.one_of(st.none(), *members))
        strategy = st.tuples(*parts).map(functools.partial(_build, cls, mode == PLAUSIBLE))
        self._messages[key] = strategy
        return strategy

    def request(self, cls: type[Message]) -> st.SearchStrategy[Message]:
        """A top-level request of any mode; unusual ones sometimes carry unknown fields."""
        unknown = st.lists(
            st.tuples(
                st.one_of(st.integers(100, 18999), st.integers(20000, 2**29 - 1)),
                st.sampled_from([0, 1, 2, 5]),
                st.integers(0, 2**64 - 1),
                st.binary(max_size=16),
            ),
            min_size=1,
            max_size=3,
        ).map(_unknown_fields)
        descriptor = cls.DESCRIPTOR
        plausible = self.message(descriptor, mode=PLAUSIBLE)
        extra = st.one_of(st.just(b""), unknown)
        mixed = st.tuples(self.message(descriptor, mode=MIXED), extra).map(_with_unknown)
        wild = st.tuples(self.message(descriptor, mode=WILD), extra).map(_with_unknown)
        # Half plausible: a valid request reaches the work behind the edge checks.
        return weighted((3, plausible), (2, mixed), (1, wild))

    def upload(self) -> st.SearchStrategy[list[gateway_pb2.ScoreUploadRequest]]:
        """Upload streams: well-formed (a header, then chunks), or any sequence of parts (a
        chunk first, headers repeated, parts with nothing set, nothing at all)."""
        header = self.request(gateway_pb2.UploadHeader).map(
            lambda h: gateway_pb2.ScoreUploadRequest(header=h)
        )
        chunk_field = gateway_pb2.ScoreUploadRequest.DESCRIPTOR.fields_by_name["chunk"]
        chunk = self.binary(chunk_field, WILD, big=True).map(
            lambda data: gateway_pb2.ScoreUploadRequest(chunk=data)
        )
        split_video = st.tuples(st.sampled_from(self.target.videos), st.integers(1, 6)).map(
            _split_chunks
        )
        part = self.request(gateway_pb2.ScoreUploadRequest)
        well_formed = st.tuples(header, st.one_of(split_video, st.lists(chunk, max_size=4))).map(
            lambda parts: [parts[0], *parts[1]]
        )
        repeated_header = st.tuples(header, st.integers(2, 4), split_video).map(
            lambda parts: [parts[0]] * parts[1] + parts[2]
        )
        chunk_first = st.tuples(chunk, st.lists(part, max_size=3)).map(
            lambda parts: [parts[0], *parts[1]]
        )
        anything = st.lists(part, max_size=6)
        return weighted((5, well_formed), (1, repeated_header), (1, chunk_first), (1, anything))


def _split_chunks(parts: tuple[bytes, int]) -> list[gateway_pb2.ScoreUploadRequest]:
    data, pieces = parts
    size = math.ceil(len(data) / pieces)
    return [
        gateway_pb2.ScoreUploadRequest(chunk=data[i : i + size]) for i in range(0, len(data), size)
    ]


# ---- calls and checks -----------------------------------------------------------------------


def _brief(message: Message) -> str:
    """A message on one line, long bytes and strings shortened, long lists cut."""
    parts = []
    for field, value in message.ListFields():
        values = list(value) if field.is_repeated else [value]
        shown = []
        for item in values[:6]:
            if isinstance(item, Message):
                shown.append(f"{{{_brief(item)}}}")
            elif isinstance(item, bytes) and item in NAMED_BYTES:
                shown.append(f"<{len(item)} bytes: the test's {NAMED_BYTES[item]}>")
            elif isinstance(item, bytes):
                shown.append(
                    f"<{len(item)} bytes {item[:16]!r}...>" if len(item) > 32 else repr(item)
                )
            elif isinstance(item, str) and len(item) > 80:
                shown.append(f"{item[:60]!r}...<{len(item)} chars>")
            elif field.enum_type is not None:
                known = field.enum_type.values_by_number.get(item)
                shown.append(known.name if known is not None else str(item))
            else:
                shown.append(repr(item))
        if len(values) > 6:
            shown.append(f"...<{len(values)} items>")
        text = ", ".join(shown)
        parts.append(f"{field.name}: [{text}]" if field.is_repeated else f"{field.name}: {text}")
    return ", ".join(parts)


def excerpt(request: Message | Sequence[Message], chars: int = 3000) -> str:
    if isinstance(request, Message):
        text = f"{type(request).__name__}{{{_brief(request)}}} ({request.ByteSize()} bytes)"
    else:
        shown = ",\n  ".join(excerpt(m, 1000) for m in request[:8])
        text = f"{len(request)} messages [\n  {shown}]"
    return text if len(text) <= chars else text[:chars] + f"... ({len(text) - chars} more chars)"


def outcome(
    rpc: str, target: Target, request: Message | Sequence[Message], call: Callable[[], list[Any]]
) -> tuple[grpc.StatusCode | None, list[Any]]:
    """Make the call (consuming any stream); fail on INTERNAL or UNKNOWN. Past the RPC's
    time budget, send nothing (code None)."""
    started = STARTED.setdefault(rpc, time.monotonic())
    if time.monotonic() - started > BUDGET_S:
        NOT_SENT[rpc] += 1
        return None, []
    logged = log_size(target.running)
    try:
        replies = call()
    except grpc.RpcError as error:
        code = error.code()
        STATUSES[rpc][code.name] += 1
        details = error.details()
        if VERBOSE:
            print(f"fuzz: {rpc} {code.name}: {details[:160]!r}")
        if code in BAD:
            server_log = log_tail(target.running, logged)
            report = (
                f"{rpc} answered {code.name}: {details!r}\nrequest: {excerpt(request)}\n"
                f"server log:\n{server_log}"
            )
            if not KEEP_GOING:
                raise AssertionError(report) from None
            FAILURES[rpc].setdefault((f"{code.name}: {details}", raised(server_log)), report)
        return code, []
    STATUSES[rpc]["OK"] += 1
    if VERBOSE:
        print(f"fuzz: {rpc} OK")
    return grpc.StatusCode.OK, replies


def remove_delivered(events: list[gateway_pb2.ScoreEvent], outputs: Path) -> None:
    """An OK request's files in the output folder are the client's: remove them (and the
    folders left empty) so that only files nobody was given remain."""
    root = outputs.resolve()
    for event in events:
        if event.WhichOneof("event") != "result":
            continue
        for uri in event.result.output_uris:
            path = Path(urllib.parse.unquote(urllib.parse.urlparse(uri).path))
            assert path.resolve().is_relative_to(root), f"{uri} was written outside {root}"
            path.unlink()
            folder = path.parent.resolve()
            while folder != root and folder.is_relative_to(root) and not any(folder.iterdir()):
                folder.rmdir()
                folder = folder.parent


def leftovers(target: Target) -> dict[str, list[str]]:
    running = target.running
    folders = {
        "staging": running.staging,
        "tagger scratch": running.tagger_scratch,
        "outputs": running.outputs,
    }
    return {name: sorted(listing(folder)) for name, folder in folders.items() if listing(folder)}


def check_healthy_and_clean(target: Target, channels: Channels) -> None:
    """The server still runs, every service is SERVING and answers a normal request, and no
    file is left anywhere (cancelled work gets SETTLE_S to finish and clean up)."""
    running = target.running
    assert running.process.poll() is None, (
        f"the server exited ({running.process.returncode}):\n{log_tail(running)}"
    )
    deadline = time.monotonic() + SETTLE_S
    for channel, service in (
        (channels.gateway, "bgm.v1.Gateway"),
        (channels.tagger, "bgm.v1.Tagger"),
        (channels.generator, "bgm.v1.Generator"),
    ):
        health = health_pb2_grpc.HealthStub(channel)
        status: health_pb2.HealthCheckResponse | None = None
        while True:
            try:
                status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
                if status.status == health_pb2.HealthCheckResponse.SERVING:
                    break
            except grpc.RpcError as error:
                status = error
            assert time.monotonic() < deadline, f"{service} is not SERVING: {status}"
            time.sleep(0.2)
    generator = generator_pb2_grpc.GeneratorStub(channels.generator)
    assert generator.Describe(generator_pb2.GeneratorDescribeRequest(), timeout=10).name
    tagger = tagger_pb2_grpc.TaggerStub(channels.tagger)
    assert tagger.Describe(tagger_pb2.TaggerDescribeRequest(), timeout=10).vocabulary.genres
    left = leftovers(target)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = leftovers(target)
    assert not left, f"files left after the requests ended: {left}"
    # A normal request still works end to end (retried while cancelled work holds its slots).
    gateway = gateway_pb2_grpc.GatewayStub(channels.gateway)
    normal = gateway_pb2.ScoreRequest(
        video=common_pb2.VideoSource(uri=f"{running.media.as_uri()}/clip.mp4"),
        output=gateway_pb2.OutputOptions(format=gateway_pb2.OUTPUT_FORMAT_WAV),
    )
    while True:
        try:
            events = [r.event for r in gateway.Score(normal, timeout=60)]
            break
        except grpc.RpcError as error:
            retry = error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            if not retry or time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    assert events[-1].WhichOneof("event") == "result", events[-1]
    assert not leftovers(target)
    assert listing(running.media) == target.media_before, "the media folder changed"


def run(
    rpc: str,
    case: Callable[[], None],
    target: Target,
    channels: Channels,
    record_property: RecordProperty,
) -> None:
    """The examples, then the checks after them. The cases per status go into the test's
    report, which the run's summary shows (tests/conftest.py), from whichever worker ran it."""
    try:
        case()
    finally:
        print(f"\n{summary_line(rpc)}")
        record_property(FUZZ_SUMMARY, summary_line(rpc))
    check_healthy_and_clean(target, channels)
    failures = FAILURES[rpc]
    assert not failures, f"{len(failures)} distinct failures:\n\n" + "\n\n".join(failures.values())


# ---- one test per RPC -----------------------------------------------------------------------


def test_fuzz_gateway_score(target: Target, channels: Channels, record_property: RecordProperty):
    stub = gateway_pb2_grpc.GatewayStub(channels.gateway)
    outputs = target.running.outputs

    @FUZZ_SETTINGS
    @given(Fuzz(target).request(gateway_pb2.ScoreRequest))
    def case(request: gateway_pb2.ScoreRequest) -> None:
        code, events = outcome(
            "Gateway.Score",
            target,
            request,
            lambda: [r.event for r in stub.Score(request, timeout=CALL_TIMEOUT_S)],
        )
        if code == grpc.StatusCode.OK:
            remove_delivered(events, outputs)

    run("Gateway.Score", case, target, channels, record_property)


def _upload_examples(case: Callable[..., None]) -> Callable[..., None]:
    """The stream shapes every run tries, whatever Hypothesis draws."""
    header = gateway_pb2.ScoreUploadRequest(header=gateway_pb2.UploadHeader(file_name="clip.mp4"))
    chunk = gateway_pb2.ScoreUploadRequest(chunk=b"\x00\x00\x00\x18ftypmp42")
    empty = gateway_pb2.ScoreUploadRequest()
    for stream in (
        [],
        [empty],
        [chunk],
        [chunk, header],
        [header],
        [header, header, chunk],
        [header, empty],
        [header, chunk, header],
    ):
        case = example(stream)(case)
    return case


def test_fuzz_gateway_score_upload(
    target: Target, channels: Channels, record_property: RecordProperty
):
    stub = gateway_pb2_grpc.GatewayStub(channels.gateway)
    outputs = target.running.outputs

    @FUZZ_SETTINGS
    @_upload_examples
    @given(Fuzz(target).upload())
    def case(stream: list[gateway_pb2.ScoreUploadRequest]) -> None:
        code, events = outcome(
            "Gateway.ScoreUpload",
            target,
            stream,
            lambda: [r.event for r in stub.ScoreUpload(iter(stream), timeout=CALL_TIMEOUT_S)],
        )
        if code == grpc.StatusCode.OK:
            remove_delivered(events, outputs)

    run("Gateway.ScoreUpload", case, target, channels, record_property)


def test_fuzz_gateway_analyze(target: Target, channels: Channels, record_property: RecordProperty):
    stub = gateway_pb2_grpc.GatewayStub(channels.gateway)

    @FUZZ_SETTINGS
    @given(Fuzz(target).request(gateway_pb2.GatewayAnalyzeRequest))
    def case(request: gateway_pb2.GatewayAnalyzeRequest) -> None:
        outcome(
            "Gateway.Analyze",
            target,
            request,
            lambda: [stub.Analyze(request, timeout=CALL_TIMEOUT_S)],
        )

    run("Gateway.Analyze", case, target, channels, record_property)


def test_fuzz_tagger_analyze(target: Target, channels: Channels, record_property: RecordProperty):
    stub = tagger_pb2_grpc.TaggerStub(channels.tagger)

    @FUZZ_SETTINGS
    @given(Fuzz(target).request(tagger_pb2.AnalyzeRequest))
    def case(request: tagger_pb2.AnalyzeRequest) -> None:
        outcome(
            "Tagger.Analyze",
            target,
            request,
            lambda: [stub.Analyze(request, timeout=CALL_TIMEOUT_S)],
        )

    run("Tagger.Analyze", case, target, channels, record_property)


def test_fuzz_tagger_describe(target: Target, channels: Channels, record_property: RecordProperty):
    stub = tagger_pb2_grpc.TaggerStub(channels.tagger)

    @FUZZ_SETTINGS
    @given(Fuzz(target).request(tagger_pb2.TaggerDescribeRequest))
    def case(request: tagger_pb2.TaggerDescribeRequest) -> None:
        outcome(
            "Tagger.Describe",
            target,
            request,
            lambda: [stub.Describe(request, timeout=CALL_TIMEOUT_S)],
        )

    run("Tagger.Describe", case, target, channels, record_property)


def test_fuzz_generator_generate(
    target: Target, channels: Channels, record_property: RecordProperty
):
    stub = generator_pb2_grpc.GeneratorStub(channels.generator)

    @FUZZ_SETTINGS
    @given(Fuzz(target).request(generator_pb2.GenerateRequest))
    def case(request: generator_pb2.GenerateRequest) -> None:
        outcome(
            "Generator.Generate",
            target,
            request,
            lambda: list(stub.Generate(request, timeout=CALL_TIMEOUT_S)),
        )

    run("Generator.Generate", case, target, channels, record_property)


def test_fuzz_generator_describe(
    target: Target, channels: Channels, record_property: RecordProperty
):
    stub = generator_pb2_grpc.GeneratorStub(channels.generator)

    @FUZZ_SETTINGS
    @given(Fuzz(target).request(generator_pb2.GeneratorDescribeRequest))
    def case(request: generator_pb2.GeneratorDescribeRequest) -> None:
        outcome(
            "Generator.Describe",
            target,
            request,
            lambda: [stub.Describe(request, timeout=CALL_TIMEOUT_S)],
        )

    run("Generator.Describe", case, target, channels, record_property)


def _not_utf8(request: Message) -> bytes:
    """`request`'s bytes with each U+0001 in its strings made 0xFF, a byte UTF-8 never has
    (no Python stub sends such a string)."""
    data = request.SerializeToString()
    assert b"\x01" in data
    return data.replace(b"\x01", b"\xff")


def test_request_bytes_that_are_no_message_are_refused(target: Target, channels: Channels):
    # What a client with another protobuf library, a proxy's corruption or a hostile caller
    # may send: a string field that is not UTF-8, a message cut short, bytes that are none.
    # gRPC had answered UNKNOWN naming the parser's exception, and an upload's handler
    # INTERNAL with a traceback in the log.
    video = common_pb2.VideoSource(uri=target.good_uris[0], file_name="clip\x01.mp4")
    score = gateway_pb2.ScoreRequest(video=video).SerializeToString()
    header = gateway_pb2.ScoreUploadRequest(header=gateway_pb2.UploadHeader(file_name="a.mp4"))
    analyze = tagger_pb2.AnalyzeRequest(video=common_pb2.VideoSource(uri=target.good_uris[0]))
    cases: list[tuple[str, grpc.Channel, str, Any]] = [
        ("Gateway.Score: not UTF-8", channels.gateway, "Score",
         _not_utf8(gateway_pb2.ScoreRequest(video=video))),
        ("Gateway.Score: cut short", channels.gateway, "Score", score[:-3]),
        ("Gateway.Analyze: not UTF-8", channels.gateway, "Analyze",
         _not_utf8(gateway_pb2.GatewayAnalyzeRequest(video=video))),
        ("Gateway.ScoreUpload: header not UTF-8", channels.gateway, "ScoreUpload",
         [_not_utf8(gateway_pb2.ScoreUploadRequest(
             header=gateway_pb2.UploadHeader(file_name="a\x01.mp4")))]),
        ("Gateway.ScoreUpload: a chunk that is none", channels.gateway, "ScoreUpload",
         [header.SerializeToString(), b"\xff\xff"]),
        ("Tagger.Analyze: cut short", channels.tagger, "Analyze",
         analyze.SerializeToString()[:-3]),
        ("Tagger.Describe: bytes that are none", channels.tagger, "Describe", b"\xff\xff\xff"),
        ("Generator.Generate: cut short", channels.generator, "Generate", b"\x0a\xff\xff\xff"),
        ("Generator.Describe: bytes that are none", channels.generator, "Describe", b"\xff\xff"),
    ]  # fmt: skip
    services = {channels.gateway: "Gateway", channels.tagger: "Tagger",
                channels.generator: "Generator"}  # fmt: skip
    since = log_size(target.running)
    for label, channel, method, payload in cases:
        path = f"/bgm.v1.{services[channel]}/{method}"
        streaming_in = isinstance(payload, list)
        call: Any
        if method in ("Score", "Generate"):
            call = channel.unary_stream(path)
        elif streaming_in:
            call = channel.stream_stream(path)
        else:
            call = channel.unary_unary(path)
        with pytest.raises(grpc.RpcError) as refused:
            answer = call(iter(payload) if streaming_in else payload, timeout=CALL_TIMEOUT_S)
            if not isinstance(answer, bytes):
                list(answer)
        code, details = refused.value.code(), refused.value.details() or ""
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (label, code, details)
        assert "not a well-formed message" in details, (label, details)
    logged = log_tail(target.running, since)
    assert "Traceback" not in logged, logged
