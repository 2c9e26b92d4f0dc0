"""`bgm studio`'s HTTP API against a real gateway (issue 20): upload, score with streamed
events, results kept for the session, downloads, errors as the API gives them."""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from services.config import StudioConfig
from services.devserver import Running, free_port, start, stop
from services.media.synth import Shot, write_video
from services.scratch import MARKER
from services.studio.app import (
    COOKIE,
    EMPTY_SESSION_S,
    ControlError,
    GatewayLink,
    create_app,
    score_controls,
    server_options,
)

pytestmark = pytest.mark.slow


def local_client(app: Any, **options: Any) -> TestClient:
    """A client of the app as a browser on this machine is (Host: 127.0.0.1; TestClient's
    own "testserver" is a name the studio does not answer to)."""
    return TestClient(app, base_url="http://127.0.0.1", **options)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    folder = tmp_path_factory.mktemp("studio-services")
    running = start(folder, folder)
    yield running
    assert stop(running) == 0


@pytest.fixture
def client(gateway: Running, tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(StudioConfig(folder=tmp_path / "studio", keep_s=3600),
                     GatewayLink(gateway.gateway))  # fmt: skip
    with local_client(app) as client:
        yield client


def wait_until(condition: Callable[[], object], what: str, seconds: float = 30.0) -> None:
    """Until `condition` holds; a test that waits for ever had hung CI."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"waited {seconds:g} s for {what}"
        time.sleep(0.01)


def events(client: TestClient, job: str) -> list[dict]:
    with client.stream("GET", f"/api/scores/{job}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        return [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]


def test_upload_score_follow_and_download(client: TestClient, tmp_path: Path):
    page = client.get("/")
    assert page.status_code == 200 and "bgm studio" in page.text
    assert "bgm_studio" in page.cookies
    for asset in ("/static/studio.js", "/static/studio.css"):
        assert client.get(asset).status_code == 200
    choices = client.get("/api/choices").json()
    assert "rock" in choices["genres"] and "auto" in choices["speech"]
    assert choices["generator"] == "composer" and choices["candidates"] == 4
    assert choices["stems"] is True and choices["midi"] is True
    clip = write_video(tmp_path / "clip.mp4", [Shot(2.0, hue=0.2), Shot(2.0, hue=0.7)])
    uploaded = client.post("/api/videos", content=clip.path.read_bytes(),
                           headers={"X-File-Name": "my clip.mp4"}).json()  # fmt: skip
    assert uploaded["name"] == "my_clip.mp4"
    assert client.get(uploaded["url"]).content == clip.path.read_bytes()
    # The timeline before scoring: Gateway.Analyze through the studio.
    seen_first = client.get(f"/api/videos/{uploaded['id']}/analysis").json()
    assert [round(c["time_s"], 1) for c in seen_first["cuts"]] == [2.0]
    assert {o["source"] for o in seen_first["tags"]["origins"]} == {"picture"}
    assert "path" not in json.dumps(client.get("/api/state").json()["videos"])
    job = client.post("/api/scores", json={"video_id": uploaded["id"], "genres": ["rock"],
                                           "seed": 3, "lufs": -20}).json()["id"]  # fmt: skip
    seen = events(client, job)
    kinds = [e["type"] for e in seen]
    assert kinds[0] in ("progress", "analysis") and kinds[-1] == "done", kinds
    analysis = next(e for e in seen if e["type"] == "analysis")
    assert [round(c["time_s"], 1) for c in analysis["cuts"]] == [2.0]
    assert analysis["segments"][0]["thumbnail_jpeg"]
    stages = {e.get("stage") for e in seen if e["type"] == "progress"}
    assert {"analysis", "composition"} <= stages
    result = next(e for e in seen if e["type"] == "result")
    assert result["plan"]["beats_s"] and result["plan"]["genre"] == "rock"
    assert result["loudness"]["target_lufs"] == -20
    assert {"kind": "genre", "tag": "rock", "source": "user"} in [
        {k: o[k] for k in ("kind", "tag", "source")} for o in result["tags"]["origins"]
    ]
    files = seen[-1]["files"]
    assert files == ["scored.mp4", "music.wav", "music.mid", "stems.zip"]
    from services.media.video import probe_video

    video = tmp_path / "got.mp4"
    video.write_bytes(client.get(f"/api/scores/{job}/files/scored.mp4").content)
    assert abs(probe_video(video).duration_s - 4.0) < 0.05
    stems = zipfile.ZipFile(io.BytesIO(client.get(f"/api/scores/{job}/files/stems.zip").content))
    assert stems.namelist() and all(n.startswith("stems/") for n in stems.namelist())
    # Stems are the visitor's choice (the page had always asked for them, so a video past
    # about 17 minutes, whose seven tracks pass the gateway's audio limit, was never scored).
    plain = client.post("/api/scores", json={"video_id": uploaded["id"], "stems": False}).json()
    assert events(client, plain["id"])[-1]["files"] == ["scored.mp4", "music.wav", "music.mid"]
    assert client.delete(f"/api/scores/{plain['id']}").status_code == 200
    # A reload loses nothing that finished.
    state = client.get("/api/state").json()
    assert [v["id"] for v in state["videos"]] == [uploaded["id"]]
    assert [j["state"] for j in state["jobs"]] == ["done"]
    # Another session sees none of it.
    other = local_client(client.app)
    assert other.get("/api/state").json() == {"videos": [], "jobs": []}
    assert other.get(f"/api/scores/{job}/files/scored.mp4").status_code == 404


def test_errors_are_the_apis(client: TestClient, tmp_path: Path):
    client.get("/")
    missing = client.post("/api/scores", json={"video_id": "nope"})
    assert missing.status_code == 400 and missing.json()["fields"] == ["video"]
    clip = write_video(tmp_path / "clip.mp4", [Shot(2.0)])
    uploaded = client.post("/api/videos", content=clip.path.read_bytes()).json()
    job = client.post("/api/scores", json={"video_id": uploaded["id"],
                                           "genres": ["polka"]}).json()["id"]  # fmt: skip
    error = events(client, job)[-1]
    assert error["type"] == "error" and error["code"] == "INVALID_ARGUMENT"
    assert "polka" in error["message"] and "Traceback" not in json.dumps(error)
    assert client.post("/api/videos", content=b"").status_code == 400
    # A name that is no file name ("." was the new video's folder, and its clean-up removed
    # every video of the session) is kept under the default one.
    for name in (".", "..", "", "..."):
        odd = client.post("/api/videos", content=clip.path.read_bytes(),
                          headers={"X-File-Name": name})  # fmt: skip
        assert odd.status_code == 200 and odd.json()["name"] == "video.mp4", (name, odd.text)
    assert client.get(uploaded["url"]).content == clip.path.read_bytes()
    # Each control is what the gateway takes, or a 400 naming it: these had been taken, and
    # failed inside the job (INTERNAL, a traceback logged), or, kept with it, made every
    # /api/state a 500 until the job was removed (Infinity, NaN, a lone surrogate).
    typed_wrong = [("seed", "1e999"), ("seed", str(2**80)), ("seed", "1" + "0" * 400),
                   ("bpm", "1" + "0" * 400), ("candidates", "1e999"),
                   ("genres", "[1, 2]"), ("moods", '"happy"'), ("instruments", '{"piano": 1}'),
                   ("prompt", '"\\ud800"'), ("lufs", "Infinity"), ("bpm", "NaN"),
                   ("keep_original_audio", '"false"')]  # fmt: skip
    for control, value in typed_wrong:
        refused = client.post("/api/scores", content=f'{{"video_id": "{uploaded["id"]}", '
                                                     f'"{control}": {value}}}')  # fmt: skip
        assert refused.status_code == 400, (control, refused.text)
        field = "output.loudness_lufs" if control == "lufs" else control
        assert refused.json()["fields"] == [field], refused.text
    assert client.get("/api/state").status_code == 200
    # An upload is served as a video or sound only: an .html one had been a page of the
    # studio's own origin.
    page = client.post("/api/videos", content=b"<script>alert(1)</script>",
                       headers={"X-File-Name": "x.html"}).json()  # fmt: skip
    served = client.get(page["url"])
    assert served.headers["content-type"] == "application/octet-stream"
    assert served.headers["x-content-type-options"] == "nosniff"
    assert client.get(uploaded["url"]).headers["content-type"] == "video/mp4"
    sample = client.post("/api/samples/sample").json()
    assert client.get(sample["url"]).status_code == 200
    assert client.post("/api/samples/nothing").status_code == 404
    bad = client.post("/api/scores", json={"video_id": uploaded["id"], "lufs": "loud"})
    assert bad.status_code == 400 and bad.json()["fields"] == ["output.loudness_lufs"]
    not_video = tmp_path / "notes.mp4"
    not_video.write_bytes(b"not a video at all")
    wrong = client.post("/api/videos", content=not_video.read_bytes()).json()
    refused = client.get(f"/api/videos/{wrong['id']}/analysis")
    assert refused.status_code == 422 and refused.json()["code"] == "INVALID_ARGUMENT"
    # A score request is a few controls: a 20 MB prompt had been read whole and kept with
    # its job for a day. A body over the limit is refused unread, and nothing is started.
    huge = client.post("/api/scores", json={"video_id": uploaded["id"], "prompt": "x" * 10**6})
    assert huge.status_code == 413 and huge.json()["code"] == "RESOURCE_EXHAUSTED"
    assert len(client.get("/api/state").json()["jobs"]) == 1


def test_the_choices_are_the_generator_s_and_a_score_asks_only_what_it_makes(tmp_path: Path):
    """A gateway whose generator makes audio alone (a diffusion model): the page is offered
    no stems, and a score asks for no MIDI and, unsaid, no stems. The studio had offered its
    own vocabulary whatever the generator, and asked every score for MIDI and stems, which
    such a gateway refuses: every score failed."""
    from services.generator.backends.diffusion.tiny import stable_audio

    model = stable_audio(tmp_path / "models", window_s=4.0)
    diffusion = ("--generator", "diffusion", "--generator-model", str(model))
    running = start(tmp_path, tmp_path, extra_args=diffusion)
    try:
        app = create_app(StudioConfig(folder=tmp_path / "studio"), GatewayLink(running.gateway))
        with local_client(app) as client:
            choices = client.get("/api/choices").json()
            assert choices["generator"] == "diffusion", choices
            assert choices["stems"] is False and choices["midi"] is False
            clip = write_video(tmp_path / "clip.mp4", [Shot(2.0, hue=0.2), Shot(2.0, hue=0.7)])
            uploaded = client.post("/api/videos", content=clip.path.read_bytes()).json()
            job = client.post("/api/scores", json={"video_id": uploaded["id"]}).json()["id"]
            done = events(client, job)[-1]
            assert done["type"] == "done", done
            assert done["files"] == ["scored.mp4", "music.wav"]
            # Asked for all the same, they are the gateway's refusal, naming them.
            asked = client.post("/api/scores", json={"video_id": uploaded["id"], "stems": True})
            refused = events(client, asked.json()["id"])[-1]
            assert refused["type"] == "error" and refused["fields"] == ["output.stems"], refused
    finally:
        assert stop(running) == 0


def test_choices_the_gateway_cannot_give_are_its_error(tmp_path: Path):
    app = create_app(StudioConfig(folder=tmp_path / "studio"), GatewayLink("127.0.0.1:1"))
    with local_client(app) as client:
        refused = client.get("/api/choices")
        assert refused.status_code == 502
        assert refused.json()["code"] == "UNAVAILABLE" and refused.json()["message"]
        assert client.get("/api/state").status_code == 200


def test_sessions_are_removed_after_keep_s(gateway: Running, tmp_path: Path):
    # Aged by hand, not by the clock: at keep_s 0.2 the studio's own sweeper could take the
    # session before the test looked (an upload slower than 0.2 s on a loaded machine).
    app = create_app(StudioConfig(folder=tmp_path / "studio", keep_s=60.0),
                     GatewayLink(gateway.gateway))  # fmt: skip
    with local_client(app) as client:
        clip = write_video(tmp_path / "clip.mp4", [Shot(1.0)])
        uploaded = client.post("/api/videos", content=clip.path.read_bytes()).json()
        own = app.state.studio.folder
        folders = [p for p in own.iterdir() if p.name != MARKER]
        assert len(folders) == 1
        app.state.studio.sweep()
        assert [p for p in own.iterdir() if p.name != MARKER] == folders  # not yet
        for session in app.state.studio.sessions.values():
            session.used -= 61.0
        app.state.studio.sweep()
        assert [p for p in own.iterdir() if p.name != MARKER] == []
        assert client.get(uploaded["url"]).status_code == 404
    # A session that holds nothing makes no folder and is forgotten after EMPTY_SESSION_S,
    # where it had kept a folder a day.
    app = create_app(StudioConfig(folder=tmp_path / "studio"), GatewayLink(gateway.gateway))
    with local_client(app) as client:
        studio = app.state.studio
        uploaded = client.post("/api/videos", content=b"x" * 10).json()
        assert client.delete(uploaded["url"]).status_code == 200
        assert len(studio.sessions) == 1
        for session in studio.sessions.values():
            session.used -= EMPTY_SESSION_S + 1
        studio.sweep()
        assert studio.sessions == {}
        assert [p for p in studio.folder.iterdir() if p.name != MARKER] == []


def test_a_visitor_dropping_the_cookie_gains_no_room(tmp_path: Path):
    """Every request without a cookie had made a session (a flood of them took memory and,
    swept, held the event loop for every visitor for seconds), and a visitor who dropped
    the cookie for a new session each, with a quota each, had filled the disk: every other
    visitor's upload refused for a day. A session is kept only once it holds something,
    only under a key this studio handed out, and an address holds at most
    max_sessions_per_address sessions and max_address_bytes in all of them."""
    config = StudioConfig(folder=tmp_path / "studio", max_sessions_per_address=2,
                          max_address_bytes=25)  # fmt: skip
    app = create_app(config, GatewayLink("127.0.0.1:1"))
    studio = app.state.studio
    with local_client(app) as client:
        for path in ("/", "/api/state") * 75:
            assert local_client(app).get(path).status_code == 200
        assert studio.sessions == {}
        made_up = local_client(app)
        kept = made_up.post("/api/videos", content=b"x" * 10,
                            headers={"Cookie": "bgm_studio=chosen-by-the-visitor"})  # fmt: skip
        assert kept.status_code == 200
        assert list(studio.sessions) == [kept.cookies["bgm_studio"]]
        assert kept.cookies["bgm_studio"] != "chosen-by-the-visitor"
        refused = local_client(app).post("/api/videos", content=b"x" * 20)  # a second session
        assert refused.status_code == 507, refused.text
        assert "this address keeps at most 25 bytes" in refused.json()["message"]
        assert client.post("/api/videos", content=b"x" * 5).status_code == 200
        third = local_client(app).post("/api/videos", content=b"x" * 1)
        assert third.status_code == 429 and "holds 2 sessions" in third.json()["message"]
        # The first session's room is its own again once it removes its video.
        (video,) = made_up.get("/api/state").json()["videos"]
        assert made_up.delete(video["url"]).status_code == 200
        assert made_up.post("/api/videos", content=b"x" * 15).status_code == 200


def test_a_made_up_cookie_past_ascii_is_a_made_up_cookie(tmp_path: Path):
    """A session cookie with a character past ASCII (any page served from this host may set
    one) is a key the visitor made up, as any other: it had made every request that reads
    the session a 500 in plain text, with a traceback in the log at each (a hostile studio
    review)."""
    app = create_app(StudioConfig(folder=tmp_path / "studio"), GatewayLink("127.0.0.1:1"))
    with local_client(app) as client:
        for cookie in ("bgm_studio=a.\xe9", "bgm_studio=\xe9.\xe9", "bgm_studio=a.b\xff"):
            headers = {b"Cookie": cookie.encode("latin-1")}
            for path in ("/", "/api/state", "/api/videos/x"):
                answer = client.get(path, headers=headers)
                assert answer.status_code in (200, 404), (cookie, path, answer.text)
            kept = client.post("/api/videos", content=b"x" * 10, headers=headers)
            assert kept.status_code == 200, kept.text
            assert kept.cookies["bgm_studio"].isascii()


def test_a_visitor_s_ipv6_addresses_count_as_one(tmp_path: Path):
    """An IPv6 host is handed a whole /64: the per-address limits count it as one address
    (each of its addresses had had sessions, bytes and scores of its own)."""
    app = create_app(StudioConfig(folder=tmp_path / "studio", max_sessions_per_address=1),
                     GatewayLink("127.0.0.1:1"))  # fmt: skip
    with local_client(app, client=("2001:db8:0:1::5", 1)) as first:
        assert first.post("/api/videos", content=b"x").status_code == 200
        same = local_client(app, client=("2001:db8:0:1:ff::9", 1))
        assert same.post("/api/videos", content=b"x").status_code == 429
        other = local_client(app, client=("2001:db8:0:2::5", 1))
        assert other.post("/api/videos", content=b"x").status_code == 200


def test_a_name_the_studio_does_not_answer_to_is_refused(tmp_path: Path):
    """DNS rebinding: a page on another site makes a visitor's browser call a name it
    controls that resolves to 127.0.0.1. The studio had answered any Host, and would upload
    and score for such a page. On loopback it answers to its own names and
    studio.allowed_hosts; on every address with none given, to any."""
    config = StudioConfig(folder=tmp_path / "studio", allowed_hosts=["studio.example.com"])
    app = create_app(config, GatewayLink("127.0.0.1:1"))
    with TestClient(app) as client:
        for host in ("localhost:8765", "127.0.0.1", "[::1]:8765", "studio.example.com"):
            assert client.get("/api/state", headers={"Host": host}).status_code == 200, host
        for host in ("attacker.example", "attacker.example:8765", "localhost.attacker.example"):
            refused = client.post("/api/videos", content=b"x", headers={"Host": host})
            assert refused.status_code == 400, host
            body = refused.json()
            assert (
                body["code"] == "INVALID_ARGUMENT" and "this studio answers to" in body["message"]
            )
        assert app.state.studio.sessions == {}
    anywhere = create_app(config.model_copy(update={"host": "0.0.0.0", "allowed_hosts": []}),
                          GatewayLink("127.0.0.1:1"))  # fmt: skip
    with TestClient(anywhere) as client:
        assert client.get("/api/state", headers={"Host": "studio.lan"}).status_code == 200


def test_an_upload_sent_as_a_form_is_refused(tmp_path: Path):
    """`curl -F video=@clip.mp4` sends a multipart form: it had been kept whole as the video
    (boundary and all), and its analysis said the file was no video FFmpeg can read."""
    app = create_app(StudioConfig(folder=tmp_path / "studio"), GatewayLink("127.0.0.1:1"))
    with local_client(app) as client:
        refused = client.post("/api/videos", files={"video": ("clip.mp4", b"x" * 10)})
        assert refused.status_code == 415, refused.text
        assert "--data-binary" in refused.json()["message"]
        assert app.state.studio.sessions == {}


def test_without_a_server_the_studio_runs_its_own_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The studio's own gateway reads its folder, so a video's timeline is asked by URI
    whatever its size: one over the 32 MiB a call carries inline had had none (a hostile QA
    round; here the inline limit is made smaller than the sample)."""
    import services.gateway.client as client_module
    from services.config import BgmConfig

    monkeypatch.setattr(client_module, "INLINE_UPLOAD_BYTES", 1000)
    config = BgmConfig()
    app = create_app(StudioConfig(folder=tmp_path / "studio"), config)
    with local_client(app) as client:
        assert app.state.studio.link.server.startswith("127.0.0.1:")
        client.get("/")
        sample = client.post("/api/samples/sample").json()
        analysis = client.get(f"/api/videos/{sample['id']}/analysis").json()
        assert len(analysis["cuts"]) == 5, analysis  # the sample's six shots
        job = client.post("/api/scores", json={"video_id": sample["id"]}).json()["id"]
        assert events(client, job)[-1]["type"] == "done"


def session_files(studio_folder: Path) -> list[Path]:
    return [p for p in studio_folder.rglob("*")
            if p.is_file() and "samples" not in p.parts and p.name != MARKER]  # fmt: skip


def test_a_second_studio_on_the_host_leaves_the_first_ones_files(tmp_path: Path):
    # Each studio had emptied studio.folder as it started: a second one on this host took the
    # first one's sessions (its video answered 500, its downloads 404).
    config = StudioConfig(folder=tmp_path / "studio")
    clip = write_video(tmp_path / "clip.mp4", [Shot(1.0)])
    first = create_app(config, GatewayLink("127.0.0.1:1"))
    with local_client(first) as visitor:
        uploaded = visitor.post("/api/videos", content=clip.path.read_bytes(),
                               headers={"x-file-name": "clip.mp4"})  # fmt: skip
        url = uploaded.json()["url"]
        second = create_app(config, GatewayLink("127.0.0.1:1"))
        with local_client(second) as other:
            other.post("/api/videos", content=clip.path.read_bytes(),
                       headers={"x-file-name": "other.mp4"})  # fmt: skip
            assert visitor.get(url).content == clip.path.read_bytes()
        assert visitor.get(url).content == clip.path.read_bytes()  # the second one stopped
        assert list((tmp_path / "studio").rglob("other.mp4")) == []
    assert list((tmp_path / "studio").iterdir()) == []  # a stopped studio leaves nothing


def test_a_session_keeps_what_its_quota_allows(gateway: Running, tmp_path: Path):
    # One visitor could upload 4 GB after 4 GB and score without end until the disk was full.
    clip = write_video(tmp_path / "clip.mp4", [Shot(1.0, hue=0.2), Shot(1.0, hue=0.6)])
    size = clip.path.stat().st_size
    config = StudioConfig(folder=tmp_path / "studio", max_session_bytes=2 * size + size // 2,
                          max_running_scores=1, max_running_scores_per_address=1)  # fmt: skip
    with local_client(create_app(config, GatewayLink(gateway.gateway))) as client:
        client.get("/")
        first, second = (client.post("/api/videos", content=clip.path.read_bytes()).json()
                         for _ in range(2))  # fmt: skip
        third = client.post("/api/videos", content=clip.path.read_bytes())
        assert third.status_code == 507 and third.json()["code"] == "RESOURCE_EXHAUSTED"
        assert third.json()["fields"] == ["video"] and "remove" in third.json()["message"]
        assert len(client.get("/api/state").json()["videos"]) == 2
        assert len(session_files(tmp_path / "studio")) == 2  # the refused one left nothing
        assert client.delete(first["url"]).status_code == 200
        assert client.get(first["url"]).status_code == 404
        third = client.post("/api/videos", content=clip.path.read_bytes()).json()
        # One score at a time here; a running score and its video cannot be removed.
        job = client.post("/api/scores", json={"video_id": third["id"]}).json()["id"]
        busy = client.post("/api/scores", json={"video_id": second["id"]})
        assert busy.status_code == 429 and busy.json()["code"] == "RESOURCE_EXHAUSTED"
        # A new session (a dropped cookie) from the same address waits too.
        other = local_client(client.app)
        theirs = other.post("/api/videos", content=clip.path.read_bytes()).json()
        elsewhere = other.post("/api/scores", json={"video_id": theirs["id"]})
        assert elsewhere.status_code == 429 and "this address" in elsewhere.json()["message"]
        assert other.delete(theirs["url"]).status_code == 200
        assert client.delete(f"/api/scores/{job}").status_code == 409
        assert client.delete(third["url"]).status_code == 409
        assert events(client, job)[-1]["type"] == "done"
        # Its results count: the session is now past its quota, for videos and scores alike.
        full = client.post("/api/scores", json={"video_id": second["id"]})
        assert full.status_code == 507 and "remove" in full.json()["message"]
        quarter = clip.path.read_bytes()[: size // 4]
        assert client.post("/api/videos", content=quarter).status_code == 507
        # Removing the version gives its bytes back.
        assert client.delete(f"/api/scores/{job}").status_code == 200
        assert client.get(f"/api/scores/{job}/files/scored.mp4").status_code == 404
        assert len(session_files(tmp_path / "studio")) == 2
        assert client.post("/api/videos", content=quarter).status_code == 200
        assert client.delete("/api/scores/nope").status_code == 404


def test_the_studio_keeps_its_disk_free_and_its_videos_counted(gateway: Running, tmp_path: Path):
    clip = write_video(tmp_path / "clip.mp4", [Shot(1.0)])
    # A visitor who drops the cookie has a new session and a new quota: the disk's reserve
    # holds for all of them.
    config = StudioConfig(folder=tmp_path / "studio", min_free_bytes=2**62)
    with local_client(create_app(config, GatewayLink(gateway.gateway))) as client:
        refused = client.post("/api/videos", content=clip.path.read_bytes())
        assert refused.status_code == 507 and "disk" in refused.json()["message"]
        assert session_files(tmp_path / "studio") == []
    # A session keeps at most max_session_items videos and scores; the sample is written once
    # for every session, and removing it from one leaves it to the others.
    config = StudioConfig(folder=tmp_path / "studio", max_session_items=2)
    with local_client(create_app(config, GatewayLink(gateway.gateway))) as client:
        other = local_client(client.app)
        samples = [c.post("/api/samples/sample").json() for c in (client, client, other)]
        too_many = client.post("/api/samples/sample")
        assert too_many.status_code == 507 and "at most 2" in too_many.json()["message"]
        assert client.post("/api/videos", content=clip.path.read_bytes()).status_code == 507
        assert len(list((tmp_path / "studio").rglob("*.mp4"))) == 1
        assert client.delete(samples[0]["url"]).status_code == 200
        assert other.get(samples[2]["url"]).status_code == 200
        assert client.post("/api/videos", content=clip.path.read_bytes()).status_code == 200


def test_asked_at_once_an_analysis_and_a_zip_are_made_once(
    gateway: Running, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # A page asking a hundred times at once had a hundred analyses made through the gateway
    # and a hundred zips written over one another, holding the threads other visitors wait on.
    import services.studio.app as studio_app

    calls = {"analysis": 0, "zip": 0}
    lock = threading.Lock()

    def counted(name: str, real: Callable[..., object]) -> Callable[..., object]:
        def call(*args: object, **kwargs: object) -> object:
            with lock:
                calls[name] += 1
            time.sleep(0.3)  # long enough for every request to arrive while it is made
            return real(*args, **kwargs)

        return call

    monkeypatch.setattr(
        studio_app, "analyze_remote", counted("analysis", studio_app.analyze_remote)
    )
    monkeypatch.setattr(studio_app, "_zipped_stems", counted("zip", studio_app._zipped_stems))
    config = StudioConfig(folder=tmp_path / "studio")
    with local_client(create_app(config, GatewayLink(gateway.gateway))) as client:
        clip = write_video(tmp_path / "clip.mp4", [Shot(1.0, hue=0.2), Shot(1.0, hue=0.6)])
        video = client.post("/api/videos", content=clip.path.read_bytes()).json()
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: client.get(f"{video['url']}/analysis"), range(8)))
        assert {a.status_code for a in answers} == {200} and calls["analysis"] == 1
        assert len({a.content for a in answers}) == 1
        job = client.post("/api/scores", json={"video_id": video["id"]}).json()["id"]
        assert events(client, job)[-1]["type"] == "done"
        url = f"/api/scores/{job}/files/stems.zip"
        with ThreadPoolExecutor(8) as pool:
            zips = list(pool.map(lambda _: client.get(url), range(8)))
        assert {z.status_code for z in zips} == {200} and calls["zip"] == 1
        assert len({z.content for z in zips}) == 1
        assert zipfile.ZipFile(io.BytesIO(zips[0].content)).namelist()


def test_an_analysis_is_encoded_once_however_often_it_is_asked_for(
    client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The analysis (in its own answer, in the score's events, in the page's state) is
    encoded as JSON once, off the event loop: encoded again at every look, a 20-minute
    video's (4.6 MB) fetched over 8 connections had held another visitor's request 718 ms
    (1 ms alone; a hostile studio review)."""
    clip = write_video(tmp_path / "clip.mp4", [Shot(1.0, hue=0.2), Shot(1.0, hue=0.6)])
    video = client.post("/api/videos", content=clip.path.read_bytes()).json()
    job = client.post("/api/scores", json={"video_id": video["id"]}).json()["id"]
    assert events(client, job)[-1]["type"] == "done"
    assert client.get(f"{video['url']}/analysis").status_code == 200
    encodings = []
    dumps = json.dumps

    def counted(value: Any, *args: Any, **kwargs: Any) -> str:
        text = dumps(value, *args, **kwargs)
        if '"segments"' in text:
            encodings.append(len(text))
        return text

    monkeypatch.setattr(json, "dumps", counted)
    for _ in range(3):
        analysis = client.get(f"{video['url']}/analysis").json()
        state = client.get("/api/state").json()
        streamed = events(client, job)
    assert analysis["segments"] and any(e["type"] == "analysis" for e in streamed)
    assert state["jobs"][0]["events"] == streamed
    assert not encodings, f"encoded again {len(encodings)} times"


def test_an_analysis_is_kept_on_disk_as_the_session_s(gateway: Running, tmp_path: Path):
    """A video's analysis is kept beside it on disk (the sample's in the session's folder),
    counted against the session's bytes, and goes with the video: kept in memory, analyses
    had been a cache no quota counted (a 20-minute video's 4.6 MB each, 100 items a session,
    32 sessions an address; a hostile studio review)."""
    app = create_app(StudioConfig(folder=tmp_path / "studio"), GatewayLink(gateway.gateway))
    studio = app.state.studio
    with local_client(app) as client:
        clip = write_video(tmp_path / "clip.mp4", [Shot(1.0, hue=0.2), Shot(1.0, hue=0.6)])
        video = client.post("/api/videos", content=clip.path.read_bytes()).json()
        sample = client.post("/api/samples/sample").json()
        (session,) = studio.sessions.values()
        held = session.held_bytes
        answers = [client.get(f"{v['url']}/analysis") for v in (video, sample)]
        assert all(a.status_code == 200 and a.json()["segments"] for a in answers)
        kept = sorted(session.folder.rglob("*.json"))
        assert sorted(p.read_bytes() for p in kept) == sorted(a.content for a in answers)
        assert session.held_bytes == held + sum(len(a.content) for a in answers)
        for v in (video, sample):
            assert client.delete(v["url"]).status_code == 200
        assert session.held_bytes == 0 and not any(p.exists() for p in kept)


def test_event_streams_wake_on_news_and_a_session_holds_a_few(tmp_path: Path):
    """A score's event stream had looked for news ten times a second (a thousand open took 7%
    of a core), and one session could open any number. Streams now wait for news, and a
    session holds at most max_event_streams open."""
    import asyncio
    from contextlib import ExitStack

    from services.studio.app import Job

    config = StudioConfig(folder=tmp_path / "studio", max_event_streams=2)
    app = create_app(config, GatewayLink("127.0.0.1:1"))  # no call reaches a gateway
    with local_client(app) as client:
        client.post("/api/videos", content=b"x" * 10)  # the session is kept from its upload
        session = app.state.studio.sessions[client.cookies["bgm_studio"]]
        assert client.portal is not None  # the app runs on the portal's loop
        loop = client.portal.call(asyncio.get_running_loop)
        job = Job("j1", "v1", tmp_path / "j1", {}, loop=loop)
        session.jobs[job.id] = job
        job.publish({"type": "progress", "fraction": 0.1})
        url = f"/api/scores/{job.id}/events"
        received: list[list[dict]] = [[], []]
        with ExitStack() as open_streams:
            streams = [open_streams.enter_context(client.stream("GET", url)) for _ in range(2)]
            lines = [stream.iter_lines() for stream in streams]
            for index, stream_lines in enumerate(lines):  # each has begun: it sent the first
                received[index].append(json.loads(next(stream_lines)[6:]))
            third = client.get(url)
            assert third.status_code == 429 and third.json()["code"] == "RESOURCE_EXHAUSTED"

            def read(index: int) -> None:
                for line in lines[index]:
                    if line.startswith("data: "):
                        received[index].append(json.loads(line[6:]))

            readers = [threading.Thread(target=read, args=(i,), daemon=True) for i in (0, 1)]
            for reader in readers:
                reader.start()
            time.sleep(0.2)
            job.publish({"type": "progress", "fraction": 0.5})
            job.publish({"type": "done", "files": []}, "done")
            for reader in readers:
                reader.join(timeout=5)
            assert not any(reader.is_alive() for reader in readers)
        kinds = [[e["type"] for e in events] for events in received]
        assert kinds == [["progress", "progress", "done"]] * 2
        # Ended streams are no longer counted.
        assert [e["type"] for e in events(client, job.id)] == ["progress", "progress", "done"]


@contextlib.contextmanager
def served(app: Any) -> Iterator[int]:
    """The app served as `bgm studio` serves it, on a free loopback port (its port), for
    requests whose bytes arrive over time, as TestClient's never do."""

    import uvicorn

    port = free_port()
    config = app.state.studio.config.model_copy(update={"host": "127.0.0.1", "port": port})
    server = uvicorn.Server(uvicorn.Config(app, **server_options(config)))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, "the studio to start")
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _start_upload(port: int, name: str, first: bytes, cookie: str = "") -> Any:
    """An upload whose first bytes are sent, the rest to follow (chunked)."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.putrequest("POST", "/api/videos")
    connection.putheader("X-File-Name", name)
    connection.putheader("Transfer-Encoding", "chunked")
    if cookie:
        connection.putheader("Cookie", cookie)
    connection.endheaders()
    connection.send(b"%x\r\n%s\r\n" % (len(first), first))
    return connection


def test_a_first_upload_is_not_swept_while_it_arrives(tmp_path: Path):
    """A session receiving its first video holds nothing yet: a slow upload (4 GiB over a link
    under 55 Mbit/s takes past EMPTY_SESSION_S) had been swept as an empty session while its
    bytes came in, and answered 200 for a video that was gone."""
    app = create_app(StudioConfig(folder=tmp_path / "studio"), GatewayLink("127.0.0.1:1"))
    with served(app) as port:
        studio = app.state.studio
        part = b"x" * 1000
        connection = _start_upload(port, "slow.mp4", part)
        wait_until(lambda: list((tmp_path / "studio").rglob("slow.mp4")), "its bytes")
        for session in list(studio.sessions.values()):  # unused for longer than allowed
            session.used -= EMPTY_SESSION_S + 1
        studio.sweep()
        connection.send(b"%x\r\n%s\r\n0\r\n\r\n" % (len(part), part))
        answer = connection.getresponse()
        assert answer.status == 200
        video = json.loads(answer.read())
        cookie = answer.getheader("set-cookie", "").split(";")[0]
        connection.request("GET", video["url"], headers={"Cookie": cookie})
        served_back = connection.getresponse()
        assert served_back.status == 200 and served_back.read() == part * 2


def test_uploads_at_once_count_against_the_session_s_items(tmp_path: Path):
    """An upload arriving counts as an item: uploads sent at once had all passed the check
    before any was kept, past max_session_items."""
    app = create_app(StudioConfig(folder=tmp_path / "studio", max_session_items=1),
                     GatewayLink("127.0.0.1:1"))  # fmt: skip
    with served(app) as port:
        first = _start_upload(port, "one.mp4", b"x" * 1000)
        wait_until(lambda: list((tmp_path / "studio").rglob("one.mp4")), "the first upload")
        (key,) = app.state.studio.sessions
        second = _start_upload(port, "two.mp4", b"x" * 1000, f"bgm_studio={key}")
        second.send(b"0\r\n\r\n")
        refused = second.getresponse()
        assert refused.status == 507 and b"at most 1" in refused.read()
        first.send(b"0\r\n\r\n")
        assert first.getresponse().status == 200


def test_a_seed_is_taken_as_written():
    """A seed is the caller's to the last digit: read as a float, one past 2**53 had lost it
    (and a 400-digit one had raised OverflowError, a 500). Numbers written as text, as the
    page's form sends its tempo, are numbers."""
    controls, _, settings = score_controls({"seed": 2**53 + 1, "bpm": "96"})
    assert controls.seed == settings["seed"] == 2**53 + 1 and controls.bpm == 96.0
    assert score_controls({"seed": 7.0})[0].seed == 7
    with pytest.raises(ControlError, match="seed"):
        score_controls({"seed": 7.5})


