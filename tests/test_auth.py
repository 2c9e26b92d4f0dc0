"""Who may call (issue 17): TLS and mutual TLS with certificates made here, bearer tokens
(API keys and JWTs), tenants' own files and limits, the gateway alone reaching the tagger and
the generator, and one audit line per request."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa

from services.config import Endpoint, TlsConfig
from services.devserver import Pki, Running, make_pki, start, stop
from services.errors import ConfigError, UnauthenticatedError
from services.gateway.client import error_details
from services.gen.bgm.v1 import (
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    tagger_pb2,
    tagger_pb2_grpc,
)
from services.media.synth import Shot, SyntheticVideo, write_video
from services.tls import check_plaintext
from tests.test_services import audit_until

pytestmark = pytest.mark.slow

SERVICE_TOKEN = "gateway-only-7f3a"
API_KEYS = {"acme": "acme-key-1", "globex": "globex-key-1"}


@dataclass
class Secured:
    running: Running
    pki: Pki
    client_cert: Path
    client_key: Path
    signing_key: rsa.RSAPrivateKey
    media: Path
    # An object store (fsspec's local filesystem, as s3:// would be), a folder per tenant.
    store: Path

    def channel(self, address: str, client_cert: bool = True, ca: Path | None = None):
        credentials = grpc.ssl_channel_credentials(
            root_certificates=(ca or self.pki.ca_file).read_bytes(),
            private_key=self.client_key.read_bytes() if client_cert else None,
            certificate_chain=self.client_cert.read_bytes() if client_cert else None,
        )
        return grpc.secure_channel(address, credentials)

    def jwt(self, tenant: str = "acme", audience: str = "bgm", expires_in: float = 300) -> str:
        claims = {"iss": "https://id.example", "aud": audience, "tenant": tenant,
                  "exp": int(time.time() + expires_in)}  # fmt: skip
        return jwt.encode(claims, self.signing_key, algorithm="RS256", headers={"kid": "k1"})


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> SyntheticVideo:
    media = tmp_path_factory.mktemp("auth-media")
    return write_video(media / "clip.mp4", [Shot(1.5, speed=0.4), Shot(1.5, hue=0.6)])


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory, clip: SyntheticVideo,
            monkeypatch_module: pytest.MonkeyPatch) -> Iterator[Secured]:  # fmt: skip
    folder = tmp_path_factory.mktemp("auth")
    pki = make_pki(folder / "pki", "bgm-test-ca")
    server_cert, server_key = pki.issue("server", server=True)
    client_cert, client_key = pki.issue("client", server=False)
    gateway_cert, gateway_key = pki.issue("gateway", server=False)
    keys = [{"tenant": t, "sha256": hashlib.sha256(k.encode()).hexdigest()}
            for t, k in API_KEYS.items()]  # fmt: skip
    (folder / "keys.yaml").write_text(yaml.safe_dump(keys))
    signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(signing_key.public_key()))
    (folder / "jwks.json").write_text(
        json.dumps({"keys": [{**public, "kid": "k1", "alg": "RS256", "use": "sig"}]})
    )
    tls = {"cert_file": str(server_cert), "key_file": str(server_key)}
    client_tls = {"ca_file": str(pki.ca_file)}
    # The tagger serves only the gateway's certificate (and the service token).
    gateway_tls = {**client_tls, "cert_file": str(gateway_cert), "key_file": str(gateway_key)}
    outputs, store = folder / "outputs", folder / "store"
    for tenant in ("acme", "globex", "initech", "umbrella", "hooli"):
        (outputs / tenant).mkdir(parents=True)
        for media in (clip.path.parent, store):
            (media / tenant).mkdir(parents=True, exist_ok=True)
            (media / tenant / "clip.mp4").write_bytes(clip.path.read_bytes())
    monkeypatch_module.setenv("BGM_TEST_SERVICE_TOKEN", SERVICE_TOKEN)
    changes = {
        "auth": {"enabled": True, "api_keys_file": str(folder / "keys.yaml"),
                 "jwks_file": str(folder / "jwks.json"), "jwt_issuer": "https://id.example",
                 "jwt_audience": "bgm", "service_token_env": "BGM_TEST_SERVICE_TOKEN",
                 "tenants": {"globex": {"max_concurrent": 1, "music_s_per_hour": 10.0,
                                        "max_video_s": 60.0, "max_candidates": 2},
                             "initech": {"music_s_per_hour": 10.0},
                             "umbrella": {"music_s_per_hour": 10.0},
                             "hooli": {"music_s_per_hour": 10.0}}},
        "serving": {"gateway": {"tls": {**tls, "client_ca_file": str(pki.ca_file)}},
                    "tagger": {"tls": {**tls, "client_ca_file": str(pki.ca_file),
                                       "client_names": ["gateway"]}},
                    "generator": {"tls": tls}},
    }  # fmt: skip
    credentials = grpc.ssl_channel_credentials(
        pki.ca_file.read_bytes(), client_key.read_bytes(), client_cert.read_bytes()
    )
    sources = {"file_roots": [str(clip.path.parent)], "http_hosts": ["127.0.0.1"],
               "allow_private_addresses": True,
               "object_prefixes": [store.as_uri() + "/"]}  # fmt: skip
    running = start(folder, clip.path.parent, changes=changes, credentials=credentials,
                    tagger_tls=gateway_tls, generator_tls=client_tls, sources=sources)  # fmt: skip
    yield Secured(running, pki, client_cert, client_key, signing_key, clip.path.parent, store)
    assert stop(running) == 0


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def score(secured: Secured, token: str | None, uri: str, candidates: int = 1, **output: Any):
    request = gateway_pb2.ScoreRequest(video=common_pb2.VideoSource(uri=uri),
                                       controls=common_pb2.UserControls(candidates=candidates),
                                       output=gateway_pb2.OutputOptions(**output))  # fmt: skip
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    with secured.channel(secured.running.gateway) as channel:
        call = gateway_pb2_grpc.GatewayStub(channel).Score(request, metadata=metadata, timeout=60)
        events = [r.event for r in call]
        return events, dict(call.trailing_metadata() or ())


def refused(secured: Secured, token: str | None, uri: str, candidates: int = 1,
            **output: object):  # fmt: skip
    with pytest.raises(grpc.RpcError) as caught:
        score(secured, token, uri, candidates, **output)
    return caught.value


def clip_uri(secured: Secured, tenant: str) -> str:
    return (secured.media / tenant / "clip.mp4").as_uri()


def test_a_valid_api_key_scores_over_mutual_tls_with_a_request_id(secured):
    events, trailing = score(secured, API_KEYS["acme"], clip_uri(secured, "acme"))
    assert events[-1].WhichOneof("event") == "result"
    request_id = trailing["x-request-id"]
    assert len(request_id) == 32
    # One audit line, with the tenant and the music delivered.
    lines = secured.running.log.read_text().splitlines()
    audit = [json.loads(line.split("bgm.audit ", 1)[1]) for line in lines if "bgm.audit " in line]
    mine = [a for a in audit if a["request_id"] == request_id]
    assert len(mine) == 1 and mine[0]["tenant"] == "acme" and mine[0]["status"] == "OK"
    assert mine[0]["music_s"] == pytest.approx(3.0, abs=0.1)
    # The tagger's and the generator's lines name the gateway's request and its tenant
    # (nothing had tied them to it).
    calls = sorted((a["service"], a["method"], a["on_behalf_of"]) for a in audit
                   if a["parent_request_id"] == request_id)  # fmt: skip
    assert calls == [("bgm.v1.Generator", "Generate", "acme"), ("bgm.v1.Tagger", "Analyze", "acme")]
    # The generator's line counts the music it made (it had said 0.0 for every Generate).
    generated = next(a for a in audit if a["parent_request_id"] == request_id
                     and a["method"] == "Generate")  # fmt: skip
    assert generated["music_s"] == pytest.approx(3.0, abs=0.1)
    # And who called: a refused call's line too (a flood of them had said nothing of it).
    refused(secured, "not-a-key", clip_uri(secured, "acme"))
    lines = secured.running.log.read_text().splitlines()
    audit = [json.loads(line.split("bgm.audit ", 1)[1]) for line in lines if "bgm.audit " in line]
    assert mine[0]["peer"] == audit[-1]["peer"] and audit[-1]["peer"].startswith("ipv")
    assert audit[-1]["status"] == "UNAUTHENTICATED"
    # And why, where the status says (a code alone lumps reasons together).
    assert audit[-1]["reason"] == "BAD_CREDENTIALS" and mine[0]["reason"] == ""
    # Counted apart from auth off's empty tenant label.
    import urllib.request

    text = urllib.request.urlopen(secured.running.metrics, timeout=5).read().decode()
    counted = (r'bgm_requests_total\{code="UNAUTHENTICATED",method="Score",'
               r'service="bgm.v1.Gateway",tenant="unauthenticated"\} [1-9]')  # fmt: skip
    assert re.search(counted, text), text


def test_describe_asks_for_credentials_and_says_the_tenant_s_limits(secured):
    """Gateway.Describe takes no admission and no turn, but credentials as every call, and
    says the calling tenant's limits where they are lower than the server's (globex had been
    offered 4 candidates and refused 3, TENANT_CANDIDATES). Its calls are audited at INFO
    whatever metadata they carry (bgm-probe had kept a caller's out of the log)."""
    request = gateway_pb2.GatewayDescribeRequest()
    with secured.channel(secured.running.gateway) as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Describe(request, timeout=30)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        offered = {
            tenant: stub.Describe(request, timeout=30, metadata=(
                ("authorization", f"Bearer {API_KEYS[tenant]}"), ("bgm-probe", "dependency")))
            for tenant in ("acme", "globex")
        }  # fmt: skip
    acme, globex = offered["acme"], offered["globex"]
    assert acme.generator == "composer" and acme.vocabulary.genres
    assert (acme.max_candidates, globex.max_candidates) == (4, 2)
    assert globex.max_duration_s == 60.0 and globex.max_music_s == 10.0
    assert acme.max_duration_s > 60.0 and acme.max_music_s > 10.0

    def described(audit: list[dict[str, Any]]) -> set[str]:
        return {a["tenant"] for a in audit if a["method"] == "Describe"
                and a["service"] == "bgm.v1.Gateway" and a["status"] == "OK"}  # fmt: skip

    audit = audit_until(secured.running.log, lambda lines: {"acme", "globex"} <= described(lines))
    assert {"acme", "globex"} <= described(audit), described(audit)


def test_a_valid_jwt_scores(secured):
    events, _ = score(secured, secured.jwt("acme"), clip_uri(secured, "acme"))
    assert events[-1].result.plan.bpm > 0


@pytest.mark.parametrize(
    ("token", "reason"),
    [(None, "NO_CREDENTIALS"), ("not-a-key", "BAD_CREDENTIALS"),
     ("expired", "BAD_CREDENTIALS"), ("other-audience", "BAD_CREDENTIALS"),
     ("tenant /", "BAD_CREDENTIALS"), ("tenant ../globex", "BAD_CREDENTIALS")],
)  # fmt: skip
def test_calls_without_valid_credentials_are_unauthenticated(secured, token, reason):
    """A JWT's tenant becomes a folder under every root, so a claim that is not one plain
    name is refused: "/" had moved the caller's roots to the filesystem's, and it read
    another tenant's video."""
    if token == "expired":
        token = secured.jwt("acme", expires_in=-60)
    elif token == "other-audience":
        token = secured.jwt("acme", audience="someone-else")
    elif token is not None and token.startswith("tenant "):
        token = secured.jwt(token.removeprefix("tenant "))
    error = refused(secured, token, clip_uri(secured, "globex"))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_details(error).reason == reason
    assert list(secured.running.staging.rglob("*.mp4")) == []


def test_mutual_tls_refuses_a_client_without_a_certificate(secured):
    with (
        secured.channel(secured.running.gateway, client_cert=False) as channel,
        pytest.raises(grpc.RpcError) as caught,
    ):
        list(gateway_pb2_grpc.GatewayStub(channel).Score(gateway_pb2.ScoreRequest(), timeout=10))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_tenant_cannot_read_or_write_another_tenants_files(secured):
    acme = API_KEYS["acme"]
    read = refused(secured, acme, clip_uri(secured, "globex"))
    assert read.code() == grpc.StatusCode.PERMISSION_DENIED
    outputs = secured.running.outputs
    write = refused(secured, acme, clip_uri(secured, "acme"),
                    output_uri=(outputs / "globex" / "mine").as_uri())  # fmt: skip
    assert write.code() == grpc.StatusCode.PERMISSION_DENIED
    assert not (outputs / "globex" / "mine").exists()
    events, _ = score(secured, acme, clip_uri(secured, "acme"),
                      output_uri=(outputs / "acme" / "mine").as_uri())  # fmt: skip
    assert [Path(u).name for u in events[-1].result.output_uris] == ["scored.mp4"]


def test_a_tenant_reads_only_its_own_objects(secured):
    """Every object-store prefix holds a folder per tenant, as every file root does: the
    prefixes had been every tenant's, and a tenant read another's videos by their names,
    analysis and music (a hostile auth review)."""
    acme, store = API_KEYS["acme"], secured.store
    events, _ = score(secured, acme, (store / "acme" / "clip.mp4").as_uri())
    assert events[-1].WhichOneof("event") == "result"
    read = refused(secured, acme, (store / "globex" / "clip.mp4").as_uri())
    assert read.code() == grpc.StatusCode.PERMISSION_DENIED
    climbed = refused(secured, acme, (store / "acme").as_uri() + "/../globex/clip.mp4")
    assert climbed.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "may not name . or .." in climbed.details()


def test_a_tenant_may_not_analyse_a_video_longer_than_it_may_score(secured):
    """Analyze holds a tenant to the length of video it may score (globex: 60 s), as Score
    does: a tenant held to short videos had kept the shared tagger busy with any length."""
    from tests.hand_made_media import write_streams

    long = write_streams(secured.media / "globex" / "long.mp4", frames=61 * 30, sound_s=0.0)
    with secured.channel(secured.running.gateway) as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        request = gateway_pb2.GatewayAnalyzeRequest(video=common_pb2.VideoSource(uri=long.as_uri()))
        with pytest.raises(grpc.RpcError) as caught:
            stub.Analyze(request, metadata=(("authorization", f"Bearer {API_KEYS['globex']}"),),
                         timeout=30)  # fmt: skip
        analysed = stub.Analyze(
            gateway_pb2.GatewayAnalyzeRequest(
                video=common_pb2.VideoSource(uri=clip_uri(secured, "globex"))),
            metadata=(("authorization", f"Bearer {API_KEYS['globex']}"),), timeout=30,
        )  # fmt: skip
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, caught.value.details()
    assert error_details(caught.value).reason == "TENANT_VIDEO_TOO_LONG"
    assert analysed.analysis.duration_s > 0


def test_a_tenant_over_each_limit(secured, trickle):
    # globex: 1 request at once, 10 s of music an hour, 2 candidates.
    globex, uri = API_KEYS["globex"], clip_uri(secured, "globex")
    many = refused(secured, globex, uri, candidates=3)
    assert many.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_details(many).reason == "TENANT_CANDIDATES"
    # One request held (its source trickles), then another of the same tenant.
    with secured.channel(secured.running.gateway) as channel:
        held = gateway_pb2_grpc.GatewayStub(channel).Score(
            gateway_pb2.ScoreRequest(video=common_pb2.VideoSource(uri=trickle)),
            metadata=(("authorization", f"Bearer {globex}"),),
            timeout=30,
        )
        deadline = time.monotonic() + 10
        while in_flight(secured) < 1:
            assert time.monotonic() < deadline, "the held request never started"
            time.sleep(0.1)
        busy = refused(secured, globex, uri)
        held.cancel()
    assert busy.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_details(busy).reason == "TENANT_BUSY"
    assert error_details(busy).retry_after_s == 1.0
    assert score(secured, globex, uri, 2)[0]  # 3 s x 2 candidates: 6 s of its 10
    # 6 s booked of 10: another 6 s is over the hour's music, retry when the first ages out.
    spent = refused(secured, globex, uri, candidates=2)
    assert spent.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    details = error_details(spent)
    assert details.reason == "TENANT_QUOTA" and 3500 < (details.retry_after_s or 0) <= 3600
    # acme's limits are its own.
    assert score(secured, API_KEYS["acme"], clip_uri(secured, "acme"), 2)[0]
    # The request metrics name listed tenants, and "other" for the rest (a bounded label).
    import urllib.request

    text = urllib.request.urlopen(secured.running.metrics, timeout=5).read().decode()
    tenants = set(re.findall(r'bgm_requests_total\{[^}]*tenant="([^"]*)"', text))
    assert {"globex", "other"} <= tenants and "acme" not in tenants


def test_a_score_left_while_its_music_is_made_is_counted(secured):
    """Music that was not delivered is not counted, but once the generator is at work its
    compute is spent: a caller that cancels then is counted (refunded, cancelling each Score
    just before its end had used the generators past the tenant's quota)."""
    token, uri = secured.jwt("initech"), clip_uri(secured, "initech")  # 10 s an hour
    request = gateway_pb2.ScoreRequest(video=common_pb2.VideoSource(uri=uri),
                                       controls=common_pb2.UserControls(candidates=2))  # fmt: skip
    with secured.channel(secured.running.gateway) as channel:
        call = gateway_pb2_grpc.GatewayStub(channel).Score(
            request, metadata=(("authorization", f"Bearer {token}"),), timeout=60
        )
        for response in call:
            progress = response.event.progress
            if progress.stage == "composition" and progress.fraction > 0.35:
                call.cancel()  # the generator has reported: it is at work
                break
        else:
            pytest.fail("the Score ended before the generator reported")
    # Its audit line is written once the gateway is done with it (and the refund, if any).
    deadline = time.monotonic() + 20
    while not any(a["tenant"] == "initech" and a["status"] == "CANCELLED"
                  for a in audit_lines(secured)):  # fmt: skip
        assert time.monotonic() < deadline, "the cancelled Score was never audited"
        time.sleep(0.1)
    # 6 s of its 10 are spent: 6 s more are over the hour's music.
    spent = refused(secured, token, uri, candidates=2)
    assert spent.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_details(spent).reason == "TENANT_QUOTA"
    # A refused request is not counted: 3 s more fit.
    assert score(secured, token, uri)[0][-1].WhichOneof("event") == "result"


def _changed_while_composing(secured: Secured, token: str, uri: str, change: Any,
                             output: gateway_pb2.OutputOptions) -> grpc.RpcError:  # fmt: skip
    """The error a Score of `uri` to `output` ends in, `change` made once the generator is
    at work on its music."""
    request = gateway_pb2.ScoreRequest(video=common_pb2.VideoSource(uri=uri), output=output)
    with (
        secured.channel(secured.running.gateway) as channel,
        pytest.raises(grpc.RpcError) as caught,
    ):
        call = gateway_pb2_grpc.GatewayStub(channel).Score(
            request, metadata=(("authorization", f"Bearer {token}"),), timeout=60
        )
        changed = False
        for response in call:
            if response.event.progress.stage == "composition" and not changed:
                change()
                changed = True
    return caught.value


def test_a_score_whose_own_outputs_cannot_be_written_is_refused_first_or_counted(secured):
    """A folder where a stem goes had been found only once the music was made, and the
    Score refunded: a tenant could have the generators again and again, past its quota. Now
    such a request is refused before any work (and not counted), and one whose outputs are
    blocked while its music is made is counted, as a cancel then is."""
    from services.vocabulary import load_vocabulary

    token, uri = secured.jwt("umbrella"), clip_uri(secured, "umbrella")  # 10 s an hour
    outputs = secured.running.outputs / "umbrella"
    blocked = outputs / "blocked"
    (blocked / "stems" / "piano.wav").mkdir(parents=True)
    for _ in range(4):  # each would have been 3 s
        early = refused(secured, token, uri, output_uri=blocked.as_uri(), stems=True)
        assert early.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "piano.wav: a folder is where the piano stem goes" in early.details()
    late = outputs / "late"

    def blocked_stems() -> None:
        for name in load_vocabulary().instruments:
            (late / "stems" / f"{name}.wav").mkdir(parents=True, exist_ok=True)

    output = gateway_pb2.OutputOptions(stems=True, output_uri=late.as_uri())
    error = _changed_while_composing(secured, token, uri, blocked_stems, output)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    # 3 s spent: two more Scores fit the hour, a third does not.
    for _ in range(2):
        assert score(secured, token, uri)[0][-1].WhichOneof("event") == "result"
    over = refused(secured, token, uri)
    assert over.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_details(over).reason == "TENANT_QUOTA"


def test_outputs_whose_folder_is_changed_while_the_music_is_made_go_nowhere_else(secured):
    """A tenant's output folder swapped, while its music was made, for a link to another
    tenant's had had its outputs written there (the place was checked only before the work),
    and one made a file had ended INTERNAL, its cleanup's error hiding the write's, and not
    counted (a hostile auth review). Now each output's folder is checked again as it is
    written and renamed into place (PERMISSION_DENIED, nothing written in the other's), the
    file is said as the caller's (INVALID_ARGUMENT), and the music both made is counted."""
    token, uri = secured.jwt("hooli"), clip_uri(secured, "hooli")  # 10 s an hour
    outputs = secured.running.outputs
    neighbours = sorted((outputs / "acme").rglob("*"))
    for change, code in (("link", grpc.StatusCode.PERMISSION_DENIED),
                         ("file", grpc.StatusCode.INVALID_ARGUMENT)):  # fmt: skip
        late = outputs / "hooli" / change
        if change == "link":
            swap = functools.partial(late.symlink_to, outputs / "acme", target_is_directory=True)
        else:
            swap = functools.partial(late.write_text, "a file where the folder was")
        output = gateway_pb2.OutputOptions(midi=True, output_uri=late.as_uri())
        error = _changed_while_composing(secured, token, uri, swap, output)
        assert error.code() == code, error.details()
        assert "INTERNAL" not in error.details()
    assert sorted((outputs / "acme").rglob("*")) == neighbours
    # 6 s spent: one more Score fits the hour, a second does not.
    assert score(secured, token, uri)[0][-1].WhichOneof("event") == "result"
    over = refused(secured, token, uri)
    assert error_details(over).reason == "TENANT_QUOTA"


def audit_lines(secured: Secured) -> list[dict]:
    lines = secured.running.log.read_text().splitlines()
    return [json.loads(line.split("bgm.audit ", 1)[1]) for line in lines if "bgm.audit " in line]


def in_flight(secured: Secured) -> float:
    import urllib.request

    text = urllib.request.urlopen(secured.running.metrics, timeout=5).read().decode()
    lines = [line for line in text.splitlines() if line.startswith("bgm_requests_in_flight{")]
    return sum(float(line.split()[-1]) for line in lines if 'method="Score"' in line)


def test_the_ledger_forgets_tenants_idle_for_an_hour(monkeypatch):
    """The ledger books each tenant's music for an hour, and a JWT may name any number of
    tenants: once it holds LEDGER_SWEEP_AT of them, those with nothing booked in the last hour
    are forgotten, and the tenants still spending keep their bookings."""
    from services import auth
    from services.config import AuthConfig

    ledger = auth.TenantLedger(AuthConfig())
    clock = [1000.0]
    monkeypatch.setattr(auth.time, "monotonic", lambda: clock[0])
    for number in range(auth.LEDGER_SWEEP_AT - 1):
        ledger.reserve(f"tenant-{number}", 1.0, 1)
    clock[0] += 1800.0
    ledger.reserve("busy", 1.0, 1)
    clock[0] += 1801.0
    ledger.reserve("late", 1.0, 1)
    assert set(ledger._music) == {"busy", "late"}
    assert [seconds for _, seconds in ledger._music["busy"]] == [1.0]


def test_the_ledger_refuses_a_video_over_the_tenants_longest():
    from services.auth import TenantLedger
    from services.config import AuthConfig, TenantLimits
    from services.errors import ResourceExhaustedError

    ledger = TenantLedger(AuthConfig(enabled=True, tenants={"t": TenantLimits(max_video_s=60.0)}))
    with pytest.raises(ResourceExhaustedError, match="at most 60 s"):
        ledger.reserve("t", 61.0, 1)
    booked = ledger.reserve("t", 59.0, 1)
    ledger.refund("t", booked)
    assert ledger.reserve("t", 59.0, 1) == 59.0


def test_the_tagger_serves_only_the_gateway(secured):
    token = (("authorization", f"Bearer {SERVICE_TOKEN}"),)
    with secured.channel(secured.running.tagger) as channel:  # the client's certificate
        stub = tagger_pb2_grpc.TaggerStub(channel)
        for metadata in ((), token):
            with pytest.raises(grpc.RpcError) as caught:
                stub.Describe(tagger_pb2.TaggerDescribeRequest(), timeout=10, metadata=metadata)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with secured.channel(secured.running.tagger, client_cert=False) as channel:
        with pytest.raises(grpc.RpcError) as caught:
            tagger_pb2_grpc.TaggerStub(channel).Describe(tagger_pb2.TaggerDescribeRequest(),
                                                         timeout=10, metadata=token)  # fmt: skip
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE  # no certificate: no TLS
    # The gateway, with its certificate and the token, scores (other tests); the generator,
    # locked by the token alone, serves a caller that shows it.
    with secured.channel(secured.running.generator) as channel:
        from services.gen.bgm.v1 import generator_pb2, generator_pb2_grpc

        generator = generator_pb2_grpc.GeneratorStub(channel)
        assert generator.Describe(generator_pb2.GeneratorDescribeRequest(), timeout=10,
                                  metadata=token).name  # fmt: skip
        with pytest.raises(grpc.RpcError) as caught:
            generator.Describe(generator_pb2.GeneratorDescribeRequest(), timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_health_and_reflection_stay_open_unless_locked(secured, tmp_path):
    import asyncio

    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from services.auth import Authenticator, LockedMethods
    from services.config import AuthConfig

    with secured.channel(secured.running.gateway) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                          timeout=10)  # fmt: skip
        assert reply.status == health_pb2.HealthCheckResponse.SERVING  # no token needed

    keys = tmp_path / "keys.yaml"
    keys.write_text(yaml.safe_dump([{"tenant": "t", "sha256": hashlib.sha256(b"k").hexdigest()}]))
    locked = LockedMethods(Authenticator(AuthConfig(enabled=True, api_keys_file=keys)), [],
                           "/bgm.v1.Gateway/")  # fmt: skip
    health = grpc.unary_unary_rpc_method_handler(lambda request, context: "ok")

    @dataclass
    class Details:
        method: str
        invocation_metadata: tuple[tuple[str, str], ...]

    async def continuation(details: Details):
        return health

    check = "/grpc.health.v1.Health/Check"
    passed = asyncio.run(locked.intercept_service(continuation, Details(
        check, (("authorization", "Bearer k"),))))  # fmt: skip
    assert passed is health
    refused = asyncio.run(locked.intercept_service(continuation, Details(check, ())))
    assert refused is not health and refused.unary_unary is not None
    score = "/bgm.v1.Gateway/Score"
    api = asyncio.run(locked.intercept_service(continuation, Details(score, ())))
    # The API's methods are refused too, by a handler that reads no request.
    assert api is not health and api.request_streaming
    allowed = asyncio.run(locked.intercept_service(continuation, Details(
        score, (("authorization", "Bearer k"),))))  # fmt: skip
    assert allowed is health


def test_a_call_without_a_token_is_refused_before_its_request_is_read(secured):
    """A Score carrying its video inline is refused before the video is read: one past
    serving.max_message_bytes (64 MiB) is UNAUTHENTICATED, not "larger than max"; calls with
    no credentials, each carrying 60 MB, had been read whole and held before their refusal.
    The refusal is audited as before."""
    request = gateway_pb2.ScoreRequest(video=common_pb2.VideoSource(
        data=bytes(65 * 1024 * 1024), file_name="x.mp4"))  # fmt: skip
    credentials = grpc.ssl_channel_credentials(
        secured.pki.ca_file.read_bytes(), secured.client_key.read_bytes(),
        secured.client_cert.read_bytes(),
    )  # fmt: skip
    options = [("grpc.max_send_message_length", 128 * 1024 * 1024)]
    with (
        grpc.secure_channel(secured.running.gateway, credentials, options) as channel,
        pytest.raises(grpc.RpcError) as caught,
    ):
        list(gateway_pb2_grpc.GatewayStub(channel).Score(request, timeout=30))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED, caught.value.details()
    assert error_details(caught.value).reason == "NO_CREDENTIALS"
    lines = secured.running.log.read_text().splitlines()
    audit = [json.loads(line.split("bgm.audit ", 1)[1]) for line in lines if "bgm.audit " in line]
    assert audit[-1]["method"] == "Score" and audit[-1]["status"] == "UNAUTHENTICATED"


def test_the_tagger_and_the_generator_refuse_a_caller_without_the_token_unread(secured):
    """As the gateway does: a call to the tagger or the generator without the service token
    is refused before its request is read (one past serving.max_message_bytes is
    UNAUTHENTICATED, not "larger than max"); each had read and held the whole request first
    (eight tagger Analyze calls of 60 MB at once: +221 MB; a hostile auth review)."""
    from services.gen.bgm.v1 import generator_pb2, generator_pb2_grpc

    big = bytes(65 * 1024 * 1024)
    calls = [
        (secured.running.tagger, lambda channel: tagger_pb2_grpc.TaggerStub(channel).Analyze(
            tagger_pb2.AnalyzeRequest(video=common_pb2.VideoSource(data=big, file_name="x.mp4")),
            timeout=30)),
        (secured.running.generator, lambda channel: generator_pb2_grpc.GeneratorStub(
            channel).Generate(generator_pb2.GenerateRequest(
                brief=common_pb2.MusicBrief(reference_audio=big)), timeout=30).next()),
    ]  # fmt: skip
    credentials = grpc.ssl_channel_credentials(
        secured.pki.ca_file.read_bytes(), secured.client_key.read_bytes(),
        secured.client_cert.read_bytes(),
    )  # fmt: skip
    options = [("grpc.max_send_message_length", 128 * 1024 * 1024)]
    for address, call in calls:
        with (
            grpc.secure_channel(address, credentials, options) as channel,
            pytest.raises(grpc.RpcError) as caught,
        ):
            call(channel)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED, caught.value.details()
        assert error_details(caught.value).reason == "NOT_THE_GATEWAY"


# Last of the server tests: it leaves the gateway on another CA's certificate.
def test_a_rotated_certificate_is_served_from_the_next_connection(secured, tmp_path):
    other = make_pki(tmp_path / "new-ca", "rotated-ca")
    cert, key = other.issue("server-2", server=True)
    with (
        secured.channel(secured.running.gateway, ca=other.ca_file) as channel,
        pytest.raises(grpc.RpcError),
    ):
        list(gateway_pb2_grpc.GatewayStub(channel).Score(gateway_pb2.ScoreRequest(), timeout=5))
    config = yaml.safe_load((secured.running.log.parent / "bgm.yaml").read_text())
    tls = config["serving"]["gateway"]["tls"]
    Path(tls["key_file"]).write_bytes(key.read_bytes())
    Path(tls["cert_file"]).write_bytes(cert.read_bytes())
    with secured.channel(secured.running.gateway, ca=other.ca_file) as channel:
        error = None
        try:
            list(gateway_pb2_grpc.GatewayStub(channel).Score(gateway_pb2.ScoreRequest(),
                                                             timeout=10))  # fmt: skip
        except grpc.RpcError as caught:
            error = caught
    # The handshake now succeeds; the call itself has no token.
    assert error is not None and error.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_certificate_or_key_that_cannot_serve_is_named_at_start_up(tmp_path):
    """A certificate that is not PEM, a key that is not the certificate's, a client CA that
    holds none, or a FIFO given for one (start-up had hung): one line naming the file. Each
    had been "cannot listen on ...: Failed to bind to address", as if the port were taken."""
    import os

    from services.tls import server_credentials

    pki = make_pki(tmp_path / "pki", "ca")
    cert, key = pki.issue("server", server=True)
    _, other_key = pki.issue("other", server=True)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    fifo = tmp_path / "fifo.pem"
    os.mkfifo(fifo)
    for tls, says in (
        (TlsConfig(cert_file=junk, key_file=key), f"the TLS certificate {junk} holds no PEM"),
        (TlsConfig(cert_file=cert, key_file=junk), f"the TLS key {junk} holds no unencrypted"),
        (TlsConfig(cert_file=cert, key_file=other_key), f"is not the key of {cert}"),
        (TlsConfig(cert_file=cert, key_file=key, client_ca_file=junk), "client CA"),
        (TlsConfig(cert_file=fifo, key_file=key), f"{fifo}: not a file"),
    ):
        with pytest.raises(ConfigError, match=re.escape(says)):
            server_credentials(tls)
    server_credentials(TlsConfig(cert_file=cert, key_file=key, client_ca_file=pki.ca_file))


def test_a_client_ca_or_certificate_that_cannot_be_used_is_named(tmp_path):
    """The client side (`bgm client --tls-ca/--tls-cert/--tls-key`, the gateway's channels):
    a CA that is not PEM, a certificate that is not, a key not the certificate's had been
    UNAVAILABLE at the first call, "Failed to create security handshaker"."""
    from services.config import ClientTlsConfig
    from services.tls import channel_credentials
    from tests.bgm_command import bgm

    pki = make_pki(tmp_path / "pki", "ca")
    cert, key = pki.issue("client", server=False)
    _, other_key = pki.issue("other", server=False)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    for tls, says in (
        (ClientTlsConfig(ca_file=junk), f"the CA {junk} holds no PEM certificate"),
        (ClientTlsConfig(cert_file=junk, key_file=key), f"client certificate {junk} holds no"),
        (ClientTlsConfig(cert_file=cert, key_file=junk), f"the client key {junk} holds no"),
        (ClientTlsConfig(cert_file=cert, key_file=other_key), f"is not the key of {cert}"),
    ):
        with pytest.raises(ConfigError, match=re.escape(says)):
            channel_credentials(tls)
    channel_credentials(ClientTlsConfig(ca_file=pki.ca_file, cert_file=cert, key_file=key))
    video = tmp_path / "v.mp4"
    video.write_bytes(b"not read: the CA is refused first")
    result = bgm("client", "score", str(video), "-o", str(tmp_path / "o.wav"),
                 "--server", "127.0.0.1:9", "--tls-ca", str(junk))  # fmt: skip
    assert result.returncode == 2 and "holds no PEM certificate" in result.stderr, result
    assert len(result.stderr.strip().splitlines()) == 1


def test_tls_against_a_plaintext_server_is_one_line(tmp_path):
    """`bgm client --tls` to a server that speaks no TLS: the command's one error line, with
    no line of gRPC's C core log before it (its handshake failure had been logged at INFO)."""
    import os
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor

    server = grpc.server(ThreadPoolExecutor(1))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        video = tmp_path / "v.mp4"
        video.write_bytes(b"not read: the handshake fails first")
        environment = {k: v for k, v in os.environ.items() if k != "GRPC_VERBOSITY"}
        finished = subprocess.run(
            [sys.executable, "-m", "services.launch", "client", "score", str(video), "-o",
             str(tmp_path / "o.wav"), "--server", f"127.0.0.1:{port}", "--tls", "--timeout",
             "20"], capture_output=True, text=True, timeout=120, env=environment,
        )  # fmt: skip
    finally:
        server.stop(None)
    assert finished.returncode == 1, finished.stderr
    lines = finished.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error (UNAVAILABLE)"), finished.stderr
    # The likely cause said (gRPC's own words had named none).
    assert lines[0].endswith(f"(does 127.0.0.1:{port} speak TLS? without --tls the call is "
                             "plaintext)"), finished.stderr  # fmt: skip


def test_a_certificate_that_fails_verification_gets_no_advice_to_drop_tls(secured, tmp_path):
    """A TLS server whose certificate the client cannot verify (its CA not given): gRPC's own
    words, without the plaintext server's hint to leave --tls off, which would have steered
    the caller towards sending its key in the clear."""
    from tests.bgm_command import bgm

    video = tmp_path / "v.mp4"
    video.write_bytes(b"not read: the handshake fails first")
    result = bgm("client", "score", str(video), "-o", str(tmp_path / "o.wav"), "--server",
                 secured.running.gateway, "--tls", "--timeout", "20")  # fmt: skip
    assert result.returncode == 1 and result.stderr.startswith("error (UNAVAILABLE)"), result
    assert "speak TLS" not in result.stderr, result.stderr


def test_an_open_tagger_or_generator_with_auth_on_is_said_at_start_up(caplog):
    """With auth on, a generator on 0.0.0.0 with neither a service token nor client
    certificate names had answered anyone, past the gateway's tenants, without a word."""
    from services.config import BgmConfig
    from services.serve import check_gated

    config = BgmConfig.model_validate({"auth": {"enabled": True, "api_keys_file": "k.yaml"}})
    open_to_all = Endpoint(host="0.0.0.0", port=1, allow_plaintext=True)
    check_gated("generator", open_to_all, config)
    assert "the generator on 0.0.0.0 answers any caller" in caplog.text
    caplog.clear()
    gated = config.model_copy(update={"auth": config.auth.model_copy(
        update={"service_token_env": "T"})})  # fmt: skip
    for name, endpoint, cfg in (("gateway", open_to_all, config), ("tagger", open_to_all, gated),
                                ("tagger", Endpoint(port=1), config)):  # fmt: skip
        check_gated(name, endpoint, cfg)
    assert caplog.text == ""


def test_plaintext_beyond_loopback_must_be_asked_for():
    check_plaintext("gateway", Endpoint(host="127.0.0.1", port=1))
    with pytest.raises(ConfigError, match="without TLS"):
        check_plaintext("gateway", Endpoint(host="0.0.0.0", port=1))
    check_plaintext("gateway", Endpoint(host="0.0.0.0", port=1, allow_plaintext=True))
    check_plaintext(
        "gateway",
        Endpoint(host="0.0.0.0", port=1, tls=TlsConfig(cert_file=Path("c"), key_file=Path("k"))),
    )


def test_the_gateway_shows_its_rotated_client_certificate_from_the_next_call(tmp_path):
    """The gateway's channels watch their certificate files: after a rotation the next call
    presents the new certificate, and a call already running on the old channel finishes."""
    import asyncio

    from services.config import ClientTlsConfig
    from services.gateway.channels import ServiceChannel
    from services.tls import server_credentials

    pki = make_pki(tmp_path / "pki", "ca")
    server_cert, server_key = pki.issue("tagger", server=True)
    first_cert, first_key = pki.issue("gateway-1", server=False)
    cert_file, key_file = tmp_path / "gateway.crt", tmp_path / "gateway.key"
    cert_file.write_bytes(first_cert.read_bytes())
    key_file.write_bytes(first_key.read_bytes())

    async def who(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await asyncio.sleep(float(request or b"0"))
        return context.auth_context()["x509_common_name"][0]

    async def scenario() -> list[bytes]:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
            "test.Who", {"Am": grpc.unary_unary_rpc_method_handler(who)})])  # fmt: skip
        tls = TlsConfig(cert_file=server_cert, key_file=server_key, client_ca_file=pki.ca_file)
        port = server.add_secure_port("127.0.0.1:0", server_credentials(tls))
        await server.start()
        channel = ServiceChannel(
            f"127.0.0.1:{port}", "test.Who", lambda c: c.unary_unary("/test.Who/Am"), ["Am"], 1,
            1 << 20, ClientTlsConfig(ca_file=pki.ca_file, cert_file=cert_file, key_file=key_file),
            retire_after_s=30,
        )  # fmt: skip
        try:
            before = await channel.stub(b"0", timeout=10)
            running = asyncio.ensure_future(channel.stub(b"1.0", timeout=10))
            await asyncio.sleep(0.3)
            second_cert, second_key = pki.issue("gateway-2", server=False)
            key_file.write_bytes(second_key.read_bytes())
            cert_file.write_bytes(second_cert.read_bytes())
            after = await channel.stub(b"0", timeout=10)
            return [before, after, await running]
        finally:
            await channel.close()
            await server.stop(None)

    assert asyncio.run(scenario()) == [b"gateway-1", b"gateway-2", b"gateway-1"]


