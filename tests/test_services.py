"""The three gRPC services, as real servers on localhost ports started by the tests."""

from __future__ import annotations

import shutil
import signal
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import av
import grpc
import numpy as np
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from services import devserver
from services.contract import brief_to_proto
from services.devserver import Running, start, stop, wait_serving
from services.gen.bgm.v1 import (
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    generator_pb2,
    generator_pb2_grpc,
    tagger_pb2,
    tagger_pb2_grpc,
)
from services.generator.beatcheck import genre_brief
from services.media.synth import Shot, SyntheticVideo, speech_track, write_video
from tests.bgm_command import bgm

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("served-media")


@pytest.fixture(scope="module")
def clip(media: Path) -> SyntheticVideo:
    shots = [
        Shot(2.0, speed=0.4, hue=0.1),
        Shot(2.0, speed=0.8, hue=0.6),
        Shot(2.0, speed=0.2, hue=0.3),
    ]
    return write_video(media / "clip.mp4", shots)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory, media: Path) -> Iterator[Running]:
    running = start(tmp_path_factory.mktemp("servers"), media)
    yield running
    assert stop(running) == 0


def score(
    address: str, request: gateway_pb2.ScoreRequest, timeout: float = 120
) -> list[gateway_pb2.ScoreEvent]:
    with grpc.insecure_channel(address) as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        return [r.event for r in stub.Score(request, timeout=timeout)]


