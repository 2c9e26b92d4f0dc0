"""SONIQUE's generator through stable-audio-tools: its model config (`best_model.json`) and
checkpoint from a local folder, sampled as its inference code samples.

SONIQUE (github.com/zxxwxyyy/sonique) is a stable-audio-tools `diffusion_cond` model: a 1-D
U-Net (`adp_cfg_1d`) over the latents of a DAC-style autoencoder, conditioned on CLAP text
features (laion-clap's RoBERTa branch) and on timing (`seconds_start`, `seconds_total`); mono
44.1 kHz, 1048576 samples (23.8 s) a call. stable-audio-tools cannot share the project's
environment (its k-diffusion needs a torchvision built for the torch it runs on), so this
family runs in its own environment and image (docs/generators.md, "SONIQUE"); in the main
one, loading a SONIQUE folder says so.

The folder holds what SONIQUE's code reads, plus the hub files laion-clap asks for by name:
    best_model.json              the model config (or model_config.json)
    best_model.ckpt              its weights ({"state_dict": ...}, or .safetensors)
    ckpts/clap/clap.ckpt         the CLAP checkpoint, where the config's clap_ckpt_path says
                                 (a relative path is taken from this folder)
    hf-cache/                    roberta-base (CLAP's text branch) and the bert-base-uncased
                                 and facebook/bart-base tokenizers, as huggingface_hub's cache
                                 holds them (optional when the process's own cache has them)
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from services.errors import ConfigError
from services.generator.backends.diffusion.adapters import RenderRequest, StepCallback

CONFIG_FILES = ("best_model.json", "model_config.json")
# What laion-clap loads from the hub by name: its text branch (config and weights) and the
# three tokenizers its data module builds on import.
HUB_FILES = {
    "roberta-base": ("config.json", "vocab.json", "merges.txt"),
    "bert-base-uncased": ("vocab.txt",),
    "facebook/bart-base": ("vocab.json", "merges.txt"),
}
HUB_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
INSTALL = (
    "SONIQUE runs in its own environment: ./dev.sh sonique (or the image "
    "deploy/docker/Dockerfile.sonique); docs/generators.md, SONIQUE"
)


def sonique_config(path: Path) -> Path | None:
    """The folder's stable-audio-tools model config, if it is such a folder."""
    return next((path / name for name in CONFIG_FILES if (path / name).is_file()), None)


def load_sonique(config_file: Path, device: str, dtype: Any) -> SoniqueAdapter:
    """The stable-audio-tools model whose config is `config_file`, behind its adapter, or a
    clear ConfigError."""
    path = config_file.parent
    try:
        config = json.loads(config_file.read_text())
        model_type = config["model_type"]
        sample_size, sample_rate = int(config["sample_size"]), int(config["sample_rate"])
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"{config_file} is not a stable-audio-tools model config") from None
    if model_type != "diffusion_cond":
        raise ConfigError(f"{path} holds a stable-audio-tools {model_type} model; supported: "
                          "diffusion_cond (SONIQUE)")  # fmt: skip
    checkpoint = _checkpoint(path, config_file)
    has_clap = _resolve_clap(path, config)
    try:
        import k_diffusion  # noqa: F401
        from stable_audio_tools.models.factory import create_model_from_config
        from stable_audio_tools.models.utils import load_ckpt_state_dict
    except ImportError as error:
        raise ConfigError(f"{path} is a SONIQUE model, which needs stable-audio-tools "
                          f"({error}). {INSTALL}") from None  # fmt: skip
    with offline_hub(path / "hf-cache", check=has_clap):
        # stable-audio-tools checks its configs with asserts.
        try:
            model = create_model_from_config(config)
        except (AssertionError, KeyError, TypeError, ValueError, NotImplementedError) as error:
            raise ConfigError(f"{config_file} does not build a model: {error!r}") from None
    try:
        state = load_ckpt_state_dict(str(checkpoint))
    except Exception as error:  # torch.load and safetensors raise many kinds; all mean this
        raise ConfigError(f"{checkpoint} is damaged or not a stable-audio-tools checkpoint: "
                          f"{error!r}") from None  # fmt: skip
    _load_weights(model, state, checkpoint)
    if model.diffusion_objective != "v":
        raise ConfigError(f"{path}: a {model.diffusion_objective} model; SONIQUE's sampler "
                          "is for v-objective models")  # fmt: skip
    model.to(device, dtype).eval().requires_grad_(False)
    timing = {c.get("id"): c.get("config", {}).get("max_val", 512) for c in _conditioners(config)}
    return SoniqueAdapter(model, sample_size, sample_rate, device,
                          max_seconds=float(timing.get("seconds_total", 512)))  # fmt: skip