@pytest.mark.parametrize(
    "bad", ["[]", '{"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB", "alg": "none"}]}', "{"]
)
def test_a_jwks_that_is_not_one_keeps_the_last_good_keys(tmp_path, caplog, bad):
    """A JWKS pushed as a list, or with a key of algorithm 'none', had failed every JWT call
    as INTERNAL with a traceback until it was mended (and a server starting with it printed
    a 50-line traceback); it is a file that cannot be read yet, as a half-written one is."""
    from services.auth import Authenticator

    authenticator, sign, config = _jwt_authenticator(tmp_path)
    token = sign(exp=int(time.time()) + 60)
    assert config.jwks_file is not None
    config.jwks_file.write_text(bad)
    assert authenticator.caller((("authorization", f"Bearer {token}"),)).tenant == "t"
    assert "cannot be read yet" in caplog.text
    with pytest.raises(ConfigError, match="is not a usable JWKS"):
        Authenticator(config)


def test_a_jwks_emptied_revokes_every_key(tmp_path, caplog):
    """`{"keys": []}` is a JWKS with every key revoked. PyJWT refuses an empty set, so it
    had been taken for a file that cannot be read yet, and the revoked key went on being
    accepted; a server may also start with it (refusing every JWT)."""
    from services.auth import Authenticator

    authenticator, sign, config = _jwt_authenticator(tmp_path)
    token = sign(exp=int(time.time()) + 60)
    bearer = (("authorization", f"Bearer {token}"),)
    assert authenticator.caller(bearer).tenant == "t"
    assert config.jwks_file is not None
    config.jwks_file.write_text('{"keys": []}')
    with pytest.raises(UnauthenticatedError, match="has no key 'k1'"):
        authenticator.caller(bearer)
    assert "cannot be read yet" not in caplog.text
    assert "holds no keys" in caplog.text
    with pytest.raises(UnauthenticatedError, match="has no key 'k1'"):
        Authenticator(config).caller(bearer)


