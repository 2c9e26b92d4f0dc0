"""The `vlm` (and `openai`) tagger backends: answers parsed and mapped onto the vocabulary,
timing kept from the picture, the fallback flagged, tiny models of each family loaded from
their folders, and the services with that backend."""

from __future__ import annotations

import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import numpy as np
import pytest

from services.config import OpenAiVlmConfig, TaggerConfig, VlmConfig
from services.errors import ConfigError, UnavailableError
from services.media.synth import Shot, SyntheticVideo, write_video
from services.rules import check_analysis
from services.tagger.backend import AnalysisRequest
from services.tagger.backends import create_tagger_backend
from services.tagger.backends.vision import VisionTagger
from services.tagger.backends.vlm.answer import UnusableAnswer, parse_answer
from services.tagger.backends.vlm.backend import VlmTagger, frame_times
from services.tagger.backends.vlm.models import OpenAiVlm, SegmentFrames
from services.tagger.backends.vlm.normalise import normalise
from services.tagger.backends.vlm.tiny import BUILDERS
from services.tagger.text_hints import TextHintModel
from services.vocabulary import load_vocabulary
from tests.bgm_command import Finished, bgm

GOOD = {
    "scene": "A surfer rides a wave at sunset.",
    "music": "Bright, driving rock with a warm glow.",
    "genres": ["rock", "film score"],
    "moods": ["joyful", "energetic"],
    "instruments": ["electric guitar", "drums", "vocals"],
    "segments": [
        {"segment": 1, "caption": "Paddling out.", "moods": ["calm"]},
        {"segment": 2, "caption": "Riding the wave.", "moods": ["triumphant"]},
    ],
}


# ---- reading answers -------------------------------------------------------------------


def test_a_clean_answer_is_read_whole():
    answer = parse_answer(json.dumps(GOOD), segment_count=2)
    assert answer.scene == GOOD["scene"] and answer.music == GOOD["music"]
    assert answer.genres == ["rock", "film score"]
    assert answer.instruments == ["electric guitar", "drums", "vocals"]
    assert [(c.segment, c.caption, c.moods) for c in answer.segments] == [
        (0, "Paddling out.", ["calm"]),
        (1, "Riding the wave.", ["triumphant"]),
    ]


@pytest.mark.parametrize(
    "reply",
    [
        "Sure! Here is the JSON:\n```json\n" + json.dumps(GOOD, indent=2) + "\n```\nEnjoy.",
        json.dumps(GOOD).replace("]", ",]").replace("}", ",}"),  # trailing commas
        str(GOOD),  # a Python dict, single quotes
        "{not json at all} and then " + json.dumps(GOOD),  # a broken object before the real one
    ],
    ids=["fenced-with-prose", "trailing-commas", "python-quotes", "second-object"],
)
def test_answers_models_really_give_are_read(reply):
    answer = parse_answer(reply, segment_count=2)
    assert answer.genres == ["rock", "film score"] and len(answer.segments) == 2


def test_strings_for_lists_and_other_field_names_are_accepted():
    reply = json.dumps({"description": "A kitchen.", "genre": "acoustic, folk and lo-fi",
                        "mood": "warm / cozy", "instrumentation": "piano; strings"})  # fmt: skip
    answer = parse_answer(reply, segment_count=1)
    assert answer.scene == "A kitchen."
    assert answer.genres == ["acoustic", "folk", "lo-fi"]
    assert answer.moods == ["warm", "cozy"] and answer.instruments == ["piano", "strings"]


def test_captions_outside_the_segments_are_dropped():
    reply = json.dumps({"scene": "x", "segments": [{"segment": 0, "caption": "before"},
                                                   {"segment": 3, "caption": "third"},
                                                   {"segment": 9, "caption": "past"}]})  # fmt: skip
    assert [(c.segment, c.caption) for c in parse_answer(reply, 3).segments] == [(2, "third")]


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ('{"scene": "a beach", "genres": ["pop"', "no JSON object"),  # cut off mid-answer
        ("I cannot help with that.", "no JSON object"),
        ("\x1c\ufffd[e%{\ufffd", "no JSON object"),  # what a random model writes
        ('{"answer": 42, "confidence": "high"}', "none of the fields"),
        ("[1, 2, 3]", "no JSON object"),
    ],
)
def test_unusable_answers_say_why(reply, reason):
    with pytest.raises(UnusableAnswer, match=reason):
        parse_answer(reply, segment_count=2)


