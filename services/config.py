"""Typed configuration: every knob has one home here.

Values come from a YAML file (`--config FILE` or the BGM_CONFIG environment variable), then
from command-line flags, which win. Unknown keys are errors, so a typo never passes silently.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Hashable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from services.errors import ConfigError
from services.knobs import MAX_GRPC_BYTES, MAX_WAIT_S, Folder
from services.media.sources import SourcePolicy
from services.media.video import VideoLimits
from services.watched_files import check_regular_file

# The gateway's API: every method of it needs a token when auth is on.
GATEWAY_API = "bgm.v1.Gateway"
# Where a model runs: "auto" (CUDA if available, else the CPU), "cpu", "cuda" or "cuda:N".
DEVICE_PATTERN = r"^(auto|cpu|cuda(:\d+)?)$"
# Where the gateway stages uploads, and so where taggers on the same machine may read.
DEFAULT_STAGING_DIR = Path(tempfile.gettempdir()) / "bgm-staging"
# Where the tagger copies videos it fetched, one folder per request.
DEFAULT_TAGGER_SCRATCH_DIR = Path(tempfile.gettempdir()) / "bgm-tagger"


class StrictModel(BaseModel):
    # No knob takes NaN or infinity: NaN passes every bound unchecked, and an infinite length
    # had ended in an OverflowError traceback.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class VisionConfig(StrictModel):
    """Knobs of the tagger's `vision` backend."""

    # Longer side of the frames the analysis looks at, in pixels.
    analysis_width: int = Field(96, ge=32, le=640)
    # Sample rate of the motion curve.
    motion_hz: float = Field(10.0, gt=0.0, le=60.0)
    # Pan speed, in frame widths per second, at which motion energy reaches 1 - 1/e (0.63).
    motion_scale: float = Field(0.35, gt=0.0)
    # Shots shorter than this are merged into a neighbour when forming segments.
    min_segment_s: float = Field(1.5, ge=0.0)
    # PySceneDetect AdaptiveDetector: ratio of a frame's change to its neighbours' for a cut
    # (2.5 rather than its 3.0: cuts between similar shots during fast pans still count),
    # and the least absolute change that may count.
    cut_adaptive_threshold: float = Field(2.5, gt=0.0)
    cut_min_content: float = Field(15.0, ge=0.0)
    # No two cuts closer than this.
    min_shot_s: float = Field(0.4, ge=0.0)
    # PySceneDetect ThresholdDetector: mean 8-bit level below which a frame counts as black.
    fade_black_level: float = Field(12.0, ge=0.0, le=255.0)
    # One thumbnail kept per this many seconds (JPEG, small) for per-segment pictures.
    thumbnail_every_s: float = Field(2.0, gt=0.0)


class VlmConfig(StrictModel):
    """The tagger's `vlm` backend (a transformers vision-language model from a local folder)
    and what both model backends (`vlm`, `openai`) send."""

    # A folder saved with save_pretrained: the model and its processor (chat template too).
    model_path: Path | None = None
    # "auto" = CUDA if available, else CPU.
    device: str = Field("auto", pattern=DEVICE_PATTERN)
    # "auto" = bfloat16 on CUDA where supported, else float16; float32 on CPU.
    dtype: str = Field("auto", pattern="^(auto|float32|float16|bfloat16)$")
    # Frames shown per segment, and at most in all (long videos: one frame for each of
    # max_frames segments spread over the video).
    frames_per_segment: int = Field(2, ge=1, le=8)
    max_frames: int = Field(16, ge=1, le=64)
    # Longer side of each frame, pixels.
    frame_size: int = Field(448, ge=32, le=1536)
    max_new_tokens: int = Field(512, ge=16, le=4096)
    # Ask for a caption and moods per segment (more tokens).
    segment_captions: bool = True


class OpenAiVlmConfig(StrictModel):
    """The tagger's `openai` backend: a VLM already served behind an OpenAI-compatible API
    (vLLM, SGLang, Ollama)."""

    # e.g. "http://vllm:8000/v1".
    base_url: str | None = None
    # The model name the server knows.
    model: str = ""
    # The environment variable holding the API key, if the server wants one.
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = Field(120.0, gt=0.0, le=MAX_WAIT_S)