def test_a_jwks_needs_an_issuer_and_an_audience(tmp_path):
    """Without them a token naming no issuer or audience had been taken."""
    from services.auth import Authenticator

    _, _, config = _jwt_authenticator(tmp_path)
    for unset in ("jwt_issuer", "jwt_audience"):
        with pytest.raises(ConfigError, match=r"needs auth\.jwt_issuer and auth\.jwt_audience"):
            Authenticator(config.model_copy(update={unset: None}))


def test_a_jwt_naming_no_key_is_tried_with_each(tmp_path):
    """Only the set's first key had been tried for a token without `kid`, so a key added to
    rotate to was refused until the old one left the set."""
    from services.auth import Authenticator

    authenticator, _, config = _jwt_authenticator(tmp_path)
    assert config.jwks_file is not None
    old = json.loads(config.jwks_file.read_text())["keys"][0]
    new, stranger = (rsa.generate_private_key(public_exponent=65537, key_size=2048)
                     for _ in range(2))  # fmt: skip
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(new.public_key()))
    config.jwks_file.write_text(json.dumps({"keys": [old, {**public, "alg": "RS256"}]}))
    authenticator = Authenticator(config)
    claims = {"iss": "i", "aud": "a", "tenant": "t", "exp": int(time.time()) + 60}

    def tenant(key: Any) -> str:
        token = jwt.encode(claims, key, algorithm="RS256")
        return authenticator.caller((("authorization", f"Bearer {token}"),)).tenant

    assert tenant(new) == "t"
    with pytest.raises(Exception, match="the JWT is not accepted: Signature verification"):
        tenant(stranger)