def _checkpoint(path: Path, config_file: Path) -> Path:
    """The weights beside the config: named like it, else the folder's only checkpoint."""
    for suffix in (".ckpt", ".safetensors"):
        if config_file.with_suffix(suffix).is_file():
            return config_file.with_suffix(suffix)
    found = sorted([*path.glob("*.ckpt"), *path.glob("*.safetensors")])
    if len(found) != 1:
        raise ConfigError(f"{path} needs one checkpoint beside {config_file.name} "
                          f"({config_file.stem}.ckpt or .safetensors); found "
                          f"{', '.join(f.name for f in found) or 'none'}")  # fmt: skip
    return found[0]


def _conditioners(config: dict[str, Any]) -> list[dict[str, Any]]:
    return list(config.get("model", {}).get("conditioning", {}).get("configs", []))


def _resolve_clap(path: Path, config: dict[str, Any]) -> bool:
    """Each CLAP conditioner's checkpoint path, taken from the folder when relative (SONIQUE's
    config names ./ckpts/clap/clap.ckpt), checked before anything is built; whether there is
    one."""
    found = False
    for conditioner in _conditioners(config):
        if conditioner.get("type") not in ("clap_text", "clap_audio"):
            continue
        named = Path(conditioner.get("config", {}).get("clap_ckpt_path", ""))
        clap = named if named.is_absolute() else path / named
        if not named.name or not clap.is_file():
            raise ConfigError(f"{path}: the CLAP checkpoint {named} is missing (expected at "
                              f"{clap})")  # fmt: skip
        conditioner["config"]["clap_ckpt_path"] = str(clap)
        found = True
    return found


@contextlib.contextmanager
def offline_hub(cache: Path, check: bool) -> Iterator[None]:
    """Offline, with the folder's hub cache if it has one: laion-clap asks the hub for its
    text branch and tokenizers by name, and nothing may be downloaded at run time."""
    from huggingface_hub import constants, try_to_load_from_cache

    saved = constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE
    if cache.is_dir():
        constants.HF_HUB_CACHE = str(cache)
    constants.HF_HUB_OFFLINE = True
    try:
        missing = _missing_hub_files(try_to_load_from_cache) if check else []
        if missing:
            raise ConfigError(f"CLAP's text encoder needs these Hugging Face files in "
                              f"{constants.HF_HUB_CACHE}: {', '.join(missing)} (download them "
                              "where there is a network, e.g. `hf download roberta-base`, and "
                              "copy the cache into the model folder as hf-cache/)")  # fmt: skip
        yield
    finally:
        constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE = saved


def _missing_hub_files(cached: Any) -> list[str]:
    """HUB_FILES and roberta-base's weights that the hub cache lacks."""
    missing = [f"{repo}/{name}" for repo, names in HUB_FILES.items() for name in names
               if not isinstance(cached(repo, name), str)]  # fmt: skip
    if not any(isinstance(cached("roberta-base", weights), str) for weights in HUB_WEIGHTS):
        missing.append("roberta-base/model.safetensors")
    return missing


def _load_weights(model: Any, state: dict[str, Any], checkpoint: Path) -> None:
    """stable-audio-tools' copy_state_dict, which skips what does not fit; here every weight
    of the model must come from the checkpoint, or the folder is refused."""
    from stable_audio_tools.models.utils import copy_state_dict

    own = model.state_dict()
    missing = [k for k, v in own.items() if k not in state or state[k].shape != v.shape]
    if missing:
        raise ConfigError(f"{checkpoint} does not fit its model config: {len(missing)} of "
                          f"{len(own)} weights missing or of another shape (first: "
                          f"{missing[0]})")  # fmt: skip
    copy_state_dict(model, state)