class HearingConfig(StrictModel):
    """How the tagger listens to the video's own sound: speech (Silero VAD, whose weights
    ship in its PyPI package) and the level curve."""

    enabled: bool = True
    # Silero's speech probability above which a 32 ms frame counts as speech.
    vad_threshold: float = Field(0.5, gt=0.0, lt=1.0)
    # Shorter speech is ignored; shorter pauses do not split an interval.
    min_speech_s: float = Field(0.25, ge=0.0)
    min_silence_s: float = Field(0.3, ge=0.0)
    # Samples per second of the level curve.
    loudness_hz: float = Field(10.0, gt=0.0, le=100.0)


class TaggerConfig(StrictModel):
    backend: Literal["vision", "vlm", "openai"] = "vision"
    limits: VideoLimits = VideoLimits()
    vision: VisionConfig = VisionConfig()
    hearing: HearingConfig = HearingConfig()
    vlm: VlmConfig = VlmConfig()
    openai: OpenAiVlmConfig = OpenAiVlmConfig()
    # Folder of the sentence-embedding model for text hints; None = the packaged MiniLM.
    text_model_path: Path | None = None
    # What Tagger.Analyze may read by URI.
    sources: SourcePolicy = SourcePolicy(file_roots=[DEFAULT_STAGING_DIR])
    # Fetched and inline videos are copied here, one folder per request, removed after it
    # (and at start-up, what a killed tagger left).
    scratch_dir: Folder = DEFAULT_TAGGER_SCRATCH_DIR


class ComposerConfig(StrictModel):
    """Knobs of the generator's `composer` backend."""

    # A General MIDI SoundFont (.sf2/.sf3); None = TimGM6mb.sf2 from pretty_midi.
    soundfont_path: Path | None = None
    max_duration_s: float = Field(7200.0, gt=0.0)


class DiffusionConfig(StrictModel):
    """Knobs of the generator's `diffusion` backend (diffusers audio pipelines)."""

    # A folder saved with diffusers' save_pretrained (model_index.json and components), or
    # a stable-audio-tools model folder (SONIQUE's best_model.json, checkpoint and CLAP files,
    # in SONIQUE's environment: docs/generators.md, "SONIQUE").
    model_path: Path | None = None
    # None = the family's default.
    steps: int | None = Field(None, ge=1, le=1000)
    guidance_scale: float | None = Field(None, ge=0.0)
    # "auto" = CUDA if available, else CPU.
    device: str = Field("auto", pattern=DEVICE_PATTERN)
    # "auto" = float16 on CUDA, float32 on CPU.
    dtype: str = Field("auto", pattern="^(auto|float32|float16|bfloat16)$")
    # Seconds two windows overlap (crossfaded) when a piece is longer than the model's window
    # (at most a quarter of the window).
    window_overlap_s: float = Field(2.0, gt=0.0)
    # Longest stretch one pipeline call makes, seconds; None = the family's (the model's own
    # window for Stable Audio, what the family was trained on for the others).
    window_s: float | None = Field(None, gt=0.0)
    # A diffusers scheduler class to use instead of the checkpoint's, e.g.
    # "DPMSolverMultistepScheduler" (built from the checkpoint's scheduler config).
    scheduler: str | None = None
    # Most waveforms in one pipeline call (candidates, windows and pooled requests share
    # calls up to this); bounded by GPU memory.
    max_batch: int = Field(4, ge=1, le=64)
    max_duration_s: float = Field(7200.0, gt=0)


class SymbolicDiffusionConfig(StrictModel):
    """Knobs of the generator's `symbolic-diffusion` backend (Diff-BGM's piano-roll model;
    the composer's plan, rhythm section and sound around it: generator.composer)."""

    # Diff-BGM's checkpoint folder: params.json and chkpts/<checkpoint>.
    model_path: Path | None = None
    checkpoint: str = Field("weights_best.pt", pattern=r"^[\w.-]+\.pt$")
    # A CLIP model (transformers folder) for the per-beat visual features (ViT-B/32: 512).
    image_model_path: Path | None = None
    # A BERT model (transformers folder, bert-base: 768) for the captions' features.
    text_model_path: Path | None = None
    # Denoising steps: None = the model's full DDPM schedule (999 evaluations of its 1000
    # steps, as its inference runs); fewer = DDIM over evenly spaced steps.
    steps: int | None = Field(None, ge=1, le=1000)
    # Classifier-free guidance: 1.0 = none (its code's default; its README uses 5).
    guidance_scale: float = Field(1.0, ge=0.0)
    device: str = Field("auto", pattern=DEVICE_PATTERN)
    dtype: str = Field("auto", pattern="^(auto|float32|float16|bfloat16)$")
    # Most 8-bar windows denoised in one batch (windows of one piece and of pooled requests).
    max_batch: int = Field(8, ge=1, le=256)
    max_duration_s: float = Field(7200.0, gt=0)