# ---- onto the vocabulary ------------------------------------------------------------------


@pytest.fixture(scope="module")
def text_model() -> TextHintModel:
    return TextHintModel(load_vocabulary())


@pytest.mark.parametrize(
    ("kind", "phrase", "tag"),
    [
        ("genre", "Lo-Fi", "lo-fi"),
        ("instrument", "Acoustic Guitar", "acoustic-guitar"),
        ("mood", "joyful", "happy"),
        ("mood", "suspenseful", "tense"),
        ("genre", "film score", "cinematic"),
        ("instrument", "violin", "strings"),
        ("instrument", "trumpet", "brass"),
        ("mood", "mélancolique", "melancholic"),
    ],
)
def test_names_synonyms_and_near_spellings_map_onto_the_vocabulary(text_model, kind, phrase, tag):
    found = normalise(kind, [phrase], load_vocabulary(), text_model)
    assert [t.tag for t in found.tags] == [tag] and found.unmapped == []


@pytest.mark.parametrize(
    ("kind", "phrase"),
    [("genre", "polka"), ("genre", "jazz"), ("instrument", "vocals"), ("mood", "fröhlich"),
     ("instrument", "808")],
)  # fmt: skip
def test_words_outside_the_vocabulary_stay_unmapped(text_model, kind, phrase):
    found = normalise(kind, [phrase], load_vocabulary(), text_model)
    assert found.tags == [] and found.unmapped == [phrase]


def test_several_words_for_one_tag_give_it_once(text_model):
    found = normalise("instrument", ["violin", "cello", "piano"], load_vocabulary(), text_model)
    assert [t.tag for t in found.tags] == ["strings", "piano"]
    assert found.tags[0].phrase == "violin"


# ---- the backend, with a scripted model -----------------------------------------------------


class ScriptedModel:
    """Answers with a fixed reply and keeps what it was shown."""

    name = "scripted"

    def __init__(self, reply: str):
        self.reply = reply
        self.shown: list[SegmentFrames] = []
        self.instruction = ""

    def answer(self, segments: list[SegmentFrames], instruction: str, heartbeat) -> str:
        self.shown, self.instruction = segments, instruction
        return self.reply


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> SyntheticVideo:
    folder = tmp_path_factory.mktemp("vlm-media")
    shots = [Shot(2.0, speed=0.1, hue=0.1), Shot(2.0, speed=0.9, hue=0.6)]
    return write_video(folder / "clip.mp4", shots, width=320, height=180)


def tagger(reply: str, **vlm: object) -> tuple[VlmTagger, ScriptedModel]:
    model = ScriptedModel(reply)
    return VlmTagger(TaggerConfig(vlm=VlmConfig(**vlm)), model), model


def test_semantics_come_from_the_model_and_timing_from_the_picture(clip):
    backend, model = tagger(json.dumps(GOOD), frames_per_segment=2, frame_size=64)
    analysis = backend.analyze(AnalysisRequest(clip.path))
    picture = VisionTagger(TaggerConfig()).analyze(AnalysisRequest(clip.path))
    # Timing: the picture's, untouched.
    assert analysis.cuts == picture.cuts and analysis.motion == picture.motion
    assert [(s.start_s, s.end_s) for s in analysis.segments] == [
        (s.start_s, s.end_s) for s in picture.segments
    ]
    # Semantics: the model's words, on the vocabulary, marked as the model's.
    tags = analysis.tags
    assert tags.genres == ["rock", "cinematic"]
    assert tags.moods[:2] == ["happy", "energetic"]
    assert tags.instruments == ["electric-guitar", "drums"]
    assert {o.source for o in tags.origins} == {"vlm"}
    assert tags.bpm_min <= tags.bpm <= tags.bpm_max
    assert (tags.bpm_min, tags.bpm_max) == (100, 120)  # rock 100-160 within cinematic 70-120
    # Per segment: the captions and their moods.
    assert [s.caption for s in analysis.segments] == ["Paddling out.", "Riding the wave."]
    assert [s.moods for s in analysis.segments] == [["calm"], ["epic"]]
    # What did not map is kept, not lost.
    assert analysis.semantics.source == "vlm" and analysis.semantics.fallback_reason == ""
    assert analysis.semantics.unmapped == ["vocals"]
    assert "Also suggested: vocals." in analysis.description
    assert analysis.description.startswith(str(GOOD["scene"]))
    assert analysis.backend == "vlm" and analysis.warnings == []
    check_analysis(analysis, load_vocabulary())  # what the gateway holds a tagger to
    # It saw two frames per segment, each 64 px on its longer side, in segment order.
    assert [len(group.frames) for group in model.shown] == [2, 2]
    assert all(max(f.shape[:2]) == 64 for group in model.shown for f in group.frames)
    assert model.shown[0].label.startswith("Segment 1 (0.0-")
    assert "JSON" in model.instruction and "lo-fi" in model.instruction