def test_a_stalled_upload_is_refused_and_its_file_removed(tmp_path: Path):
    """An upload from which nothing more comes is answered 408 after studio.upload_stall_s
    and leaves nothing: it had held its connection, its file and a place in its session for
    good (150 s and counting), and kept the studio from stopping."""
    app = create_app(StudioConfig(folder=tmp_path / "studio", upload_stall_s=0.5),
                     GatewayLink("127.0.0.1:1"))  # fmt: skip
    with served(app) as port:
        connection = _start_upload(port, "stall.mp4", b"x" * 1000)
        answer = connection.getresponse()  # nothing more is sent
        assert answer.status == 408 and json.loads(answer.read())["code"] == "DEADLINE_EXCEEDED"
        assert not list((tmp_path / "studio").rglob("stall.mp4"))
        # Its session, which it would have begun, is not kept.
        assert app.state.studio.sessions == {}


def test_an_upload_that_trickles_is_refused_at_its_minimum_rate(tmp_path: Path):
    """Bytes that keep coming, too few to ever stall it: one every 59 s had held the
    connection and the file for good. Past upload_stall_s, an upload averaging under
    min_upload_bytes_per_s is a 408, its file removed. (The bytes come ten times as often as
    the stall allows: at 0.5 s against 0.2 s, a fresh clone's loaded CI had once seen the
    upload stall before it fell short.)"""
    app = create_app(StudioConfig(folder=tmp_path / "studio", upload_stall_s=2.0,
                                  min_upload_bytes_per_s=2000),
                     GatewayLink("127.0.0.1:1"))  # fmt: skip
    with served(app) as port:
        connection = _start_upload(port, "trickle.mp4", b"x" * 100)
        start = time.monotonic()
        with contextlib.suppress(OSError):  # answered, the studio reads no more
            while time.monotonic() - start < 10:
                time.sleep(0.2)  # 500 bytes a second, never 2 s apart
                connection.send(b"%x\r\n%s\r\n" % (100, b"x" * 100))
                if connection.sock is None or _answered(connection.sock):
                    break
        answer = connection.getresponse()
        assert answer.status == 408, answer.status
        assert "under 2000 bytes a second" in json.loads(answer.read())["message"]
        # (It falls short about 2.7 s in: 2 s and the bytes' worth at 2000 a second.)
        assert time.monotonic() - start < 6
        assert not list((tmp_path / "studio").rglob("trickle.mp4"))