class BatchingConfig(StrictModel):
    """How the Ray app pools concurrent requests into one backend batch (@serve.batch); only
    for backends that share model calls (diffusion)."""

    max_jobs: int = Field(4, ge=1, le=64)
    # How long the first job waits for others.
    wait_s: float = Field(0.05, ge=0.0, le=5.0)


class GeneratorConfig(StrictModel):
    backend: Literal["composer", "diffusion", "symbolic-diffusion"] = "composer"
    composer: ComposerConfig = ComposerConfig()
    diffusion: DiffusionConfig = DiffusionConfig()
    symbolic_diffusion: SymbolicDiffusionConfig = SymbolicDiffusionConfig()
    batching: BatchingConfig = BatchingConfig()
    # Audio that requests hold at once, bytes: the music and stems they make (32-bit stereo
    # at the brief's rate), from before a request waits for its turn until it has sent them
    # (it does not wait for a turn it could not hold the music of). A request
    # waits by turns until it fits (one larger than the whole has its turn alone). Two
    # requests at limits.max_music_s (2.8 GB of audio each at 48 kHz) had been held at once.
    audio_budget_bytes: int = Field(3 * 1024**3, gt=0)


class TenantLimits(StrictModel):
    """What one tenant may spend."""

    max_concurrent: int = Field(4, ge=1)
    # Seconds of music delivered in any hour (times candidates).
    music_s_per_hour: float = Field(3600.0, gt=0)
    # Longest video it may score.
    max_video_s: float = Field(7200.0, gt=0)
    max_candidates: int = Field(4, ge=1)