def test_the_frames_show_their_segments(clip):
    backend, model = tagger(json.dumps(GOOD), frames_per_segment=1, frame_size=64)
    backend.analyze(AnalysisRequest(clip.path))
    # The clip's two shots have different hues: the frames differ accordingly.
    first, second = (group.frames[0].reshape(-1, 3).mean(axis=0) for group in model.shown)
    assert np.abs(first - second).max() > 20


def test_the_users_prompt_still_comes_first(clip):
    backend, _ = tagger(json.dumps(GOOD))
    analysis = backend.analyze(AnalysisRequest(clip.path, prompt="dreamy ambient"))
    assert analysis.tags.genres[0] == "ambient"
    assert analysis.tags.origins[0].source in ("prompt", "both")


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ('{"scene": "a beach", "genres": ["pop"', "no JSON object"),
        (json.dumps({"genres": ["polka"], "moods": ["fröhlich"], "instruments": ["808"]}),
         "none of the model's tags is in the vocabulary (polka, fröhlich, 808)"),
    ],
)  # fmt: skip
def test_an_unusable_answer_falls_back_to_the_picture_and_says_so(clip, reply, reason):
    backend, _ = tagger(reply)
    analysis = backend.analyze(AnalysisRequest(clip.path))
    picture = VisionTagger(TaggerConfig()).analyze(AnalysisRequest(clip.path))
    assert analysis.tags == picture.tags and analysis.segments == picture.segments
    assert analysis.semantics.source == "picture" and analysis.semantics.model == "scripted"
    assert reason in analysis.semantics.fallback_reason
    assert any("could not be used" in w for w in analysis.warnings)


def test_frames_are_bounded_per_segment_and_in_all():
    from services.domain import Look, Segment

    look = Look(0.5, 0.5, 0.5, 0.5)
    segments = [Segment(i * 2.0, i * 2.0 + 2.0, 0.5, look, []) for i in range(40)]
    few = frame_times(segments[:3], per_segment=2, max_frames=16)
    assert [len(times) for _, times in few] == [2, 2, 2]
    assert few[0][1] == [0.5, 1.5]
    squeezed = frame_times(segments[:10], per_segment=4, max_frames=16)
    assert sum(len(times) for _, times in squeezed) == 10
    spread = frame_times(segments, per_segment=2, max_frames=16)
    assert len(spread) == 16 and spread[0][0] == 0 and spread[-1][0] == 39
    assert all(len(times) == 1 for _, times in spread)


# ---- real (tiny) models of each family --------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("vlm-models")
    return {family: build(folder) for family, build in BUILDERS.items()}


def test_a_local_model_hears_a_cancel_between_tokens(tiny_models):
    from services.errors import CancelledError
    from services.tagger.backends.vlm.models import LocalVlm

    family = sorted(BUILDERS)[0]
    model = LocalVlm(VlmConfig(model_path=tiny_models[family], max_new_tokens=64))
    tokens: list[int] = []

    def heartbeat() -> None:
        tokens.append(1)
        if len(tokens) == 3:
            raise CancelledError("cancelled")

    with pytest.raises(CancelledError):
        model.answer([], "Describe the music.", heartbeat)
    assert len(tokens) == 3