def _answered(sock: Any) -> bool:
    """Whether the server has sent something on `sock` (without reading it)."""
    import select

    return bool(select.select([sock], [], [], 0)[0])


def _raw_answer(sock: Any) -> tuple[bytes, dict[str, Any]]:
    """The status line and JSON body of what the studio sent on `sock` before closing it."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0], json.loads(body)


def test_connections_that_send_no_request_are_closed_and_capped(tmp_path: Path):
    """A connection that sends nothing, or its headers a byte at a time, had been held for
    good (1,100 from one client took every file descriptor of a studio, and every other
    visitor was refused). Its line and headers must come within header_timeout_s (408), and
    one address holds at most max_connections_per_address at once (429), the studio
    max_connections (503), each answered in the API's shape as it connects."""
    import socket

    config = StudioConfig(folder=tmp_path / "studio", header_timeout_s=1.0,
                          max_connections_per_address=3, max_connections=4)  # fmt: skip
    app = create_app(config, GatewayLink("127.0.0.1:1"))
    with served(app) as port:
        start = time.monotonic()
        silent = socket.create_connection(("127.0.0.1", port), timeout=10)
        trickling = socket.create_connection(("127.0.0.1", port), timeout=10)
        held = socket.create_connection(("127.0.0.1", port), timeout=10)
        over = socket.create_connection(("127.0.0.1", port), timeout=10)
        status, body = _raw_answer(over)  # the fourth from this address
        assert status == b"HTTP/1.1 429 Too Many Requests", status
        assert body["code"] == "RESOURCE_EXHAUSTED" and "3 connections" in body["message"]
        for byte in b"GET /api/state HTTP/1.1\r\nHost: 127.0.0.1\r\n":
            trickling.send(bytes([byte]))
            if _answered(trickling):
                break
            time.sleep(0.02)
        for sock in (silent, trickling):
            status, body = _raw_answer(sock)
            assert status == b"HTTP/1.1 408 Request Timeout", status
            assert body["code"] == "DEADLINE_EXCEEDED" and "within 1 s" in body["message"]
        assert time.monotonic() - start < 5
        # Their places are given back: a request from this address is answered again.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as asking:
            asking.sendall(b"GET /api/state HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           b"Connection: close\r\n\r\n")  # fmt: skip
            assert asking.recv(100).startswith(b"HTTP/1.1 200")
        held.close()
        for sock in (silent, trickling, over):
            sock.close()

    app = create_app(config.model_copy(update={"max_connections": 1}), GatewayLink("127.0.0.1:1"))
    with served(app) as port, socket.create_connection(("127.0.0.1", port), timeout=10) as first:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as second:
            status, body = _raw_answer(second)
            assert status == b"HTTP/1.1 503 Service Unavailable", status
            assert body["code"] == "UNAVAILABLE"
        first.sendall(b"GET /api/state HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert first.recv(100).startswith(b"HTTP/1.1 200")


def test_an_upload_stated_over_the_limit_is_refused_before_a_byte_is_kept(tmp_path: Path):
    """Refused from its Content-Length (a 5 GiB upload had been written to disk up to the 4 GiB
    limit first), 413 as any request over a size."""
    import http.client

    app = create_app(StudioConfig(folder=tmp_path / "studio", max_upload_bytes=1000),
                     GatewayLink("127.0.0.1:1"))  # fmt: skip
    with served(app) as port:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.putrequest("POST", "/api/videos")
        connection.putheader("X-File-Name", "big.mp4")
        connection.putheader("Content-Length", str(5 * 1024**3))
        connection.endheaders()
        connection.send(b"x" * 100)
        answer = connection.getresponse()
        assert answer.status == 413 and b"larger than 1000 bytes" in answer.read()
        assert not list((tmp_path / "studio").rglob("big.mp4"))


def test_a_long_name_in_any_script_is_kept_and_bad_json_is_400(tmp_path: Path):
    """90 CJK characters are 270 bytes, past a file name's 255: the upload had been a 500 (and
    the page showed nothing); JSON nested 20,000 deep had been a 500 with a RecursionError."""
    from urllib.parse import quote

    app = create_app(StudioConfig(folder=tmp_path / "studio"), GatewayLink("127.0.0.1:1"))
    with local_client(app) as client:
        for name in ("動" * 90 + ".mp4", "𠀀" * 70):
            kept = client.post("/api/videos", content=b"x" * 10,
                               headers={"X-File-Name": quote(name)})  # fmt: skip
            assert kept.status_code == 200, kept.text
            assert len(kept.json()["name"].encode()) <= 200
        assert kept.json()["name"].startswith("𠀀")
        deep = client.post("/api/scores", content=b"[" * 20000 + b"]" * 20000)
        assert deep.status_code == 400 and deep.json()["message"] == "the request is not JSON"


def test_failed_scores_take_no_room_and_only_the_newest_are_kept(gateway: Running,
                                                                   tmp_path: Path):  # fmt: skip
    """A failed score keeps nothing and the page shows it no Remove button: four failed scores
    of a text file named .mp4 had filled a session of five for a day (507 at every upload)."""
    config = StudioConfig(folder=tmp_path / "studio", max_session_items=3, max_failed_scores=2)
    with local_client(create_app(config, GatewayLink(gateway.gateway))) as client:
        text = client.post("/api/videos", content=b"not a video",
                           headers={"X-File-Name": "clip.mp4"}).json()  # fmt: skip
        failed = []
        for _ in range(4):
            job = client.post("/api/scores", json={"video_id": text["id"]})
            assert job.status_code == 200, job.text
            assert events(client, job.json()["id"])[-1]["type"] == "error"
            failed.append(job.json()["id"])
        jobs = client.get("/api/state").json()["jobs"]
        assert [j["id"] for j in jobs] == failed[-2:]  # the newest failures, to show
        for _ in range(2):  # room for two more videos beside the first
            assert client.post("/api/videos", content=b"x").status_code == 200
        assert client.post("/api/videos", content=b"x").status_code == 507


def test_a_session_s_event_streams_are_held_to_the_limit_when_asked_at_once(tmp_path: Path):
    """A stream had been counted once it began, after the check: streams asked for at once
    (as a server hands on requests that arrived together) all passed it, past
    max_event_streams. Each is now counted as it is granted, and given back when it ends,
    its caller gone before it began or after."""
    import asyncio

    from starlette.types import Message

    from services.studio.app import Job

    app = create_app(StudioConfig(folder=tmp_path / "studio", max_event_streams=2),
                     GatewayLink("127.0.0.1:1"))  # fmt: skip
    with local_client(app) as client:
        client.post("/api/videos", content=b"x" * 10)  # the session is kept from its upload
        key = client.cookies["bgm_studio"]
        app.state.studio.sessions[key].jobs["j1"] = Job("j1", "v1", tmp_path / "j1", {})

        async def asked_at_once(count: int, leave_at_once: bool = False) -> list[int]:
            """The statuses of `count` streams of j1 asked for in one moment; their callers
            leave once every one is answered, or at once (before their streams begin)."""
            statuses: list[int] = []
            answered = asyncio.Event()
            if leave_at_once:
                answered.set()

            async def stream() -> None:
                async def receive() -> Message:
                    await answered.wait()
                    return {"type": "http.disconnect"}

                async def send(message: Message) -> None:
                    if message["type"] == "http.response.start":
                        statuses.append(message["status"])
                        if len(statuses) == count:
                            answered.set()

                scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
                         "http_version": "1.1", "method": "GET", "scheme": "http",
                         "path": "/api/scores/j1/events", "raw_path": b"", "root_path": "",
                         "query_string": b"", "client": ("127.0.0.1", 1),
                         "server": ("127.0.0.1", 80),
                         "headers": [(b"host", b"127.0.0.1"),
                                     (b"cookie", f"bgm_studio={key}".encode())]}  # fmt: skip
                await app(scope, receive, send)

            await asyncio.gather(*(stream() for _ in range(count)))
            return statuses

        assert client.portal is not None  # the app runs on the portal's loop
        assert sorted(client.portal.call(asked_at_once, 8)) == [200] * 2 + [429] * 6
        # Their callers left, after their first event or before it: their places are given
        # back.
        client.portal.call(asked_at_once, 8, True)
        assert sorted(client.portal.call(asked_at_once, 3)) == [200] * 2 + [429]


def test_a_path_or_method_the_studio_does_not_serve_is_an_api_error(tmp_path: Path):
    """A 404 or 405 had been Starlette's text/plain ("Not Found"), where the page and callers
    read every other error as the API's JSON: code, message, fields."""
    app = create_app(StudioConfig(folder=tmp_path / "studio"), GatewayLink("127.0.0.1:1"))
    with local_client(app) as client:
        for path in ("/api/nothing", "/static/nothing.js", "/api/scores/j1/files"):
            missing = client.get(path)
            assert missing.status_code == 404
            assert missing.headers["content-type"] == "application/json"
            assert missing.json()["code"] == "NOT_FOUND" and path in missing.json()["message"]
            assert missing.json()["fields"] == []
        wrong = client.put("/api/videos")
        assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
        assert wrong.json()["code"] == "UNIMPLEMENTED"
        assert wrong.json()["message"] == "PUT is not allowed on /api/videos"


def test_a_name_the_cleaning_leaves_nothing_of_is_video_with_its_extension(tmp_path: Path):
    """An upload named in emoji alone had been kept (and shown on the page) as "_.mp4": the
    name is now "video" with the extension it had, and is still served as what it says."""
    from urllib.parse import quote

    app = create_app(StudioConfig(folder=tmp_path / "studio"), GatewayLink("127.0.0.1:1"))
    with local_client(app) as client:
        kept = {}
        for asked in ("🎬🎵.mp4", "🎬 🎵.mov", "★★★", "🎬._", "party 🎉.mp4"):
            answer = client.post("/api/videos", content=b"x" * 10,
                                 headers={"X-File-Name": quote(asked)})  # fmt: skip
            assert answer.status_code == 200, answer.text
            kept[asked] = answer.json()
        assert {asked: video["name"] for asked, video in kept.items()} == {
            "🎬🎵.mp4": "video.mp4", "🎬 🎵.mov": "video.mov", "★★★": "video.mp4",
            "🎬._": "video.mp4", "party 🎉.mp4": "party_.mp4",
        }  # fmt: skip
        served_back = client.get(kept["🎬 🎵.mov"]["url"])
        assert served_back.headers["content-type"] == "video/quicktime"


def test_headers_past_max_header_bytes_are_refused_as_they_arrive(tmp_path: Path):
    """A request's line and headers had no limit: an 8 MB header was read whole and answered
    200. Past studio.max_header_bytes the request is a 431 in the API's shape, before the
    rest is read; headers a browser sends are taken."""
    import socket

    config = StudioConfig(folder=tmp_path / "studio", max_header_bytes=32 * 1024)
    app = create_app(config, GatewayLink("127.0.0.1:1"))
    with served(app) as port:

        def answer(request: bytes) -> tuple[bytes, bytes]:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
                with contextlib.suppress(OSError):  # refused, it may stop reading
                    connection.sendall(request)
                received = b""
                while chunk := connection.recv(65536):
                    received += chunk
            head, _, body = received.partition(b"\r\n\r\n")
            return head, body

        cookie = b"Cookie: other=" + b"a" * 8000 + b"\r\n"
        head, _ = answer(b"GET /api/state HTTP/1.1\r\nHost: 127.0.0.1\r\n" + cookie
                         + b"Connection: close\r\n\r\n")  # fmt: skip
        assert head.startswith(b"HTTP/1.1 200"), head
        head, body = answer(b"GET /api/state HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: "
                            + b"a" * 8 * 1024**2 + b"\r\nConnection: close\r\n\r\n")  # fmt: skip
        assert head.startswith(b"HTTP/1.1 431"), head
        assert b"content-type: application/json" in head.lower()
        refusal = json.loads(body)
        assert refusal["code"] == "RESOURCE_EXHAUSTED" and refusal["fields"] == []
        assert refusal["message"] == "the request's headers are over 32768 bytes"
        # Past the limit in one read, which h11 takes whole (it holds only headers still
        # arriving to its limit): 40 KB had been answered 200.
        head, body = answer(b"GET /api/state HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: "
                            + b"a" * 40_000 + b"\r\nConnection: close\r\n\r\n")  # fmt: skip
        assert head.startswith(b"HTTP/1.1 431"), head
        assert json.loads(body)["message"] == "the request's headers are over 32768 bytes"
        head, body = answer(b"\x16\x03\x01 hello\r\n\r\n")  # TLS to a plain HTTP port
        assert head.startswith(b"HTTP/1.1 400") and json.loads(body)["code"] == "INVALID_ARGUMENT"


def _studio_process(tmp_path: Path, settings: str, *args: str) -> tuple[Any, int]:
    """`bgm studio` in a process of its own on a free port, its folder in `tmp_path`, with
    more studio `settings` (YAML, one line) and `args`; the process (its standard error
    piped) and the port."""
    import subprocess
    import sys

    port = free_port()
    config = tmp_path / "bgm.yaml"
    config.write_text(f"studio:\n  port: {port}\n  folder: {tmp_path / 'studio'}\n"
                      + (f"  {settings}\n" if settings else ""))  # fmt: skip
    studio = subprocess.Popen([sys.executable, "-m", "services.cli", "studio", "--config",
                               str(config), *args], stderr=subprocess.PIPE, text=True)  # fmt: skip
    return studio, port


def test_a_stop_past_grace_s_is_one_line_in_the_log(tmp_path: Path):
    """SIGTERM with a request still running when studio.grace_s ends: uvicorn cancels it, and
    had logged a CancelledError traceback for it (with a FileNotFoundError chained, the
    upload's clean-up having come after the studio's folder was removed). The stop is now
    uvicorn's one line, and the studio still exits 0 and leaves no folder."""
    import signal
    import socket

    studio, port = _studio_process(tmp_path, "grace_s: 1", "--server", "127.0.0.1:1")
    stalled = socket.socket()
    try:
        deadline = time.monotonic() + 60
        while stalled.connect_ex(("127.0.0.1", port)) != 0:  # the studio is starting
            assert time.monotonic() < deadline and studio.poll() is None
            stalled.close()
            stalled = socket.socket()
            time.sleep(0.1)
        stalled.sendall(b"POST /api/videos HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        b"X-File-Name: stall.mp4\r\nContent-Length: 100000\r\n\r\n"
                        + b"x" * 100)  # fmt: skip
        wait_until(lambda: list((tmp_path / "studio").rglob("stall.mp4")), "its bytes")
        studio.send_signal(signal.SIGTERM)
        _, log = studio.communicate(timeout=60)
    finally:
        studio.kill()
        stalled.close()
    lines = log.splitlines()
    assert studio.returncode == 0, log
    assert lines[0].startswith("bgm studio on ") and "Traceback" not in log, log
    assert lines[1:] == ["ERROR:    Cancel 1 running task(s), timeout graceful shutdown exceeded"]
    assert list((tmp_path / "studio").iterdir()) == []


@pytest.mark.slow
def test_the_studio_logs_its_services_audit_and_no_line_per_junk_connection(tmp_path: Path):
    """`bgm studio` with its own services writes their audit lines, with time and level, as
    `bgm serve` does (nothing had set up logging there: every audit line was dropped); and a
    connection that sends no HTTP is answered without a log line (one bare warning each had
    let a loop of junk connections write 20,000 lines in 5 s)."""
    import re
    import signal
    import socket

    import httpx

    studio, port = _studio_process(tmp_path, "")
    clip = write_video(tmp_path / "clip.mp4", [Shot(2.0, hue=0.2), Shot(2.0, hue=0.7)])
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=120) as client:
            deadline = time.monotonic() + 120
            while True:
                assert time.monotonic() < deadline and studio.poll() is None
                try:
                    client.get("/")
                    break
                except httpx.TransportError:
                    time.sleep(0.2)
            for _ in range(20):
                with socket.create_connection(("127.0.0.1", port)) as junk:
                    junk.sendall(b"GARBAGE\r\n\r\n")
                    assert junk.recv(100).startswith(b"HTTP/1.1 400")
            video = client.post("/api/videos", content=clip.path.read_bytes()).json()
            analysis = client.get(f"/api/videos/{video['id']}/analysis")
            assert analysis.status_code == 200, analysis.text
        studio.send_signal(signal.SIGTERM)
        _, log = studio.communicate(timeout=60)
    finally:
        studio.kill()
    audited = [line for line in log.splitlines() if " bgm.audit " in line]
    assert any('"method": "Analyze"' in line and '"service": "bgm.v1.Gateway"' in line
               for line in audited), log  # fmt: skip
    assert all(re.match(r"\d{4}-\d\d-\d\d [\d:,]+ INFO bgm\.audit \{", line)
               for line in audited), audited  # fmt: skip
    assert "Invalid HTTP request" not in log, log