def test_a_jwt_is_checked_with_leeway_for_the_issuers_clock(tmp_path):
    """A token issued by a clock a second fast had been refused as not yet valid (iat)."""
    authenticator, sign, _ = _jwt_authenticator(tmp_path)
    now = int(time.time())

    def tenant(**claims: int) -> str:
        return authenticator.caller((("authorization", f"Bearer {sign(**claims)}"),)).tenant

    assert tenant(iat=now + 5, exp=now + 60) == "t"
    assert tenant(exp=now - 10) == "t"  # within auth.jwt_leeway_s (30 s)
    for claims in ({"iat": now + 120, "exp": now + 600}, {"exp": now - 120}):
        with pytest.raises(Exception, match="the JWT is not accepted"):
            tenant(**claims)


def _jwt_authenticator(tmp_path: Path) -> tuple[Any, Any, Any]:
    """An Authenticator reading a JWKS of one key, a function that signs a token for tenant
    "t" with the claims given, and the config."""
    from services.auth import Authenticator
    from services.config import AuthConfig

    signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(signing_key.public_key()))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**public, "kid": "k1", "alg": "RS256"}]}))
    config = AuthConfig(enabled=True, jwks_file=jwks, jwt_issuer="i", jwt_audience="a")

    def sign(**claims: int) -> str:
        return jwt.encode({"iss": "i", "aud": "a", "tenant": "t", **claims}, signing_key,
                          algorithm="RS256", headers={"kid": "k1"})  # fmt: skip

    return Authenticator(config), sign, config