@pytest.mark.parametrize("family", sorted(BUILDERS))
def test_each_family_loads_from_its_folder_and_runs_the_whole_path(tiny_models, clip, family):
    settings = VlmConfig(model_path=tiny_models[family], max_new_tokens=24, frame_size=96)
    config = TaggerConfig(backend="vlm", vlm=settings)
    backend = create_tagger_backend(config)
    seen: list[float] = []
    analysis = backend.analyze(AnalysisRequest(clip.path), progress=seen.append)
    assert backend.describe().name == "vlm"
    assert str(tiny_models[family]) in analysis.semantics.model
    # A random model writes noise: the analysis says so and keeps the picture's tags.
    assert analysis.semantics.source == "picture"
    assert analysis.semantics.fallback_reason
    assert any("could not be used" in w for w in analysis.warnings)
    assert analysis.tags.genres and len(analysis.cuts) == 1
    assert seen == sorted(seen) and seen[-1] == 1.0
    check_analysis(analysis, load_vocabulary())


def test_bad_model_folders_are_explained(tmp_path, tiny_models):
    def load(path: Path | None) -> None:
        create_tagger_backend(TaggerConfig(backend="vlm", vlm=VlmConfig(model_path=path)))

    with pytest.raises(ConfigError, match="needs a model path"):
        load(None)
    with pytest.raises(ConfigError, match="does not exist"):
        load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"no config\.json"):
        load(tmp_path / "empty")
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ConfigError, match="holds a bert; supported: idefics3"):
        load(other)
    model_only = tmp_path / "model-only"
    model_only.mkdir()
    for name in ("config.json", "model.safetensors", "generation_config.json"):
        (model_only / name).write_bytes((tiny_models["smolvlm"] / name).read_bytes())
    with pytest.raises(ConfigError, match="no processor"):
        load(model_only)
    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    for source in tiny_models["qwen2-vl"].iterdir():
        if source.name != "model.safetensors":
            (no_weights / source.name).write_bytes(source.read_bytes())
    with pytest.raises(ConfigError, match="incomplete or damaged"):
        load(no_weights)
    # transformers fills the weights a folder lacks with random values and only logs it: a
    # config with a layer more than its weights had loaded, and answered nonsense.
    layer_more = tmp_path / "layer-more"
    shutil.copytree(tiny_models["qwen2-vl"], layer_more)
    config = json.loads((layer_more / "config.json").read_text())
    text = config["text_config"]
    text["num_hidden_layers"] += 1
    text["layer_types"] = text["layer_types"][:1] * text["num_hidden_layers"]  # as many
    (layer_more / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="lacks weights its config asks for"):
        load(layer_more)
    # A value that cannot build the model had ended start-up in a ZeroDivisionError.
    text["num_hidden_layers"] -= 1
    text["layer_types"] = text["layer_types"][:-1]
    text["num_attention_heads"] = 0
    (layer_more / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="incomplete or damaged: ZeroDivisionError"):
        load(layer_more)


# ---- a model served behind an OpenAI-compatible API ---------------------------------------------


class FakeServer:
    """An OpenAI-compatible chat endpoint on localhost that answers with a fixed reply."""

    def __init__(self, status: int, body: dict):
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                server.requests.append({"path": self.path, "headers": dict(self.headers),
                                        "body": json.loads(self.rfile.read(length))})  # fmt: skip
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.http = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_port}/v1"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


def completion(content: str) -> dict:
    return {"choices": [{"message": {"role": "assistant", "content": content}}]}


def test_the_openai_backend_sends_the_frames_and_reads_the_reply(clip, monkeypatch):
    server = FakeServer(200, completion("```json\n" + json.dumps(GOOD) + "\n```"))
    monkeypatch.setenv("VLM_KEY", "secret")
    try:
        config = TaggerConfig(
            backend="openai",
            vlm=VlmConfig(frames_per_segment=1, frame_size=64),
            openai=OpenAiVlmConfig(base_url=server.url, model="qwen2.5-vl-7b",
                                   api_key_env="VLM_KEY"),
        )  # fmt: skip
        backend = create_tagger_backend(config)
        analysis = backend.analyze(AnalysisRequest(clip.path))
    finally:
        server.close()
    assert analysis.backend == "openai" and analysis.semantics.source == "vlm"
    assert analysis.tags.genres == ["rock", "cinematic"]
    [request] = server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer secret"
    body = request["body"]
    assert body["model"] == "qwen2.5-vl-7b" and body["temperature"] == 0
    assert body["response_format"]["json_schema"]["schema"]["required"][0] == "scene"
    parts = body["messages"][0]["content"]
    images = [p for p in parts if p["type"] == "image_url"]
    assert len(images) == 2
    assert all(p["image_url"]["url"].startswith("data:image/jpeg;base64,") for p in images)
    assert parts[-1]["type"] == "text" and "JSON" in parts[-1]["text"]