def test_a_score_the_stop_cuts_off_logs_no_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    """A score still running as the studio stops (with its own gateway, one finishing during
    the stop) finds the studio's folder gone as it writes its results: its thread had logged a
    FileNotFoundError traceback ("studio job ... failed") after uvicorn's line."""
    import services.studio.app as studio_app
    from services.gen.bgm.v1 import gateway_pb2

    app = create_app(StudioConfig(folder=tmp_path / "studio"), GatewayLink("127.0.0.1:1"))
    studio = app.state.studio

    reached: list[bool] = []

    def finished_as_the_studio_stops(*args: object, **kwargs: object) -> None:
        reached.append(True)
        wait_until(lambda: not studio.folder.exists(), "the studio to stop")
        raise FileNotFoundError("the job's folder is gone")

    monkeypatch.setattr(studio_app, "score_remote", finished_as_the_studio_stops)
    # What the gateway makes, which each score asks first: without it the score had failed
    # there, before it reached score_remote.
    monkeypatch.setattr(studio_app, "describe_remote",
                        lambda *args, **kwargs: gateway_pb2.GatewayDescribeResponse())  # fmt: skip
    with local_client(app) as client:
        video = client.post("/api/videos", content=b"x" * 10).json()
        job_id = client.post("/api/scores", json={"video_id": video["id"]}).json()["id"]
        (session,) = studio.sessions.values()
        job = session.jobs[job_id]
    wait_until(lambda: job.state != "running", "the job to end")
    assert job.state == "failed" and reached
    assert not [r for r in caplog.records if r.exc_info], caplog.text