class AuthConfig(StrictModel):
    """Who may call. Off unless `enabled`: then every call to the gateway's API needs a
    bearer token (`authorization: Bearer ...` metadata), an API key from `api_keys_file` or
    a JWT signed by a key in `jwks_file`, and it acts for the tenant the key or token names.
    Health checks and reflection stay open unless `open_methods` says otherwise."""

    enabled: bool = False
    # YAML: a list of {tenant: NAME, sha256: HEX} (the SHA-256 of the key, never the key).
    api_keys_file: Path | None = None
    # A JSON Web Key Set; JWTs must carry this issuer and audience, and an unexpired `exp`.
    jwks_file: Path | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    # How far the identity provider's clock may be from this one when a JWT's `exp`, `nbf`
    # and `iat` are checked (a token issued by a clock 1 s fast had been refused as not yet
    # valid).
    jwt_leeway_s: float = Field(30.0, ge=0, le=600)
    # The claim that names the tenant.
    tenant_claim: str = "tenant"
    # Methods of the gateway's server anyone may call without a token (full gRPC names);
    # the API itself always needs one. Empty the list to lock health and reflection too.
    open_methods: list[str] = Field(default_factory=lambda: [
        "/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    ])  # fmt: skip
    # Per tenant; a tenant not listed gets `default_limits`.
    tenants: dict[str, TenantLimits] = Field(default_factory=dict)
    default_limits: TenantLimits = TenantLimits()
    # The environment variable holding the token the gateway shows the tagger and the
    # generator, which then accept no other caller; None = they accept any caller.
    service_token_env: str | None = None

    @model_validator(mode="after")
    def _said_whether_on(self) -> AuthConfig:
        # Keys, tokens or tenants given with `enabled` left out had left the gateway open to
        # anyone without a word.
        given = sorted(self.model_fields_set - {"enabled", "service_token_env"})
        if given and "enabled" not in self.model_fields_set:
            raise ValueError(f"{', '.join(given)} given but not enabled: set enabled: true "
                             "(or enabled: false to keep the gateway open)")  # fmt: skip
        for method in self.open_methods:
            if not re.fullmatch(r"/[A-Za-z_][\w.]*/[A-Za-z_]\w*", method):
                raise ValueError(f"open_methods: {method!r} is not a full gRPC method name "
                                 "(/package.Service/Method)")  # fmt: skip
            if method.startswith(f"/{GATEWAY_API}/"):
                raise ValueError(f"open_methods: {method} is the API, which always needs a token")
        return self


class SpeechDuckingConfig(StrictModel):
    """How the music ducks under speech (UserControls.speech "auto" or "duck")."""

    depth_db: float = Field(12.0, ge=0.0, le=40.0)
    # The dip starts this long before each spoken stretch, so it is down by the first word.
    lookahead_s: float = Field(0.3, ge=0.0, le=2.0)
    release_s: float = Field(0.6, ge=0.0, le=5.0)
    # Dip only the music's voice band (1-4 kHz) instead of all of it.
    carve: bool = False


class GatewayConfig(StrictModel):
    """How the gateway reaches the tagger and generator, and what requests may ask for."""

    tagger_address: str = "127.0.0.1:50052"
    generator_address: str = "127.0.0.1:50053"
    # Metadata sent with every call to each (a Ray Serve proxy picks the application by it).
    tagger_metadata: dict[str, str] = Field(default_factory=dict)
    generator_metadata: dict[str, str] = Field(default_factory=dict)
    # Deadlines of the downstream calls, seconds.
    analyze_timeout_s: float = Field(900.0, gt=0, le=MAX_WAIT_S)
    generate_timeout_s: float = Field(1800.0, gt=0, le=MAX_WAIT_S)
    describe_timeout_s: float = Field(10.0, gt=0, le=MAX_WAIT_S)
    # A Score with no news for this long sends its last progress again (stage "analysis" at
    # 0 while its video is fetched, staged and checked, or it waits for its turn): proxies and
    # load balancers end a stream that is quiet for a minute (AWS's by default), and a long
    # download or analysis sends nothing for minutes.
    progress_every_s: float = Field(15.0, gt=0, le=MAX_WAIT_S)
    # Attempts of an idempotent call (Analyze, Describe) that meets UNAVAILABLE.
    attempts: int = Field(3, ge=1, le=5)
    # Uploads and fetched videos are staged here, one folder per request, removed after it.
    staging_dir: Folder = DEFAULT_STAGING_DIR
    # In a cluster: an fsspec URL ("s3://bucket/bgm-staging") where staged videos are put for
    # the tagger to read (its sources.object_prefixes must include it); None = the tagger
    # reads the staging folder above by file://.
    staging_url: str | None = None
    # What Gateway.Score may read by URI (the staging folder is always readable).
    sources: SourcePolicy = SourcePolicy()
    # Folders file:// output URIs may name (s3:// and gs:// need the matching extra).
    output_roots: list[Folder] = Field(default_factory=list)
    max_upload_bytes: int = Field(4 * 1024**3, gt=0)
    # Each upload chunk counts as at least this many bytes against max_upload_bytes: a
    # message costs the gateway about 0.1 ms however small, and 100,000 empty chunks had cost
    # 6.6 s of its CPU without counting at all.
    min_chunk_bytes: int = Field(16 * 1024, ge=1)
    # Uploads stop (RESOURCE_EXHAUSTED, STAGING_FULL) rather than leave the staging disk with
    # less free than this: eight uploads a client, of 4 GiB each, from any number of clients.
    min_free_staging_bytes: int = Field(2 * 1024**3, ge=0)
    # The staging folder's own room where it is less than its disk's (a Kubernetes emptyDir's
    # sizeLimit: the node's disk has room long after the pod would be evicted for filling
    # the volume); what the folder holds counts against it. None: the disk's free space.
    staging_capacity_bytes: int | None = Field(None, gt=0)
    # An upload's bytes must all arrive within this (DEADLINE_EXCEEDED after): a client that
    # trickles them would hold a staging folder and one of its requests for as long as it
    # liked. 4 GiB in 900 s is 4.8 MB/s.
    upload_timeout_s: float = Field(900.0, gt=0, le=MAX_WAIT_S)
    # Videos whose length and streams are read at once (seconds each for a long MPEG-TS),
    # before a request is admitted; the rest wait by turns, the clients taking theirs, on
    # threads of their own (eight such reads from one client had held every thread of the
    # process that other callers' work runs on).
    max_video_reads: int = Field(2, ge=1)
    # Requests one client (one peer address) may have running at once; more are refused
    # with RESOURCE_EXHAUSTED.
    max_requests_per_client: int = Field(8, ge=1)
    # Output files stream back in chunks of this size.
    chunk_bytes: int = Field(1024 * 1024, gt=0)
    # Audio that requests hold at once, bytes: the music and stems received from the
    # generator, every candidate's (32-bit stereo at the request's rate), from before the
    # generator is called until the files are written. A request waits by turns, its clients
    # taking theirs, until its share fits (one larger than the whole has its turn alone);
    # with stems its share counts a stem for every instrument the generator plays, within
    # limits.max_music_s, so at the defaults no share is larger than the budget. Mastering's
    # working set (the envelope, the gain, the video's own sound where it is kept) comes on
    # top. Two requests at limits.max_music_s (2.8 GB of audio each at 48 kHz) had been held
    # at once, 9.9 GB in one process with the generator.
    audio_budget_bytes: int = Field(3 * 1024**3, gt=0)
    speech_ducking: SpeechDuckingConfig = SpeechDuckingConfig()
    # TLS of the channels to the tagger and the generator (None = plaintext).
    tagger_tls: ClientTlsConfig | None = None
    generator_tls: ClientTlsConfig | None = None


class TlsConfig(StrictModel):
    """A server's TLS: its certificate and key (PEM), and for mutual TLS the CA that signs
    its clients' certificates. The files are read again when they change (certificates
    rotate) at the next connection."""

    cert_file: Path
    key_file: Path
    # Clients must present a certificate signed by this CA.
    client_ca_file: Path | None = None
    # And, when listed, one whose common name is among these (the tagger and generator:
    # the gateway's); empty = any certificate the CA signed.
    client_names: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _names_need_a_ca(self) -> TlsConfig:
        # Without a CA no client certificate is asked for, so no name could be checked: the
        # service had started and refused every caller, the gateway too.
        if self.client_names and self.client_ca_file is None:
            raise ValueError("client_names needs client_ca_file (the CA of the clients' "
                             "certificates)")  # fmt: skip
        return self


class ClientTlsConfig(StrictModel):
    """How a client (the gateway's channels, `bgm client`) checks a TLS server and, for
    mutual TLS, proves itself."""

    # The CA that signed the server's certificate; None = the system's roots.
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    # The name the server's certificate carries, when it is not the address's host.
    server_name: str | None = None

    @model_validator(mode="after")
    def _key_with_certificate(self) -> ClientTlsConfig:
        # gRPC aborts the process on one without the other.
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (mutual TLS)")
        return self


class Endpoint(StrictModel):
    host: str = "127.0.0.1"
    port: int = Field(ge=0, le=65535)
    # Prometheus metrics over HTTP; 0 = off.
    metrics_port: int = Field(0, ge=0, le=65535)
    # Where metrics listen; None = the service's own host.
    metrics_host: str | None = None
    # Requests worked on at once; more wait their turn.
    max_concurrent: int = Field(2, ge=1)
    # Seconds a request of the tagger or the generator works before it steps aside for
    # another caller's waiting request (at most two per max_concurrent are set aside at
    # once: serving.SET_ASIDE_PER_WORKER), and then waits its turn.
    turn_slice_s: float = Field(2.0, gt=0, le=MAX_WAIT_S)
    tls: TlsConfig | None = None
    # Listening on an address other than loopback without TLS must be asked for (a mesh or a
    # proxy terminates TLS in front); it is logged as a warning.
    allow_plaintext: bool = False


# Each service's endpoint unless the config says otherwise.
DEFAULT_ENDPOINTS = {
    "gateway": Endpoint(port=50051, metrics_port=9101, max_concurrent=16),
    "tagger": Endpoint(port=50052, metrics_port=9102, max_concurrent=2),
    "generator": Endpoint(port=50053, metrics_port=9103, max_concurrent=2),
}


class DeliveryLimit(StrictModel):
    """How fast a caller must take what a stream has ready for it (the gateway's files, the
    generator's music): all of it within grace_s and its size at min_bytes_per_s, from its
    first message, else DEADLINE_EXCEEDED (DELIVERY_TOO_SLOW) and what it held is let go. A
    caller taking a message just inside reader_stall_s had held it for as long as it liked:
    the generator's share of the audio budget (other callers' requests waiting for it), the
    gateway's request folder on the staging disk (a two-hour WAV, 2.8 GB, for a day). At the
    defaults a three-minute video's 4 MB within about 64 s, that WAV within 45 minutes."""

    grace_s: float = Field(60.0, gt=0, le=MAX_WAIT_S)
    min_bytes_per_s: int = Field(1024 * 1024, gt=0)


class PeerLimit(StrictModel):
    """What one caller (a connection's address) may have in flight at the tagger or the
    generator at once, waiting for a turn or running: more is refused at once
    (RESOURCE_EXHAUSTED, CALLER_BUSY). A waiting request is held whole: a caller reaching the
    tagger directly had queued a hundred 60 MB inline videos behind two long analyses, 12 GB,
    until the process was killed. The gateway's requests (a URI and controls, a brief) stay
    far under both; its own clients are held to gateway.max_requests_per_client."""

    max_requests: int = Field(256, ge=1)
    # Their size as sent (a request alone is always taken, however large).
    max_bytes: int = Field(1024**3, gt=0)


class ServingConfig(StrictModel):
    gateway: Endpoint = DEFAULT_ENDPOINTS["gateway"]
    tagger: Endpoint = DEFAULT_ENDPOINTS["tagger"]
    generator: Endpoint = DEFAULT_ENDPOINTS["generator"]
    # Largest gRPC message, bytes (audio travels in much smaller chunks).
    max_message_bytes: int = Field(64 * 1024 * 1024, gt=0, le=MAX_GRPC_BYTES)
    # Most a request's metadata (headers) may hold, counted as gRPC counts it: each entry's
    # name and value and 32 bytes. More is refused RESOURCE_EXHAUSTED saying so. gRPC's own
    # limits had refused headers between 8 and 16 KiB at random, and many small entries with
    # no message at all.
    max_metadata_bytes: int = Field(16 * 1024, gt=0, le=MAX_GRPC_BYTES)
    # On SIGTERM, requests in flight get this long to finish.
    grace_s: float = Field(30.0, ge=0, le=MAX_WAIT_S)
    # A stream (Generate, Score) whose caller takes none of its messages for this long ends
    # with DEADLINE_EXCEEDED (CALLER_STALLED), and what it held is let go: gRPC holds a write
    # until the caller reads, and a caller that stopped reading had kept the generator's share
    # of the audio budget (every other caller waiting behind it), or the gateway's request
    # folder and admission, for as long as it liked.
    reader_stall_s: float = Field(30.0, gt=0, le=MAX_WAIT_S)
    # A single request's message must arrive within this long of its call (64 MiB at 1 MiB/s
    # and a minute's grace), else DEADLINE_EXCEEDED (REQUEST_TOO_SLOW), and what gRPC held of
    # it is let go; one still arriving after half a second counts as the largest message
    # among its caller's requests still arriving, which may hold peer.max_bytes
    # (serving.RequestArrival).
    max_arrival_s: float = Field(124.0, gt=0, le=MAX_WAIT_S)
    delivery: DeliveryLimit = DeliveryLimit()
    peer: PeerLimit = PeerLimit()
    # A connection that carries no request for this long is closed (a client's channel
    # connects again when it next calls): twenty thousand held open, idle, had taken every
    # file descriptor the process had, and every caller was refused until they went. A cap on
    # connections per address belongs to the proxy in front.
    max_connection_idle_s: float = Field(300.0, gt=0, le=MAX_WAIT_S)
    # A client may ping (HTTP/2 keepalive) this often on a quiet call: gRPC's default of five
    # minutes had ended a Score that sent nothing for 50 s (waiting for a turn, or for the
    # analysis) with UNAVAILABLE "Too many pings", at the 10 s that Go and Java clients and
    # many proxies ping at. Pings more often than this end the connection as before.
    min_client_ping_interval_s: float = Field(5.0, gt=0, le=MAX_WAIT_S)
    # The Prometheus endpoint: a scrape's request must come within metrics_timeout_s, and at
    # most metrics_max_connections are served at once (more are closed). Each had held a
    # thread for good: a thousand requests never finished held a thousand threads, and
    # closed at once each rendered the metrics, holding the services' event loop for seconds
    # (the gateway reported NOT_SERVING).
    metrics_timeout_s: float = Field(10.0, gt=0, le=MAX_WAIT_S)
    metrics_max_connections: int = Field(8, ge=1)
    # Ray Serve health checks fail while this file exists (an operator's switch to recycle
    # replicas, and how tests check that Serve replaces an unhealthy one); None = no switch.
    poison_file: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _over_the_defaults(cls, data: Any) -> Any:
        """`serving.<service>` changes that service's defaults key by key: a config naming
        only a host (as for TLS) had been refused for want of a port, and given one, had
        turned the metrics off."""
        if not isinstance(data, dict):
            return data
        changed = {
            name: {**DEFAULT_ENDPOINTS[name].model_dump(exclude_defaults=True), **value}
            for name, value in data.items()
            if name in DEFAULT_ENDPOINTS and isinstance(value, dict)
        }
        return {**data, **changed}


class RequestLimits(StrictModel):
    """What one request may hold and ask for, checked at every service's edge before any
    work (services/edge.py); a request over a limit is refused with the field's name."""

    # Any string not named below: tags, keys, structures, file names.
    max_name_chars: int = Field(255, ge=16)
    # Free text: prompts, captions.
    max_prompt_chars: int = Field(2000, ge=16)
    max_uri_chars: int = Field(4096, ge=64)
    # Genres, moods, instruments or negative tags in one list (each name at most once).
    max_tags: int = Field(16, ge=1)
    # Cuts or segments in one brief (a two-hour film cut every 0.4 s has 18,000).
    max_timeline_items: int = Field(20000, ge=1)
    # Any other list.
    max_list_items: int = Field(64, ge=1)
    max_reference_bytes: int = Field(16 * 1024 * 1024, gt=0)
    max_thumbnail_bytes: int = Field(1024 * 1024, gt=0)
    # Seeds are 0..max_seed (32-bit, as most generators take them).
    max_seed: int = Field(2**32 - 1, ge=0, le=2**62)
    # Seconds of music times candidates one request may ask for.
    max_music_s: float = Field(7200.0, gt=0)


class StudioConfig(StrictModel):
    """`bgm studio`: the web page."""

    host: str = "127.0.0.1"
    port: int = Field(8765, ge=0, le=65535)
    # Names (Host headers) the studio answers to beside its host's own and, on loopback,
    # localhost; others are refused (DNS rebinding). On every address (0.0.0.0) with none
    # given, it answers any: name those it is reached by.
    allowed_hosts: list[str] = Field(default_factory=list)
    # Uploads and results: each studio keeps a folder of its own in it, one folder per browser
    # session inside, removed when the studio stops.
    folder: Folder = Path(tempfile.gettempdir()) / "bgm-studio"
    # A session's videos and results are removed this long after its last request.
    keep_s: float = Field(24 * 3600.0, gt=0)
    max_upload_bytes: int = Field(4 * 1024**3, gt=0)
    # An upload (or a score request) from which nothing comes for this long is refused (408).
    upload_stall_s: float = Field(60.0, gt=0, le=MAX_WAIT_S)
    # On SIGTERM, requests in flight get this long (whole seconds) before the studio stops.
    grace_s: int = Field(30, ge=0, le=MAX_WAIT_S)
    # How long the gateway may take to say what its generator takes (Gateway.Describe: the
    # page's choices, and whether a score asks for MIDI).
    describe_timeout_s: float = Field(10.0, gt=0, le=MAX_WAIT_S)
    # A request's line and headers together: past this it is refused (431) as they arrive (an
    # 8 MB header had been read whole and answered).
    max_header_bytes: int = Field(64 * 1024, gt=0)
    # A request's line and headers must have come within this of the connection (or of its
    # last response); connections held open at once, per address and in all. Each connection
    # takes a file descriptor (an upload two): connections sending nothing, or their headers
    # a byte at a time, had taken every one. Behind a proxy its address is every visitor's:
    # set the per-address cap above its connection pool, or leave the cap to the proxy.
    header_timeout_s: float = Field(20.0, gt=0, le=MAX_WAIT_S)
    max_connections_per_address: int = Field(64, ge=1)
    max_connections: int = Field(2048, ge=1)
    # An upload (or a score request) must average this many bytes a second once
    # upload_stall_s has passed: one byte every 59 s had held its connection and file for good.
    min_upload_bytes_per_s: float = Field(1024.0, ge=0)
    # What one session may keep (its videos and results) and run at once: past them it is
    # refused until it removes something or a score ends (one visitor had filled the disk).
    max_session_bytes: int = Field(16 * 1024**3, gt=0)
    max_session_items: int = Field(100, ge=1)  # videos and scores
    # Failed scores a session keeps to show (the newest); they count as no item.
    max_failed_scores: int = Field(16, ge=1)
    max_running_scores: int = Field(2, ge=1)
    # What one address may hold in all the sessions it made (a session is made by its first
    # upload or sample), and how many: a visitor who dropped the cookie for a new session
    # each had filled the disk (every other visitor's upload refused for a day).
    max_address_bytes: int = Field(16 * 1024**3, gt=0)
    max_sessions_per_address: int = Field(32, ge=1)
    # Scores running at once for one address, whatever its sessions: a visitor who drops the
    # cookie gets a new session, and the gateway counts the whole studio as one client.
    max_running_scores_per_address: int = Field(4, ge=1)
    # The studio's calls to the gateway at once, every visitor's together: scores, and
    # analyses (each address's one at a time). The gateway counts the whole studio as one
    # client, so the two add up to at most its gateway.max_requests_per_client (8); past them
    # a call waits its turn, the addresses taking turns. Two visitors' scores had taken all
    # eight places, and a third visitor's timeline and score were refused in another
    # client's words ("this client already has 8 requests running").
    max_gateway_scores: int = Field(6, ge=1)
    max_gateway_analyses: int = Field(2, ge=1)
    # Event streams (a score's progress) one session holds open at once.
    max_event_streams: int = Field(16, ge=1)
    # The studio takes no upload and starts no score while its disk has less free than this
    # (a visitor who drops the cookie starts a new session, with a quota of its own).
    min_free_bytes: int = Field(2 * 1024**3, ge=0)


class BgmConfig(StrictModel):
    limits: RequestLimits = RequestLimits()
    auth: AuthConfig = AuthConfig()
    tagger: TaggerConfig = TaggerConfig()
    generator: GeneratorConfig = GeneratorConfig()
    gateway: GatewayConfig = GatewayConfig()
    serving: ServingConfig = ServingConfig()
    studio: StudioConfig = StudioConfig()


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML whose mappings name each key once: a section given twice had silently replaced
    the first."""


def _mapping_of_unique_keys(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict:
    seen = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<`: merged keys may be replaced
            continue
        key = loader.construct_object(key_node)
        if not isinstance(key, Hashable):
            continue  # refused by construct_mapping, as YAML refuses it
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"{key!r} is given twice", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_of_unique_keys
)


def load_config(path: str | Path | None = None) -> BgmConfig:
    """Read the config file named by `path` or BGM_CONFIG; defaults when neither is set."""
    path = path or os.environ.get("BGM_CONFIG")
    if not path:
        return BgmConfig()
    file = Path(path)
    check_regular_file(file, "config file")
    try:
        data = yaml.load(file.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader) or {}
        return BgmConfig.model_validate(data)
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {_yaml_problem(error)}") from None
    except ValidationError as error:
        raise ConfigError(f"config file {path}: {_problems(error)}") from None


def _yaml_problem(error: yaml.YAMLError) -> str:
    """What is wrong, and where, on one line (PyYAML's own spans five, quoting the file)."""
    if not isinstance(error, yaml.MarkedYAMLError) or error.problem_mark is None:
        return str(error)
    mark = error.problem_mark
    return f"{error.problem} (line {mark.line + 1}, column {mark.column + 1})"


def _problems(error: ValidationError) -> str:
    """Each problem as `section.key: what is wrong (got value)`, on one line."""
    problems = []
    for problem in error.errors(include_url=False):
        where = ".".join(str(part) for part in problem["loc"]) or "the file"
        scalar = problem["loc"] and not isinstance(problem.get("input"), dict | list)
        got = f" (got {problem['input']!r:.40})" if scalar and "input" in problem else ""
        problems.append(f"{where}: {problem['msg']}{got}")
    return "; ".join(problems)