def test_an_emptied_key_file_keeps_its_keys_and_an_empty_list_revokes_them(tmp_path, caplog):
    """A rewrite caught before its first byte (a truncating open), or `null`, had been read
    as no keys: every API key refused until the writer finished. Only `[]` revokes them all.
    And while a file cannot be read, it is tried again when it changes (or after a second),
    not at every call: each call had logged its warning."""
    from services.auth import Authenticator
    from services.config import AuthConfig

    keys = tmp_path / "keys.yaml"
    keys.write_text(yaml.safe_dump([{"tenant": "t", "sha256": hashlib.sha256(b"k").hexdigest()}]))
    authenticator = Authenticator(AuthConfig(enabled=True, api_keys_file=keys))
    bearer = (("authorization", "Bearer k"),)
    for caught in ("", "null\n", "{}\n"):
        caplog.clear()
        keys.write_text(caught)
        for _ in range(5):
            assert authenticator.caller(bearer).tenant == "t"
        assert caplog.text.count("cannot be read yet") == 1, caught
    keys.write_text("[]\n")
    with pytest.raises(UnauthenticatedError, match="not a known API key"):
        authenticator.caller(bearer)
    keys.write_text("")
    with pytest.raises(ConfigError, match=r"expected a list .*\(\[\] for none\)"):
        Authenticator(AuthConfig(enabled=True, api_keys_file=keys))