def _ask(port: int, path: str, source: str, method: str = "GET", body: bytes = b"",
         cookie: str = "", name: str = "") -> tuple[int, Any, str]:  # fmt: skip
    """One request from the loopback address `source` (an upload named `name`): its status,
    its JSON, its cookie."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30,
                                            source_address=(source, 0))  # fmt: skip
    try:
        headers = {"Cookie": cookie} if cookie else {}
        if name:
            headers["X-File-Name"] = name
        connection.request(method, path, body=body, headers=headers)
        answer = connection.getresponse()
        kept = answer.getheader("set-cookie", "").split(";")[0] or cookie
        return answer.status, json.loads(answer.read() or b"null"), kept
    finally:
        connection.close()


def test_one_visitor_s_analyses_wait_behind_each_other_not_another_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A visitor asking for six analyses at once had all six run at once, on the threads every
    visitor's requests share (and the gateway's tagger): another visitor's analysis waited
    behind the whole burst (16-26 s against 0.2-0.3 s alone, with 60 s videos). One address's
    analyses now take turns, one at a time; another address's runs beside them."""
    import services.studio.app as studio_app
    from services.gen.bgm.v1 import common_pb2

    lock = threading.Lock()
    started: list[str] = []
    running = {"a": 0, "most": 0}

    def analysed(
        server: str, video: Path, *args: object, **kwargs: object
    ) -> common_pb2.VideoAnalysis:
        mine = video.name.startswith("a")
        with lock:
            started.append(video.name)
            running["a"] += mine
            running["most"] = max(running["most"], running["a"])
        time.sleep(0.3)
        with lock:
            running["a"] -= mine
        return common_pb2.VideoAnalysis()

    monkeypatch.setattr(studio_app, "analyze_remote", analysed)
    app = create_app(StudioConfig(folder=tmp_path / "studio"), GatewayLink("127.0.0.1:1"))
    with served(app) as port:
        videos, cookie = [], ""
        for index in range(6):
            status, video, cookie = _ask(port, "/api/videos", "127.0.0.2", "POST", b"x",
                                         cookie, f"a{index}.mp4")  # fmt: skip
            assert status == 200
            videos.append(video)
        status, other, other_cookie = _ask(
            port, "/api/videos", "127.0.0.3", "POST", b"x", name="b.mp4"
        )
        with ThreadPoolExecutor(7) as pool:
            burst = [pool.submit(_ask, port, f"{v['url']}/analysis", "127.0.0.2", "GET", b"",
                                 cookie) for v in videos]  # fmt: skip
            wait_until(lambda: started, "an analysis to begin")
            alone = pool.submit(_ask, port, f"{other['url']}/analysis", "127.0.0.3", "GET",
                                b"", other_cookie)  # fmt: skip
            statuses = [f.result()[0] for f in [*burst, alone]]
    assert statuses == [200] * 7
    assert running["most"] == 1, running
    # The other visitor's ran before the burst's last had begun: it did not wait behind it.
    assert started.index("b.mp4") < len(started) - 1, started