def test_openai_server_errors_are_unavailable_not_a_silent_fallback(clip):
    server = FakeServer(500, {"error": "model not loaded"})
    try:
        model = OpenAiVlm(OpenAiVlmConfig(base_url=server.url, model="m"), VlmConfig())
        with pytest.raises(UnavailableError, match=r"HTTP 500: .*model not loaded"):
            model.answer([], "describe", lambda: None)
    finally:
        server.close()
    gone = OpenAiVlm(OpenAiVlmConfig(base_url=server.url, model="m", timeout_s=2), VlmConfig())
    with pytest.raises(UnavailableError, match="unreachable"):
        gone.answer([], "describe", lambda: None)
    with pytest.raises(ConfigError, match=r"needs tagger\.openai\.base_url"):
        OpenAiVlm(OpenAiVlmConfig(), VlmConfig())


# ---- through the command line and the tagger server --------------------------------------------


def test_bgm_analyze_and_score_with_the_vlm_backend(tiny_models, clip, tmp_path):
    def bgm_vlm(*arguments: str) -> Finished:
        return bgm(*arguments, "--tagger", "vlm", "--tagger-model", str(tiny_models["qwen2-vl"]))

    result = bgm_vlm("analyze", str(clip.path), "--json")
    assert result.returncode == 0, result.stderr
    analysis = json.loads(result.stdout)
    assert analysis["backend"] == "vlm"
    assert analysis["semantics"]["fallback_reason"] and analysis["semantics"]["model"]
    # The summaries say the model's answer was not used, not just show the picture's tags.
    scored = tmp_path / "scored.wav"
    for printed in (bgm_vlm("analyze", str(clip.path)),
                    bgm_vlm("score", str(clip.path), "-o", str(scored))):  # fmt: skip
        assert printed.returncode == 0, printed.stderr
        assert "Qwen2-VL at" in printed.stdout
        assert "could not be used" in " ".join(printed.stdout.split())


@pytest.mark.slow
def test_the_tagger_server_runs_the_vlm_backend(tiny_models, clip, tmp_path):
    import grpc

    from services.devserver import start, stop
    from services.gen.bgm.v1 import common_pb2, tagger_pb2, tagger_pb2_grpc

    running = start(
        tmp_path,
        clip.path.parent,
        which="tagger",
        extra_args=("--tagger", "vlm", "--tagger-model", str(tiny_models["smolvlm"])),
    )
    try:
        with grpc.insecure_channel(running.tagger) as channel:
            stub = tagger_pb2_grpc.TaggerStub(channel)
            described = stub.Describe(tagger_pb2.TaggerDescribeRequest(), timeout=10)
            assert described.name == "vlm" and "SmolVLM" in described.version
            reply = stub.Analyze(
                tagger_pb2.AnalyzeRequest(video=common_pb2.VideoSource(uri=clip.path.as_uri())),
                timeout=120,
            )
        semantics = reply.analysis.semantics
        assert reply.analysis.backend == "vlm"
        assert semantics.source == "picture" and semantics.fallback_reason
    finally:
        assert stop(running) == 0


@pytest.mark.parametrize(
    ("yaml_text", "field"),
    [
        ("tagger: {vlm: {frames_per_segment: 0}}", "frames_per_segment"),
        ("tagger: {vlm: {max_frames: 100}}", "max_frames"),
        ("tagger: {vlm: {dtype: int8}}", "dtype"),
        ("tagger: {openai: {timeout_s: 0}}", "timeout_s"),
    ],
)
def test_bad_vlm_settings_are_refused(tmp_path, yaml_text, field):
    from services.config import load_config

    path = tmp_path / "bgm.yaml"
    path.write_text(yaml_text + "\n")
    with pytest.raises(ConfigError, match=field):
        load_config(path)