class SoniqueAdapter:
    """A stable-audio-tools diffusion_cond model sampled as SONIQUE's inference does
    (sonique/interface/gradio.py generate_cond's defaults, which its CLI uses)."""

    family = "sonique"
    default_steps = 300
    default_guidance = 6.0
    takes_initial_audio = True
    SIGMA_MIN = 0.03
    SIGMA_MAX = 50.0
    CFG_RESCALE = 0.4
    # Its init_noise_level: the sigma initial audio is noised to (1.0 keeps much of it).
    INIT_NOISE_LEVEL = 1.0

    def __init__(
        self, model: Any, sample_size: int, sample_rate: int, device: str, max_seconds: float
    ):
        self.model = model
        self.device = device
        self._sample_size = sample_size
        self._sample_rate = sample_rate
        # The longest track its timing conditioning knows (seconds_total's max_val).
        self._max_seconds = max_seconds

    @property
    def window_s(self) -> float:
        return self._sample_size / self._sample_rate

    @property
    def max_window_s(self) -> float:
        # Every call makes the model's training length; the timing conditioning says how much
        # of it is music.
        return self.window_s

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    def prompt(
        self,
        genres: list[str],
        moods: list[str],
        instruments: list[str],
        bpm: float,
        key: str,
        intensity: str,
        free_text: str,
    ) -> str:
        # SONIQUE's tag form: "instruments, genres, tempo" with moods as its LLM writes them,
        # lowercased as its code does; no key (its tags have none).
        tags = [*instruments, *genres, *moods, intensity, f"{round(bpm)} bpm"]
        return ", ".join(p for p in [free_text, *tags] if p).lower()

    def batch_key(self, request: RenderRequest) -> tuple[object, ...]:
        # A negative prompt replaces the unconditional half of guidance for the whole call.
        return (request.initial_audio is None, bool(request.negative_prompt))

    def _timing(self, request: RenderRequest) -> dict[str, int]:
        """Where the window lies in the piece, as SONIQUE's timing conditioning says it (0 and
        the length for a piece of one window, as its code does). Past the longest track it
        knows, a window keeps its role: the first starts the track, the last ends it, the
        others lie in its middle."""
        start, total, window = request.start_s, request.piece_s, request.seconds
        if total > self._max_seconds:
            total = self._max_seconds
            if start + window >= request.piece_s - 1e-6:
                start = total - window
            elif start > 0:
                start = (total - window) / 2
        return {"seconds_start": round(start), "seconds_total": round(total)}

    def _conditioning(self, requests: list[RenderRequest], negative: bool) -> dict[str, Any]:
        model = self.model
        dtype = next(model.model.parameters()).dtype
        rows = [{"prompt": (r.negative_prompt if negative else r.prompt).lower(),
                 **self._timing(r)} for r in requests]  # fmt: skip
        inputs = model.get_conditioning_inputs(model.conditioner(rows, self.device),
                                               negative=negative)  # fmt: skip
        return {k: v.type(dtype) if v is not None and v.is_floating_point() else v
                for k, v in inputs.items()}  # fmt: skip

    def _draws(self, request: RenderRequest) -> tuple[Any, Any, int]:
        """The request's random draws, in the order stable-audio-tools' generate_diffusion_cond
        makes them from torch's generator seeded with its seed: the noise, the VAE's sample of
        the initial audio's latents, the SDE sampler's Brownian seed. One request gives what
        SONIQUE's code gives for that seed; in a batch, each its own (that code seeds once per
        call), and nobody else's use of torch's generator is disturbed."""
        import torch
        from stable_audio_tools.inference.utils import prepare_audio

        model, pretransform = self.model, self.model.pretransform
        frames = self._sample_size // pretransform.downsampling_ratio
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(request.seed)
            noise = torch.randn([1, model.io_channels, frames])
            start = None
            if request.initial_audio is not None:
                audio = prepare_audio(
                    torch.from_numpy(np.ascontiguousarray(np.asarray(request.initial_audio).T)),
                    self.sample_rate, self.sample_rate, self._sample_size,
                    pretransform.io_channels, self.device)  # fmt: skip
                start = pretransform.encode(audio.to(next(pretransform.parameters()).dtype))
            brownian_seed = int(torch.randint(0, 2**63 - 1, []).item())
        return noise, start, brownian_seed

    def render(
        self, requests: list[RenderRequest], steps: int, guidance: float, on_step: StepCallback
    ) -> list[np.ndarray]:
        import k_diffusion as K
        import torch

        model = self.model
        pretransform = model.pretransform
        dtype = next(model.model.parameters()).dtype
        with torch.no_grad():
            noises, starts, brownian_seeds = zip(*map(self._draws, requests), strict=True)
            noise = torch.cat(noises).to(self.device, dtype)
            inputs = self._conditioning(requests, negative=False)
            if requests[0].negative_prompt:
                inputs |= self._conditioning(requests, negative=True)
            sigma_max = self.SIGMA_MAX if starts[0] is None else self.INIT_NOISE_LEVEL
            # stable-audio-tools' sample_k for its dpmpp-2m-sde sampler (rho 1), with one
            # Brownian tree per waveform.
            sigmas = K.sampling.get_sigmas_polyexponential(steps, self.SIGMA_MIN, sigma_max,
                                                           1.0, device=self.device)  # fmt: skip
            x = noise * sigmas[0]
            if starts[0] is not None:
                x = torch.cat(starts).to(dtype) + x
            brownian = K.sampling.BrownianTreeNoiseSampler(
                x, sigmas[sigmas > 0].min(), sigmas.max(), seed=list(brownian_seeds))  # fmt: skip
            sampled = K.sampling.sample_dpmpp_2m_sde(
                K.external.VDenoiser(model.model), x, sigmas, disable=True,
                callback=lambda info: on_step(info["i"] + 1, steps), noise_sampler=brownian,
                extra_args={**inputs, "cfg_scale": guidance, "batch_cfg": True,
                            "rescale_cfg": True, "scale_phi": self.CFG_RESCALE})  # fmt: skip
            decoded = pretransform.decode(sampled.to(next(pretransform.parameters()).dtype))
        waveforms = decoded.float().cpu().numpy()
        results = []
        for request, waveform in zip(requests, waveforms, strict=True):
            music = waveform[:, : round(request.seconds * self.sample_rate)].T
            # Mono models give both channels the same signal (np.repeat copies: contiguous).
            results.append(np.repeat(music, 2 // music.shape[1], axis=1))
        return results