def test_a_video_being_analysed_is_not_removed_under_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Removed while its analysis waited for its turn, the analysis had found no file and
    answered a plain-text 500 (and the removal 200)."""
    import services.studio.app as studio_app
    from services.gen.bgm.v1 import common_pb2

    asked, release = threading.Event(), threading.Event()

    def analysed(
        server: str, video: Path, *args: object, **kwargs: object
    ) -> common_pb2.VideoAnalysis:
        asked.set()
        assert release.wait(10)
        video.stat()  # the gateway call reads the file
        return common_pb2.VideoAnalysis()

    monkeypatch.setattr(studio_app, "analyze_remote", analysed)
    app = create_app(StudioConfig(folder=tmp_path / "studio"), GatewayLink("127.0.0.1:1"))
    with local_client(app) as client, ThreadPoolExecutor(1) as pool:
        video = client.post("/api/videos", content=b"x", headers={"X-File-Name": "a.mp4"}).json()
        analysis = pool.submit(client.get, f"{video['url']}/analysis")
        assert asked.wait(10)
        refused = client.delete(video["url"])
        release.set()
        assert refused.status_code == 409 and "being analysed" in refused.json()["message"]
        assert analysis.result().status_code == 200
        assert client.delete(video["url"]).status_code == 200


def test_the_studio_s_scores_take_turns_at_the_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The gateway counts the whole studio as one client (8 calls at once): two visitors'
    scores had taken every place, and a third visitor's score and timeline were refused in
    another client's words ("this client already has 8 requests running"). The studio's
    scores now run at most max_gateway_scores at once; past it they wait, the addresses
    taking turns, and the page hears that a score waits."""
    import services.studio.app as studio_app

    lock = threading.Lock()
    running = {"now": 0, "most": 0}
    started: list[str] = []

    def scored(self: Any, job: Any, *args: object) -> None:
        with lock:
            running["now"] += 1
            running["most"] = max(running["most"], running["now"])
            started.append(job.address)
        time.sleep(0.4)
        with lock:
            running["now"] -= 1

    monkeypatch.setattr(studio_app.Studio, "_score", scored)
    config = StudioConfig(folder=tmp_path / "studio", max_gateway_scores=2)
    app = create_app(config, GatewayLink("127.0.0.1:1"))
    jobs: list[tuple[str, str]] = []
    with served(app) as port:
        for source, scores in (("127.0.0.2", 2), ("127.0.0.3", 2), ("127.0.0.4", 1)):
            status, video, cookie = _ask(port, "/api/videos", source, "POST", b"x", name="a.mp4")
            assert status == 200
            body = json.dumps({"video_id": video["id"]}).encode()
            for _ in range(scores):
                status, job, _ = _ask(port, "/api/scores", source, "POST", body, cookie)
                assert status == 200, job
                jobs.append((job["id"], cookie))
        wait_until(lambda: len(started) == 5 and not running["now"], "the five scores")
        with local_client(app) as client:
            heard = []
            for job_id, cookie in jobs:
                client.cookies.set(COOKIE, cookie.split("=", 1)[1])
                heard.append(events(client, job_id))
    assert running["most"] == 2, running
    # The third visitor's score ran before the second visitor's last: turns, not a queue.
    assert started.index("127.0.0.4") < len(started) - 1, started
    assert all(events_[-1]["type"] == "done" for events_ in heard), heard
    waited = [any(e.get("stage") == "waiting for a turn" for e in events_) for events_ in heard]
    assert waited == [False, False, True, True, True], waited