def test_a_half_written_key_file_keeps_the_last_good_keys(tmp_path, caplog):
    from services.auth import Authenticator
    from services.config import AuthConfig

    keys = tmp_path / "keys.yaml"
    keys.write_text(yaml.safe_dump([{"tenant": "t", "sha256": hashlib.sha256(b"k").hexdigest()}]))
    authenticator = Authenticator(AuthConfig(enabled=True, api_keys_file=keys))
    keys.write_text("- {tenant: t, sha256: [")
    assert authenticator.caller((("authorization", "Bearer k"),)).tenant == "t"
    assert "cannot be read yet" in caplog.text
    keys.write_text(yaml.safe_dump([{"tenant": "u", "sha256": hashlib.sha256(b"j").hexdigest()}]))
    assert authenticator.caller((("authorization", "Bearer j"),)).tenant == "u"
    with pytest.raises(Exception, match="not a known API key"):
        authenticator.caller((("authorization", "Bearer k"),))
    twice = [{"tenant": "t", "sha256": "a" * 64}, {"tenant": "u", "sha256": "a" * 64}]
    for entries, says in (([{"tenant": "t", "sha256": "beef"}], "is not a SHA-256"),
                          (twice, "is given twice")):  # fmt: skip
        bad = tmp_path / "bad.yaml"
        bad.write_text(yaml.safe_dump(entries))
        with pytest.raises(ConfigError, match=says):
            Authenticator(AuthConfig(enabled=True, api_keys_file=bad))
    missing = AuthConfig(enabled=True, api_keys_file=tmp_path / "none.yaml")
    with pytest.raises(ConfigError, match="cannot read the API keys"):
        Authenticator(missing)
    # A FIFO put in its place had held every call of the gateway (and a start) for good.
    keys.unlink()
    os.mkfifo(keys)
    assert authenticator.caller((("authorization", "Bearer j"),)).tenant == "u"
    assert "not a file" in caplog.text
    with pytest.raises(ConfigError, match="not a file"):
        Authenticator(AuthConfig(enabled=True, api_keys_file=keys))