def code_of(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code(), caught.value.details()


def test_dev_servers_draw_ports_apart_per_test_worker_below_the_ephemeral_range(monkeypatch):
    # A port from the kernel's ephemeral range can be taken by any outgoing connection before
    # the service binds it, and two workers must not pick one port between them.
    low, _ = (int(p) for p in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    drawn = {}
    for worker in ("gw0", "gw1", ""):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        drawn[worker] = {devserver.free_port() for _ in range(20)}
        assert len(drawn[worker]) == 20
        assert max(drawn[worker]) < low
    assert not drawn["gw0"] & drawn["gw1"]
    assert not drawn[""] & (drawn["gw0"] | drawn["gw1"])


def test_health_serving_for_every_service(servers):
    for address, name in (
        (servers.gateway, "bgm.v1.Gateway"),
        (servers.tagger, "bgm.v1.Tagger"),
        (servers.generator, "bgm.v1.Generator"),
    ):
        wait_serving(address, name, seconds=5)


def test_score_by_uri_streams_analysis_progress_files_result(servers, clip):
    request = gateway_pb2.ScoreRequest(
        video=common_pb2.VideoSource(uri=clip.path.as_uri()),
        controls=common_pb2.UserControls(genres=["pop"], seed=4),
        output=gateway_pb2.OutputOptions(format=gateway_pb2.OUTPUT_FORMAT_WAV, midi=True),
    )
    events = score(servers.gateway, request)
    kinds = [e.WhichOneof("event") for e in events]
    # The order the contract states: progress, the analysis, progress, the files, the result.
    assert kinds[0] == "progress" and kinds[1] == "analysis" and kinds[-1] == "result"
    assert kinds.index("analysis") < kinds.index("file")
    assert kinds.count("result") == 1 and "progress" not in kinds[kinds.index("file") :]
    # Fractions 0..1, rising (the contract's words).
    fractions = [e.progress.fraction for e in events if e.WhichOneof("event") == "progress"]
    assert fractions == sorted(fractions) and 0.0 <= fractions[0] <= fractions[-1] <= 1.0
    analysis = next(e.analysis for e in events if e.WhichOneof("event") == "analysis")
    assert len(analysis.cuts) == 2
    files: dict[str, bytes] = {}
    sizes: dict[str, int] = {}
    order: list[str] = []
    for e in events:
        if e.WhichOneof("event") == "file":
            assert e.file.offset == len(files.get(e.file.name, b""))
            if e.file.offset == 0:
                sizes[e.file.name] = e.file.size
                order.append(e.file.name)
            else:
                assert e.file.size == 0 and order[-1] == e.file.name  # one file after another
            files[e.file.name] = files.get(e.file.name, b"") + e.file.data
    assert order == ["scored.wav", "music.mid"]
    assert sizes == {name: len(data) for name, data in files.items()}
    result = events[-1].result
    assert result.tags.genres[0] == "pop"
    assert result.plan.alignment.on_beat_count == 2
    assert not any(servers.staging.glob("*"))  # staged files are gone


def test_an_idle_gateway_s_checks_leave_the_audit_log_alone(servers):
    """The gateway asks the tagger and the generator for their description every second to
    know they answer; those checks are not requests anyone made, and write no audit line
    (an idle `bgm serve` had written two a second: 145 in 71 s)."""

    def describes() -> int:
        lines = servers.log.read_text().splitlines()
        return sum('"method": "Describe"' in line for line in lines if "bgm.audit " in line)

    wait_serving(servers.gateway, "bgm.v1.Gateway")
    before = describes()
    time.sleep(3.0)
    assert describes() == before
    # A Describe someone asks for is audited.
    with grpc.insecure_channel(servers.tagger) as channel:
        tagger_pb2_grpc.TaggerStub(channel).Describe(tagger_pb2.TaggerDescribeRequest(),
                                                     timeout=30)  # fmt: skip
    time.sleep(0.2)
    assert describes() == before + 1


def test_a_request_marked_as_a_probe_is_audited_all_the_same(servers, clip):
    """Any caller can send the probe's metadata: it quiets only a Describe, never a request
    that does work (a Score marked so had left no audit line at INFO)."""

    def scores() -> int:
        lines = servers.log.read_text().splitlines()
        return sum('"method": "Score"' in line for line in lines if "bgm.audit " in line)

    before = scores()
    video = common_pb2.VideoSource(uri=clip.path.as_uri())
    controls = common_pb2.UserControls(genres=["rok"])
    request = gateway_pb2.ScoreRequest(video=video, controls=controls)
    with grpc.insecure_channel(servers.gateway) as channel:
        call = gateway_pb2_grpc.GatewayStub(channel).Score(
            request, timeout=30, metadata=(("bgm-probe", "dependency"),)
        )
        code_of(lambda: list(call))
    time.sleep(0.2)
    assert scores() == before + 1


def test_client_upload_writes_the_same_outputs_as_bgm_score(servers, clip, tmp_path):
    import pretty_midi
    import pyloudnorm

    out = tmp_path / "remote.mp4"
    result = bgm("client", "score", str(clip.path), "--server", servers.gateway, "-o", str(out),
                 "--midi", str(tmp_path / "m.mid"), "--stems", str(tmp_path / "stems"),
                 "--bpm", "96", "--lufs", "-20", "--sample-rate", "44100")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "96.0 BPM" in result.stdout
    with av.open(str(out)) as container:
        assert container.streams.video
        rate = container.streams.audio[0].rate
        audio = np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1)
    # The rate and the loudness asked for (no test had sent --lufs or --sample-rate).
    assert rate == 44100
    assert abs(pyloudnorm.Meter(rate).integrated_loudness(audio.T) + 20.0) < 1.0
    assert abs(audio.shape[1] / rate - clip.duration_s) < 0.05
    music = pretty_midi.PrettyMIDI(str(tmp_path / "m.mid"))
    assert abs(music.get_tempo_changes()[1][0] - 96.0) < 0.01
    # A stem for every instrument of the piece.
    stems = sorted(p.stem for p in (tmp_path / "stems").iterdir())
    assert stems and stems == sorted(i.name for i in music.instruments), stems
    assert not any(servers.staging.glob("*"))


def test_a_client_learns_what_the_gateway_takes(servers):
    """Gateway.Describe (`bgm client describe`): the tags a caller may name, as the
    generator plays them, and the limits; a client had learnt the genres only from a
    refusal's message."""
    import json

    from services.vocabulary import load_vocabulary

    result = bgm("client", "describe", "--server", servers.gateway, "--json")
    assert result.returncode == 0, result.stderr
    offered = json.loads(result.stdout)
    with grpc.insecure_channel(servers.generator) as channel:
        generator = generator_pb2_grpc.GeneratorStub(channel).Describe(
            generator_pb2.GeneratorDescribeRequest(), timeout=10
        )
    vocabulary = load_vocabulary()
    assert offered["generator"] == generator.name == "composer"
    assert set(offered["vocabulary"]["genres"]) == set(generator.genres)
    assert offered["vocabulary"]["moods"] == list(vocabulary.moods)
    assert offered["sample_rates"] == list(generator.sample_rates)
    assert offered["max_candidates"] == 4 and offered["midi"] and offered["stems"]
    # And for a person, one line a field.
    table = bgm("client", "describe", "--server", servers.gateway)
    assert table.returncode == 0 and "rock" in table.stdout.split("Genres", 1)[1], table


def test_client_exits_as_bgm_score_does_on_a_refusal_of_what_it_sent(servers, clip, tmp_path):
    """A request the gateway refuses as the caller's (an unknown genre, INVALID_ARGUMENT):
    exit 2, as `bgm score` exits on the same; it had been 1, as for a server's failure."""
    result = bgm("client", "score", str(clip.path), "--server", servers.gateway, "-o",
                 str(tmp_path / "o.wav"), "--genre", "rok")  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error (INVALID_ARGUMENT): ") and "rok" in result.stderr


@pytest.fixture(scope="module")
def talk(media: Path) -> SyntheticVideo:
    """A video whose sound is a sentence spoken from 1 s."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng (Debian) makes the speech; ./dev.sh setup installs it")
    track, _ = speech_track(6.0, [(1.0, "First, measure the boards twice and cut them once.")])
    shots = [Shot(3.0, speed=0.4, hue=0.1), Shot(3.0, speed=0.6, hue=0.6)]
    return write_video(media / "talk.mp4", shots, soundtrack=track)


def test_the_tagger_skips_the_speech_when_asked(servers, talk):
    with grpc.insecure_channel(servers.tagger) as channel:
        stub = tagger_pb2_grpc.TaggerStub(channel)

        def analysis(skip_speech: bool) -> common_pb2.VideoAnalysis:
            request = tagger_pb2.AnalyzeRequest(video=common_pb2.VideoSource(
                uri=talk.path.as_uri()), skip_speech=skip_speech)  # fmt: skip
            return stub.Analyze(request, timeout=60).analysis

        heard, skipped = analysis(False), analysis(True)
    assert heard.speech and heard.loudness.values
    assert not skipped.speech and not skipped.loudness.values
    assert skipped.cuts == heard.cuts and skipped.tags == heard.tags


def test_score_has_the_tagger_listen_only_when_the_speech_matters(servers, talk):
    """Music that replaces the video's sound (speech "auto", the sound not kept) has no use
    for the speech, so the tagger does not listen; keeping the sound, or asking to duck,
    does."""

    def analysis(speech: str = "", keep: bool = False) -> common_pb2.VideoAnalysis:
        request = gateway_pb2.ScoreRequest(
            video=common_pb2.VideoSource(uri=talk.path.as_uri()),
            controls=common_pb2.UserControls(speech=speech),
            output=gateway_pb2.OutputOptions(keep_original_audio=keep),
        )
        events = score(servers.gateway, request)
        return next(e.analysis for e in events if e.WhichOneof("event") == "analysis")

    replaced = analysis()
    assert not replaced.speech and not replaced.loudness.values
    for kept in (analysis(keep=True), analysis(speech="duck")):
        assert kept.speech and kept.loudness.values


def test_output_uri_writes_on_the_server(servers, clip):
    target = servers.outputs / "job-1"
    request = gateway_pb2.ScoreRequest(
        video=common_pb2.VideoSource(uri=clip.path.as_uri()),
        output=gateway_pb2.OutputOptions(
            format=gateway_pb2.OUTPUT_FORMAT_FLAC, output_uri=target.as_uri()
        ),
    )
    events = score(servers.gateway, request)
    assert not any(e.WhichOneof("event") == "file" for e in events)
    assert [Path(u).name for u in events[-1].result.output_uris] == ["scored.flac"]
    assert (target / "scored.flac").stat().st_size > 1000


def test_tagger_by_bytes_and_describe(servers, clip):
    with grpc.insecure_channel(servers.tagger) as channel:
        stub = tagger_pb2_grpc.TaggerStub(channel)
        reply = stub.Analyze(
            tagger_pb2.AnalyzeRequest(
                video=common_pb2.VideoSource(data=clip.path.read_bytes(), file_name="clip.mp4")
            ),
            timeout=60,
        )
        assert reply.analysis.duration_s == pytest.approx(clip.duration_s, abs=0.01)
        described = stub.Describe(tagger_pb2.TaggerDescribeRequest(), timeout=5)
        assert described.name == "vision" and "ambient" in described.vocabulary.genres


BAD_REQUESTS = [
    ("file:///etc/hostname", {}, grpc.StatusCode.PERMISSION_DENIED, "outside the folders"),
    ("{media}/missing.mp4", {}, grpc.StatusCode.NOT_FOUND, "does not exist"),
    ("{media}/notes.mp4", {}, grpc.StatusCode.INVALID_ARGUMENT, "not a video"),
    ("https://example.com/v.mp4", {}, grpc.StatusCode.PERMISSION_DENIED, "allow-list"),
    ("ftp://example.com/v.mp4", {}, grpc.StatusCode.INVALID_ARGUMENT, "unsupported URI"),
    ("{clip}", {"genres": ["polka"]}, grpc.StatusCode.INVALID_ARGUMENT, "valid genres"),
    ("{clip}", {"bpm": 400.0}, grpc.StatusCode.INVALID_ARGUMENT, "outside 30..300"),
    ("{clip}", {"key": "H major"}, grpc.StatusCode.INVALID_ARGUMENT, "bad key"),
    ("{clip}", {"candidates": 5}, grpc.StatusCode.INVALID_ARGUMENT, "candidates must be 1..4"),
    ("{clip}", {"structure": "reference"}, grpc.StatusCode.INVALID_ARGUMENT,
     "needs a reference audio file"),
    ("{clip}", {"structure": "reference", "reference_audio": b"RIFF"},
     grpc.StatusCode.INVALID_ARGUMENT, "composer generator cannot follow structure 'reference'"),
    ("{clip}", {"reference_audio": b"RIFF"}, grpc.StatusCode.INVALID_ARGUMENT,
     "structure is not 'reference'"),
    # A 1 MB genre name is refused at the edge, quoted in a few characters.
    ("{clip}", {"genres": ["x" * 1_000_000]}, grpc.StatusCode.INVALID_ARGUMENT,
     "controls.genres[0]: at most 255 characters"),
]  # fmt: skip


@pytest.mark.parametrize(("uri", "controls", "code", "message"), BAD_REQUESTS)
def test_bad_input_gets_its_status(servers, clip, uri, controls, code, message):
    (servers.media / "notes.mp4").write_text("not a video at all\n" * 50)
    uri = uri.format(media=servers.media.as_uri(), clip=clip.path.as_uri())
    request = gateway_pb2.ScoreRequest(
        video=common_pb2.VideoSource(uri=uri), controls=common_pb2.UserControls(**controls)
    )
    got, details = code_of(lambda: score(servers.gateway, request))
    assert got == code, details
    assert message in details and "Traceback" not in details
    assert len(details) <= 1000
    assert not any(servers.staging.glob("*"))


@pytest.mark.parametrize(
    ("uri", "message"),
    [("file:///etc/bgm", "outside the folders this server may write"),
     ("file://otherhost{media}/out", "names another host")],
)  # fmt: skip
def test_output_uri_outside_the_roots(servers, clip, uri, message):
    request = gateway_pb2.ScoreRequest(
        video=common_pb2.VideoSource(uri=clip.path.as_uri()),
        output=gateway_pb2.OutputOptions(output_uri=uri.format(media=servers.media)),
    )
    code, details = code_of(lambda: score(servers.gateway, request))
    assert code == grpc.StatusCode.PERMISSION_DENIED and message in details


def test_a_file_uri_with_a_query_or_fragment_is_refused(servers, clip):
    """A '?' or '#' left unescaped in a file URI is refused, not dropped: the output folder
    `out/take?2` had been written as `out/take`, and `clip.mp4#2` read as `clip.mp4`."""
    out = (servers.media / "out").as_uri()
    for video, output in [(clip.path.as_uri() + "#2", ""), (clip.path.as_uri(), out + "/take?2")]:
        request = gateway_pb2.ScoreRequest(
            video=common_pb2.VideoSource(uri=video),
            output=gateway_pb2.OutputOptions(output_uri=output),
        )
        code, details = code_of(lambda request=request: score(servers.gateway, request))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, details
        assert "a file URI has no query or fragment" in details and "%3F or %23" in details
    assert not (servers.media / "out").exists()


def test_upload_over_the_limit(servers):
    def upload() -> list[gateway_pb2.ScoreUploadResponse]:
        header = gateway_pb2.UploadHeader(file_name="big.mp4", size_bytes=10**13)
        with grpc.insecure_channel(servers.gateway) as channel:
            stub = gateway_pb2_grpc.GatewayStub(channel)
            requests = iter([gateway_pb2.ScoreUploadRequest(header=header)])
            return list(stub.ScoreUpload(requests, timeout=30))

    got, details = code_of(upload)
    assert got == grpc.StatusCode.RESOURCE_EXHAUSTED and "over the limit" in details


def test_a_compressed_request_is_refused_and_nothing_is_staged(servers, clip):
    """gzip had let a client stage 4.7 GiB of upload from 4.7 MiB on the wire (a stream of
    zeros), filling the staging disk for every other caller: requests come uncompressed,
    and a compressed one is refused before the gateway reads it."""
    data = clip.path.read_bytes()
    header = gateway_pb2.UploadHeader(file_name="clip.mp4", size_bytes=len(data))
    staged_before = sorted(servers.staging.iterdir()) if servers.staging.exists() else []

    def upload(compression: grpc.Compression) -> list[gateway_pb2.ScoreUploadResponse]:
        with grpc.insecure_channel(servers.gateway) as channel:
            stub = gateway_pb2_grpc.GatewayStub(channel)
            requests = iter([gateway_pb2.ScoreUploadRequest(header=header),
                             gateway_pb2.ScoreUploadRequest(chunk=data)])  # fmt: skip
            return list(stub.ScoreUpload(requests, timeout=30, compression=compression))

    code, details = code_of(lambda: upload(grpc.Compression.Gzip))
    assert code == grpc.StatusCode.UNIMPLEMENTED and "gzip" in details.lower(), details
    staged_after = sorted(servers.staging.iterdir()) if servers.staging.exists() else []
    assert staged_after == staged_before
    # The same request uncompressed is served.
    assert upload(grpc.Compression.NoCompression)[-1].event.WhichOneof("event") == "result"


@pytest.mark.parametrize(("stated_more", "came"), [(1000, "{size} came"), (-1000, "more came")])
def test_an_upload_must_be_the_size_its_header_states(servers, clip, stated_more, came):
    """An upload that breaks off before the size its header states is refused (what came had
    been scored as the video, or refused as a broken file), and so is one that sends more,
    once it has."""
    data = clip.path.read_bytes()
    header = gateway_pb2.UploadHeader(file_name="clip.mp4", size_bytes=len(data) + stated_more)

    def upload() -> list[gateway_pb2.ScoreUploadResponse]:
        with grpc.insecure_channel(servers.gateway) as channel:
            stub = gateway_pb2_grpc.GatewayStub(channel)
            chunks = [data[i : i + 65536] for i in range(0, len(data), 65536)]
            parts = [gateway_pb2.ScoreUploadRequest(chunk=c) for c in chunks]
            requests = iter([gateway_pb2.ScoreUploadRequest(header=header), *parts])
            return list(stub.ScoreUpload(requests, timeout=30))

    code, details = code_of(upload)
    said = f"the upload's header said {header.size_bytes} bytes and {came.format(size=len(data))}"
    assert code == grpc.StatusCode.INVALID_ARGUMENT and said in details, details


def test_an_upload_is_bounded_by_its_chunks_and_the_staging_disk(tmp_path, monkeypatch):
    """A chunk costs the gateway about 0.1 ms however small: each counts as at least
    gateway.min_chunk_bytes against the upload's limit, so a stream of empty chunks ends as
    too large (100,000 of them had cost 6.6 s of the gateway's CPU and counted nothing),
    while the same bytes in full chunks arrive. And uploads from any number of clients stop
    before the staging disk runs out of room (STAGING_FULL, with a time to retry)."""
    import asyncio
    import io

    from services.config import BgmConfig, GatewayConfig
    from services.errors import ResourceExhaustedError
    from services.gateway import servicer
    from services.gateway.servicer import GatewayServicer

    async def scenario() -> None:
        # Made in its event loop, as a server makes it (its channels belong to the loop).
        gateway = GatewayServicer.from_config(BgmConfig(gateway=GatewayConfig(
            max_upload_bytes=512 * 1024, min_chunk_bytes=16 * 1024)))  # fmt: skip

        async def upload(chunks: list[bytes]) -> int:
            async def messages():
                for chunk in chunks:
                    yield gateway_pb2.ScoreUploadRequest(chunk=chunk)

            deadline = asyncio.get_running_loop().time() + gateway.config.upload_timeout_s
            caller = cast(Any, SimpleNamespace(cancelled=lambda: False))
            return await gateway._received(messages(), io.BytesIO(), tmp_path, deadline, 0, caller)

        with pytest.raises(ResourceExhaustedError, match="each chunk counts as at least 16384"):
            await upload([b""] * 33)
        assert await upload([b"x" * 16384] * 32) == 512 * 1024
        # An upload stops once the staging disk has less room than min_free_staging_bytes.
        free = gateway.config.min_free_staging_bytes - 1
        usage = shutil.disk_usage(tmp_path)._replace(free=free)
        monkeypatch.setattr(servicer.shutil, "disk_usage", lambda _: usage)
        monkeypatch.setattr(servicer, "STAGING_CHECK_BYTES", 64 * 1024)
        with pytest.raises(ResourceExhaustedError, match="staging disk is nearly full") as caught:
            await upload([b"x" * 16384] * 32)
        assert caught.value.error_reason == "STAGING_FULL"
        await gateway.close()

    asyncio.run(scenario())


def test_uploads_stop_before_the_staging_folder_s_own_capacity(tmp_path):
    """Where the staging folder has less room than its disk (a Kubernetes emptyDir's
    sizeLimit on a node's disk), gateway.staging_capacity_bytes holds uploads to it, counting
    what the folder holds: the free space of the node's disk had let uploads fill the volume
    past its limit, for the pod to be evicted, before STAGING_FULL (a hostile QA round)."""
    import asyncio

    from services.config import BgmConfig, GatewayConfig
    from services.errors import ResourceExhaustedError
    from services.gateway import servicer
    from services.gateway.servicer import GatewayServicer

    staging = tmp_path / "staging"
    (staging / "another").mkdir(parents=True)
    (staging / "another" / "video.mp4").write_bytes(b"x" * 3 * 1024**2)

    async def scenario() -> None:
        gateway = GatewayServicer.from_config(BgmConfig(gateway=GatewayConfig(
            staging_dir=staging, staging_capacity_bytes=6 * 1024**2,
            min_free_staging_bytes=1024**2)))  # fmt: skip
        folder = staging / "mine"
        folder.mkdir()
        # 3 MiB held, 1 MiB to keep free: 2 MiB may come, by its header or as it arrives.
        gateway._check_staging_room(folder, 2 * 1024**2)
        with pytest.raises(ResourceExhaustedError, match="nearly full") as caught:
            gateway._check_staging_room(folder, 2 * 1024**2 + 1)
        assert caught.value.error_reason == "STAGING_FULL"
        (folder / "upload.mp4").write_bytes(b"x" * 2 * 1024**2 + b"x")
        with pytest.raises(ResourceExhaustedError, match="nearly full"):
            gateway._check_staging_room(folder, 0)
        await gateway.close()

    assert servicer.shutil.disk_usage(tmp_path).free > 1024**3
    asyncio.run(scenario())


def test_deadline_exceeded(servers, beat_video):
    # A 46 s video: scoring it takes seconds, far past a 0.3 s deadline (a 6 s clip can be
    # scored within 0.3 s once the services are warm).
    video = common_pb2.VideoSource(data=beat_video.path.read_bytes(), file_name="beat.mp4")
    request = gateway_pb2.ScoreRequest(video=video)
    assert code_of(lambda: score(servers.gateway, request, timeout=0.3))[0] == (
        grpc.StatusCode.DEADLINE_EXCEEDED
    )


def test_the_api_reads_tags_as_people_write_them_and_echoes_the_vocabulary(servers, clip):
    controls = common_pb2.UserControls(genres=["Hip Hop"], instruments=["guitar"], key="Em")
    request = gateway_pb2.ScoreRequest(video=common_pb2.VideoSource(uri=clip.path.as_uri()),
                                       controls=controls)  # fmt: skip
    result = score(servers.gateway, request)[-1].result
    assert result.tags.genres[0] == "hip-hop" and "acoustic-guitar" in result.tags.instruments
    assert result.tags.key == "E minor" and result.plan.key == "E minor"
    request.controls.genres[:] = ["rok"]
    code, details = code_of(lambda: score(servers.gateway, request))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "did you mean rock?" in details


@pytest.mark.parametrize(
    ("controls", "code", "fields", "reason"),
    [({"genres": ["rok"]}, grpc.StatusCode.INVALID_ARGUMENT, ["controls.genres"], "UNKNOWN_TAG"),
     ({"key": "H major"}, grpc.StatusCode.INVALID_ARGUMENT, ["controls.key"], "BAD_KEY"),
     ({"seed": -1}, grpc.StatusCode.INVALID_ARGUMENT, ["controls.seed"], "FIELD_LIMIT"),
     ({"bpm": 400.0}, grpc.StatusCode.INVALID_ARGUMENT, ["controls.bpm"], "INVALID_INPUT")],
)  # fmt: skip
def test_errors_carry_machine_readable_details(servers, clip, controls, code, fields, reason):
    from services.gateway.client import error_details

    request = gateway_pb2.ScoreRequest(video=common_pb2.VideoSource(uri=clip.path.as_uri()),
                                       controls=common_pb2.UserControls(**controls))  # fmt: skip
    with pytest.raises(grpc.RpcError) as caught:
        score(servers.gateway, request)
    assert caught.value.code() == code
    details = error_details(caught.value)
    assert details.fields == fields and details.reason == reason
    assert details.retry_after_s is None


@pytest.mark.parametrize(
    ("header", "field"),
    [({"size_bytes": -5}, "header.size_bytes"),
     ({"controls": common_pb2.UserControls(genres=["x" * 300])}, "header.controls.genres[0]"),
     ({"controls": common_pb2.UserControls(genres=["rok"])}, "header.controls.genres"),
     ({"output": gateway_pb2.OutputOptions(format=99)}, "header.output.format")],  # type: ignore[arg-type]
)  # fmt: skip
def test_an_upload_s_refusal_names_the_field_where_its_message_holds_it(
    servers, clip, header, field
):
    """An upload's controls and output are its header's: a refusal had named them as a
    Score's ("controls.genres"), or a header's own field without it ("size_bytes")."""
    from services.gateway.client import error_details

    data = clip.path.read_bytes()
    fields = {"file_name": "clip.mp4", "size_bytes": len(data), **header}

    def upload() -> list[gateway_pb2.ScoreUploadResponse]:
        requests = iter([gateway_pb2.ScoreUploadRequest(header=gateway_pb2.UploadHeader(**fields)),
                         gateway_pb2.ScoreUploadRequest(chunk=data)])  # fmt: skip
        with grpc.insecure_channel(servers.gateway) as channel:
            return list(gateway_pb2_grpc.GatewayStub(channel).ScoreUpload(requests, timeout=60))

    with pytest.raises(grpc.RpcError) as caught:
        upload()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    assert error_details(caught.value).fields == [field], caught.value.details()


def _asked(request: gateway_pb2.ScoreRequest, **fields: Any) -> None:
    """Sets dotted fields ("output.format") on `request`."""
    for dotted, value in fields.items():
        *parents, name = dotted.split("__")
        message = request
        for parent in parents:
            message = getattr(message, parent)
        setattr(message, name, value)


@pytest.mark.parametrize(
    ("fields", "field", "says"),
    [({"output__loudness_lufs": 0.0}, "output.loudness_lufs", "loudness target 0 LUFS"),
     ({"output__format": 99}, "output.format", "99 is not a value of OutputFormat"),
     ({"output__format": gateway_pb2.OUTPUT_FORMAT_WEBM}, "output.format",
      "video stream into .webm"),
     ({"controls__structure": "reference", "controls__reference_audio": b"RIFF"},
      "controls.structure", "cannot follow structure 'reference'"),
     ({"video__uri": ""}, "video.uri", "unsupported URI scheme"),
     ({"video__uri": "folder"}, "video.uri", "is a folder, not a video file"),
     ({"video__uri": "pipe"}, "video.uri", "is a pipe, not a video file"),
     ({"controls__seed": 2**32}, "controls.seed", "must be at most 4294967295 (got 4294967296)")],
)  # fmt: skip
def test_a_refusal_names_the_field_at_fault(servers, clip, fields, field, says):
    """What a hostile-input review found refused with no field named (or, for the seed,
    with both numbers printed as 4.29497e+09, and a folder or a pipe as a file that does not
    exist)."""
    import os

    from services.gateway.client import error_details

    request = gateway_pb2.ScoreRequest(video=common_pb2.VideoSource(uri=clip.path.as_uri()))
    if fields.get("video__uri") == "folder":
        fields = {"video__uri": clip.path.parent.as_uri()}
    if fields.get("video__uri") == "pipe":
        pipe = clip.path.parent / "pipe.mp4"
        if not pipe.exists():
            os.mkfifo(pipe)
        fields = {"video__uri": pipe.as_uri()}
    _asked(request, **fields)
    with pytest.raises(grpc.RpcError) as caught:
        score(servers.gateway, request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    assert says in caught.value.details()
    assert error_details(caught.value).fields == [field]


@pytest.mark.parametrize(
    ("fields", "field"),
    [({"controls__structure": "reference", "controls__reference_audio": b"RIFF"},
      "controls.structure"),
     ({"output__sample_rate": 32000}, "output.sample_rate")],
)  # fmt: skip
def test_a_structure_or_a_rate_the_generator_does_not_offer_is_not_offered(
    servers, clip, fields, field
):
    """Refused with the reason a genre, an instrument, candidates, MIDI or stems not offered
    have (a swapped-backend review: these two had said INVALID_INPUT, and a client that
    branches on NOT_OFFERED missed them)."""
    from services.gateway.client import error_details

    request = gateway_pb2.ScoreRequest(video=common_pb2.VideoSource(uri=clip.path.as_uri()))
    _asked(request, **fields)
    with pytest.raises(grpc.RpcError) as caught:
        score(servers.gateway, request)
    details = error_details(caught.value)
    assert (details.fields, details.reason) == ([field], "NOT_OFFERED"), caught.value.details()


def test_a_video_that_is_not_one_says_why_in_the_details(servers):
    from services.gateway.client import error_details

    request = gateway_pb2.ScoreRequest(video=common_pb2.VideoSource(data=b"not a video" * 100))
    with pytest.raises(grpc.RpcError) as caught:
        score(servers.gateway, request)
    details = error_details(caught.value)
    assert details.fields == ["video"] and details.reason == "VIDEO_NOT_A_VIDEO"


def metric(url: str, name: str) -> float:
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    values = [
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    ]
    return sum(values)


@pytest.mark.alone
def test_cancelling_stops_the_generator_within_a_second(servers, beat_analysis):
    brief = genre_brief(beat_analysis, "pop", duration_s=900.0)
    with grpc.insecure_channel(servers.generator) as channel:
        stub = generator_pb2_grpc.GeneratorStub(channel)
        call = stub.Generate(
            generator_pb2.GenerateRequest(brief=brief_to_proto(brief)), timeout=120
        )
        for message in call:
            if message.WhichOneof("event") == "progress" and message.progress.fraction > 0.2:
                break
        metrics_url = servers.generator_metrics
        assert metric(metrics_url, "bgm_generations_running") == 1
        # The piece's share of the audio budget: 900 s of 32-bit stereo.
        assert metric(metrics_url, "bgm_audio_held_bytes") == 900 * brief.sample_rate * 2 * 4
        call.cancel()
        cancelled = time.monotonic()
        while metric(metrics_url, "bgm_generations_running") > 0:
            assert time.monotonic() - cancelled < 1.0, "the generator kept working"
            time.sleep(0.05)
        while metric(metrics_url, "bgm_audio_held_bytes") > 0:
            assert time.monotonic() - cancelled < 1.0, "the share was kept"
            time.sleep(0.05)


def test_metrics_count_requests_by_method_and_code(servers, clip):
    request = gateway_pb2.ScoreRequest(video=common_pb2.VideoSource(uri=clip.path.as_uri()))
    score(servers.gateway, request)
    text = urllib.request.urlopen(servers.metrics, timeout=5).read().decode()
    assert 'bgm_requests_total{code="OK",method="Score",service="bgm.v1.Gateway",tenant=""}' in text
    # Latency by code too (refusals at once had swamped the served requests' figures), up
    # to an hour (a long video's Score; the top bucket had been 900 s).
    assert ('bgm_request_seconds_bucket{code="OK",le="3600.0",method="Score",'
            'service="bgm.v1.Gateway"}') in text  # fmt: skip
    assert "bgm_compute_seconds_per_music_second" in text


def test_a_request_over_the_message_limit_is_counted_and_audited(servers):
    """A request gRPC itself refuses as over serving.max_message_bytes (64 MiB), or one its
    caller cancels before its message has come, is counted and audited as cancelled: a
    70 MB Analyze had left no trace in the metrics or the log."""
    import json

    def counted() -> float:
        return metric(servers.metrics, 'bgm_requests_total{code="CANCELLED",method="Analyze"')

    before = counted()
    request = gateway_pb2.GatewayAnalyzeRequest(
        video=common_pb2.VideoSource(data=b"\x00" * 70_000_000, file_name="big.mp4")
    )
    with grpc.insecure_channel(servers.gateway) as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        code, _ = code_of(lambda: stub.Analyze(request, timeout=60))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    deadline = time.monotonic() + 10
    while counted() < before + 1:
        assert time.monotonic() < deadline, "the refused request was not counted"
        time.sleep(0.1)
    lines = servers.log.read_text().splitlines()
    audited = [json.loads(line.split("bgm.audit ", 1)[1]) for line in lines if "bgm.audit " in line]
    assert any(a["method"] == "Analyze" and a["status"] == "CANCELLED" for a in audited)


def audit_until(log: Path, until: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
    """The audit lines of `log` once `until` holds of them (or after 10 s)."""
    import json

    deadline = time.monotonic() + 10
    while True:
        lines = log.read_text().splitlines()
        audited = [json.loads(line.split("bgm.audit ", 1)[1]) for line in lines
                   if "bgm.audit " in line]  # fmt: skip
        if until(audited) or time.monotonic() > deadline:
            return audited
        time.sleep(0.1)


def _audit_once(log: Path, request_id: str) -> list[dict[str, Any]]:
    """The audit lines of `log` once one names `request_id` (or after 10 s)."""
    return audit_until(log, lambda audited: any(a["request_id"] == request_id for a in audited))


def test_a_gateway_caller_cannot_name_a_parent_request_in_the_audit(servers, clip):
    """The parent request and whom a call is for are the gateway's to say on its calls to the
    tagger and the generator: a gateway's own caller that sends them (another caller's
    request id) is not believed, and its line names none."""

    claimed = (("bgm-parent-request-id", "ab" * 16), ("bgm-on-behalf-of", "victim"))
    request = gateway_pb2.GatewayAnalyzeRequest(
        video=common_pb2.VideoSource(uri=clip.path.as_uri())
    )
    with grpc.insecure_channel(servers.gateway) as channel:
        call = gateway_pb2_grpc.GatewayStub(channel).Analyze.with_call(
            request, metadata=claimed, timeout=60
        )
    request_id = dict(call[1].trailing_metadata())["x-request-id"]
    audited = _audit_once(servers.log, request_id)
    mine = [a for a in audited if a["request_id"] == request_id]
    assert mine and mine[0]["parent_request_id"] == "" and mine[0]["on_behalf_of"] == ""
    # Its own call to the tagger names it.
    assert any(a["parent_request_id"] == request_id and a["service"] == "bgm.v1.Tagger"
               for a in audited)  # fmt: skip


def test_a_call_s_id_comes_in_its_headers_and_the_caller_s_own_is_audited(servers, clip):
    """The request id comes in the headers as well as the trailers (a call whose deadline
    passed had no id to report), and the caller's own x-request-id (a proxy's, a client's
    trace) is kept beside it in the audit line (it had been dropped)."""

    request = gateway_pb2.GatewayAnalyzeRequest(
        video=common_pb2.VideoSource(uri=clip.path.as_uri())
    )
    with grpc.insecure_channel(servers.gateway) as channel:
        _, call = gateway_pb2_grpc.GatewayStub(channel).Analyze.with_call(
            request, metadata=(("x-request-id", "client-trace-7"),), timeout=60
        )
    request_id = dict(call.trailing_metadata())["x-request-id"]
    assert dict(call.initial_metadata())["x-request-id"] == request_id != "client-trace-7"
    audited = _audit_once(servers.log, request_id)
    mine = [a for a in audited if a["request_id"] == request_id]
    assert mine and mine[0]["client_request_id"] == "client-trace-7", mine


def test_serve_all_exposes_its_metrics_once(servers):
    """One process, one registry: scraping three ports would count everything three times."""
    import yaml

    with grpc.insecure_channel(servers.generator) as channel:
        generator_pb2_grpc.GeneratorStub(channel).Describe(
            generator_pb2.GeneratorDescribeRequest(), timeout=10
        )
    with grpc.insecure_channel(servers.tagger) as channel:
        tagger_pb2_grpc.TaggerStub(channel).Describe(tagger_pb2.TaggerDescribeRequest(), timeout=10)
    config = yaml.safe_load((servers.log.parent / "bgm.yaml").read_text())
    for name in ("tagger", "generator"):
        port = config["serving"][name]["metrics_port"]
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
    text = urllib.request.urlopen(servers.metrics, timeout=5).read().decode()
    assert 'service="bgm.v1.Generator"' in text and 'service="bgm.v1.Tagger"' in text


def test_reflection_alone_is_enough_to_call_a_service(servers):
    """A client that knows nothing but what reflection tells it."""
    with grpc.insecure_channel(servers.tagger) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)

        def ask(**request: str) -> reflection_pb2.ServerReflectionResponse:
            return next(
                stub.ServerReflectionInfo(
                    iter([reflection_pb2.ServerReflectionRequest(**request)]), timeout=5
                )
            )

        services = {s.name for s in ask(list_services="").list_services_response.service}
        assert {"bgm.v1.Tagger", "grpc.health.v1.Health"} <= services
        pool = descriptor_pool.DescriptorPool()
        files = ask(file_containing_symbol="bgm.v1.Tagger").file_descriptor_response
        protos = [
            descriptor_pb2.FileDescriptorProto.FromString(raw)
            for raw in files.file_descriptor_proto
        ]
        added: set[str] = set()
        while len(added) < len(protos):
            for proto in protos:
                if proto.name not in added and set(proto.dependency) <= added:
                    pool.Add(proto)
                    added.add(proto.name)
        method = pool.FindServiceByName("bgm.v1.Tagger").methods_by_name["Describe"]
        request_class = message_factory.GetMessageClass(method.input_type)
        response_class = message_factory.GetMessageClass(method.output_type)
        call = channel.unary_unary(
            "/bgm.v1.Tagger/Describe",
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )
        reply = call(request_class(), timeout=5)
        assert reply.name == "vision"


def test_a_downstream_service_that_is_down(tmp_path, media, clip):
    # A gateway alone: its tagger and generator addresses have nobody listening.
    running = start(tmp_path, media, which="gateway", alone=True, attempts=2,
                    describe_timeout_s=3.0)  # fmt: skip
    try:
        request = gateway_pb2.ScoreRequest(video=common_pb2.VideoSource(uri=clip.path.as_uri()))
        got, details = code_of(lambda: score(running.gateway, request, timeout=30))
        assert got == grpc.StatusCode.UNAVAILABLE, details
        assert "Traceback" not in details
        # Which service, not where it is: gRPC's "failed to connect to all addresses; ...
        # ipv4:127.0.0.1:PORT" had reached the caller, the servers' topology with it.
        assert "cannot be reached" in details and "127.0.0.1" not in details, details
        assert details.split()[1] in ("tagger", "generator"), details
        described = bgm("client", "describe", "--server", running.gateway)
        assert described.returncode == 1, described
        assert described.stderr.startswith("error (UNAVAILABLE): the generator cannot be "
                                           "reached"), described.stderr  # fmt: skip
        # Its health says so: a readiness probe takes it out of rotation.
        wait_serving(running.gateway, statuses=(health_pb2.HealthCheckResponse.NOT_SERVING,),
                     seconds=5)  # fmt: skip
    finally:
        assert stop(running) == 0


def _scoring_in_flight(running, beat_video) -> tuple[threading.Thread, dict[str, object]]:
    """A Score of the 46 s beat video, sent from a thread and half a second in flight (still
    running when a SIGTERM comes): the thread, and once it ends its outcome, the "events" or
    the status as "error"."""
    video = common_pb2.VideoSource(data=beat_video.path.read_bytes(), file_name="b.mp4")
    outcome: dict[str, object] = {}

    def request() -> None:
        try:
            outcome["events"] = score(running.gateway, gateway_pb2.ScoreRequest(video=video))
        except grpc.RpcError as error:
            outcome["error"] = error.code()

    worker = threading.Thread(target=request)
    worker.start()
    time.sleep(0.5)
    return worker, outcome


@pytest.mark.alone
def test_sigterm_drains_requests_in_flight(tmp_path, media, beat_video):
    running = start(tmp_path, media)
    worker, outcome = _scoring_in_flight(running, beat_video)
    assert stop(running) == 0
    worker.join(timeout=60)
    assert "error" not in outcome, outcome
    events = outcome["events"]
    assert isinstance(events, list) and events[-1].WhichOneof("event") == "result"


@pytest.mark.alone
def test_sigterm_turns_every_service_away_at_once_and_ends_within_its_grace(
    tmp_path, media, beat_video
):
    """`serve all` told to stop while the gateway drains a request: the tagger and the
    generator say NOT_SERVING at once too (they had said SERVING, and taken new work, until
    the gateway's grace was over, then drained with a grace of their own: the process had
    exited up to three graces after SIGTERM, 93 s for 30 s)."""
    grace_s = 6.0
    running = start(tmp_path, media, changes={"serving": {"grace_s": grace_s}})
    worker, outcome = _scoring_in_flight(running, beat_video)
    running.process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    not_serving = (health_pb2.HealthCheckResponse.NOT_SERVING,)
    for address in (running.tagger, running.generator):
        wait_serving(address, statuses=not_serving, seconds=2)
    assert time.monotonic() - signalled < 2.0
    assert running.process.wait(timeout=60) == 0
    assert time.monotonic() - signalled < grace_s + 4.0
    worker.join(timeout=60)
    # Drained within the grace (its music) or cut at its end (a status): either ends it.
    assert outcome and not worker.is_alive(), outcome


def test_candidates_come_back_ranked_and_the_gateway_delivers_the_best(servers, clip, tmp_path):
    import numpy as np

    from services.contract import (
        analysis_from_proto,
        controls_from_proto,
        generator_info_from_proto,
        plan_from_proto,
        ranking_from_proto,
    )
    from services.gateway.controls import make_brief
    from services.media.audio import decode_audio
    from services.vocabulary import load_vocabulary

    # With this seed the best-ranked is not candidate 0 (it ranks last, candidate 1 leading it
    # by 0.0068 with today's composer), so delivering it is a choice; the assert below says so
    # if a change to the composer makes candidate 0 the best, and another seed is then needed.
    controls = common_pb2.UserControls(candidates=3, seed=4)
    request = gateway_pb2.ScoreRequest(
        video=common_pb2.VideoSource(uri=clip.path.as_uri()),
        controls=controls,
        output=gateway_pb2.OutputOptions(format=gateway_pb2.OUTPUT_FORMAT_WAV),
    )
    events = score(servers.gateway, request)
    result = events[-1].result
    ranking = ranking_from_proto(result.ranking)
    assert sorted(s.rank for s in ranking) == [1, 2, 3]
    assert sorted(s.candidate for s in ranking) == [0, 1, 2]
    assert [s.score for s in ranking] == sorted((s.score for s in ranking), reverse=True)
    assert all(0.0 <= s.tempo_fit <= 1.0 and s.cut_accent is not None for s in ranking)

    # The same brief straight to the generator: each candidate's plan and audio, then the
    # ranking, last; the gateway delivered the first-ranked candidate.
    analysis = next(e.analysis for e in events if e.WhichOneof("event") == "analysis")
    with grpc.insecure_channel(servers.generator) as channel:
        stub = generator_pb2_grpc.GeneratorStub(channel)
        info = generator_info_from_proto(stub.Describe(generator_pb2.GeneratorDescribeRequest()))
        brief = make_brief(analysis_from_proto(analysis), controls_from_proto(controls),
                           load_vocabulary(), info, 48000)  # fmt: skip
        call = generator_pb2.GenerateRequest(brief=brief_to_proto(brief), candidates=3)
        messages = list(stub.Generate(call, timeout=60))
    kinds = [m.WhichOneof("event") for m in messages]
    assert kinds[-1] == "ranking" and kinds.count("ranking") == 1
    assert ranking_from_proto(messages[-1].ranking.scores) == ranking
    plans = {m.candidate: m.plan for m in messages if m.WhichOneof("event") == "plan"}
    assert set(plans) == {0, 1, 2}
    assert plan_from_proto(result.plan) == plan_from_proto(plans[ranking[0].candidate])
    pcm: dict[int, bytes] = dict.fromkeys(plans, b"")
    for m in messages:
        if m.WhichOneof("event") == "audio":
            pcm[m.candidate] += m.audio.pcm_f32le
    candidates = {c: np.frombuffer(data, np.float32).reshape(-1, 2) for c, data in pcm.items()}
    assert {len(a) for a in candidates.values()} == {round(brief.duration_s * 48000)}
    delivered_path = tmp_path / "delivered.wav"
    delivered_path.write_bytes(
        b"".join(e.file.data for e in events if e.WhichOneof("event") == "file")
    )
    decoded = decode_audio(delivered_path, 48000, len(candidates[0]))
    assert decoded is not None
    delivered = decoded

    def likeness(audio: np.ndarray) -> float:
        return float(np.corrcoef(audio[:, 0], delivered[:, 0])[0, 1])

    assert ranking[0].candidate != 0
    assert max(candidates, key=lambda c: likeness(candidates[c])) == ranking[0].candidate


def test_generate_marks_the_events_of_the_whole_request(servers, beat_analysis):
    brief = genre_brief(beat_analysis, "pop", duration_s=4.0)
    with grpc.insecure_channel(servers.generator) as channel:
        stub = generator_pb2_grpc.GeneratorStub(channel)
        request = generator_pb2.GenerateRequest(brief=brief_to_proto(brief), candidates=2)
        events = list(stub.Generate(request, timeout=120))
    whole = {e.WhichOneof("event") for e in events if e.every_candidate}
    assert whole == {"progress", "ranking"}
    assert events[-1].WhichOneof("event") == "ranking"
    plans = [e.candidate for e in events if e.WhichOneof("event") == "plan"]
    own = [e for e in events if e.WhichOneof("event") in ("plan", "audio", "midi")]
    assert plans == [0, 1] and not any(e.every_candidate for e in own)


@pytest.mark.parametrize(
    ("change", "field"),
    [({"cuts": [common_pb2.Cut(time_s=99.0)]}, "brief.cuts[0]"),
     ({"segments": [common_pb2.Segment(start_s=0.0, end_s=1.0),
                    common_pb2.Segment(start_s=2.0, end_s=4.0)]}, "brief.segments[1]"),
     ({"segments": [common_pb2.Segment(start_s=0.0, end_s=3.0)]}, "brief.segments[0]"),
     ({"segments": [common_pb2.Segment(start_s=1.0, end_s=4.0)]}, "brief.segments[0]"),
     ({"segments": [common_pb2.Segment(start_s=0.0, end_s=4.0, energy=7.0)]},
      "brief.segments[0].energy"),
     ({"segments": [common_pb2.Segment(start_s=0.0, end_s=4.0,
                                       look=common_pb2.Look(warmth=-0.5))]},
      "brief.segments[0].look.warmth"),
     ({"segments": [common_pb2.Segment(start_s=0.0, end_s=4.0, moods=["calm", "sneaky"])]},
      "brief.segments[0].moods"),
     ({"cuts": [common_pb2.Cut(time_s=2.0, strength=3.0)]}, "brief.cuts[0].strength"),
     ({"tags": {"energy": 3.0}}, "brief.tags.energy")],
)  # fmt: skip
def test_a_brief_off_its_own_timeline_is_refused(servers, beat_analysis, change, field):
    """Segments that do not tile the music, cuts outside it, and energies, looks and
    strengths (the tags' energy too) off the contract's 0..1 or moods off the vocabulary:
    INVALID_ARGUMENT naming the field (energy 7 and strength 3 were once played, and the
    plan gave the section over the energy 7 an energy of 4.4)."""
    from services.gateway.client import error_details

    message = brief_to_proto(genre_brief(beat_analysis, "pop", duration_s=4.0))
    for name, values in change.items():
        if isinstance(values, dict):  # fields of a message
            for field_name, value in values.items():
                setattr(getattr(message, name), field_name, value)
        else:  # a repeated field's items
            del getattr(message, name)[:]
            getattr(message, name).extend(values)
    with grpc.insecure_channel(servers.generator) as channel:
        stub = generator_pb2_grpc.GeneratorStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            list(stub.Generate(generator_pb2.GenerateRequest(brief=message), timeout=30))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(caught.value).fields == [field], caught.value.details()


def test_generator_refuses_too_many_candidates(servers, beat_analysis):
    brief = genre_brief(beat_analysis, "pop", duration_s=5.0)
    with grpc.insecure_channel(servers.generator) as channel:
        stub = generator_pb2_grpc.GeneratorStub(channel)
        got, details = code_of(
            lambda: list(
                stub.Generate(
                    generator_pb2.GenerateRequest(brief=brief_to_proto(brief), candidates=9),
                    timeout=30,
                )
            )
        )
    assert got == grpc.StatusCode.INVALID_ARGUMENT and "candidates" in details


def test_a_shared_staging_store_for_a_tagger_elsewhere(tmp_path, media, clip):
    # The tagger may not read the gateway's staging folder (as on another pod): the gateway
    # puts each staged video in the store (an fsspec URL), the tagger fetches it from there.
    store = tmp_path / "store"
    store.mkdir()
    running = start(
        tmp_path, media,
        tagger_sources={"file_roots": [], "object_prefixes": [store.as_uri() + "/"]},
        staging_url=store.as_uri(),
    )  # fmt: skip
    try:
        request = gateway_pb2.ScoreRequest(
            video=common_pb2.VideoSource(data=clip.path.read_bytes(), file_name="clip.mp4"),
            output=gateway_pb2.OutputOptions(format=gateway_pb2.OUTPUT_FORMAT_WAV),
        )
        events = score(running.gateway, request)
        assert events[-1].WhichOneof("event") == "result"
        assert list(store.iterdir()) == []  # the request's folder in the store is gone
        assert list(running.staging.iterdir()) == []
    finally:
        assert stop(running) == 0


def test_full_collections_after_start_up_walk_only_what_came_since():
    # A full garbage collection walks every object the collector tracks and holds the event
    # loop and every thread while it does: 175 ms with the start-up heap of `bgm serve all`
    # (246,000 objects), at moments of its own, in the middle of other callers' requests.
    import asyncio
    import gc

    from services.config import BgmConfig
    from services.serve import in_process_services

    async def started() -> tuple[int, int]:
        async with in_process_services(BgmConfig()):
            return gc.get_freeze_count(), len(gc.get_objects())

    frozen, walked = asyncio.run(started())
    assert frozen > 100_000 and walked < frozen / 20, (frozen, walked)