def test_a_studio_whose_calls_its_own_gateway_would_refuse_does_not_start(tmp_path: Path):
    from services.config import BgmConfig
    from services.errors import ConfigError

    config = StudioConfig(folder=tmp_path / "studio", max_gateway_scores=7)
    with pytest.raises(ConfigError, match=r"add up to 9, more than the 8 calls"):
        create_app(config, BgmConfig())


def test_a_setting_the_studio_does_not_know_is_refused():
    """A misspelt setting (`genre` for `genres`) had been scored with the defaults."""
    with pytest.raises(ControlError, match=r"is not a score setting; the settings are") as caught:
        score_controls({"video_id": "x", "genre": ["rock"]})
    assert caught.value.field == "genre"
    assert score_controls({"video_id": "x", "genres": ["rock"]})[0].genres == ["rock"]


def test_a_video_too_large_to_analyse_early_says_its_timeline_comes_with_its_score(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Through a gateway elsewhere (`--server`) a video over the 32 MiB a call carries
    inline is analysed with its score: the page is told so, in words it can act on (it had
    been told how the bytes travel)."""
    import services.gateway.client as client_module

    monkeypatch.setattr(client_module, "INLINE_UPLOAD_BYTES", 10)
    app = create_app(StudioConfig(folder=tmp_path / "studio"), GatewayLink("127.0.0.1:1"))
    with local_client(app) as client:
        client.get("/")
        video = client.post("/api/videos", content=b"x" * 100,
                            headers={"X-File-Name": "big.mp4"}).json()  # fmt: skip
        answer = client.get(f"/api/videos/{video['id']}/analysis")
    assert answer.status_code == 422
    assert answer.json()["code"] == "OUT_OF_RANGE"
    assert "its timeline comes with its score" in answer.json()["message"]
