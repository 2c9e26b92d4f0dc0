"""Diff-BGM's checkpoint folder, as its training code writes it: `params.json` (the model's
hyper-parameters) and `chkpts/weights_best.pt` (`{"model": state_dict, "step", "epoch",
"optimizer", "scaler"}`), loaded strictly into the model written here."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from services.errors import ConfigError
from services.generator.backends.symbolic_diffusion.unet import UNetModel, unet_from_params
from services.local_models import describe_error

log = logging.getLogger("bgm")

# What params.json must hold for inference.
REQUIRED_PARAMS = (
    "in_channels", "out_channels", "channels", "attention_levels", "n_res_blocks",
    "channel_multipliers", "n_heads", "tf_layers", "d_cond", "linear_start", "linear_end",
    "n_steps", "img_h", "img_w", "cond_type",
)  # fmt: skip
# The window the model was trained on: 8 bars of 4/4, 16 steps a bar, 128 MIDI pitches.
STEPS_PER_WINDOW = 128
PITCHES = 128
STEPS_PER_BEAT = 4
BEATS_PER_WINDOW = STEPS_PER_WINDOW // STEPS_PER_BEAT
# Caption features: BERT-base's hidden size, projected to d_cond by `caption_enc`.
CAPTION_DIM = 768
# Modules older Diff-BGM training code attached to the model and saved with it, which
# inference never uses (the chord VAE, a visual encoder, Polyffusion's encoders).
UNUSED_PREFIXES = ("chord_enc.", "chord_dec.", "visual_enc.", "pnotree_enc.", "pnotree_dec.",
                   "txt_enc.")  # fmt: skip
# Condition types: which features condition the early (noisy) steps and which the late ones.
COND_TYPES = {"c_v": ("caption", "visual"), "v_c": ("visual", "caption"),
              "visual": ("visual", "visual"), "caption": ("caption", "caption")}  # fmt: skip
# Segments of the segment-aware attention in its released code (two 4-bar halves).
ATTENTION_SEGMENTS = 2


class LatentDiffusion(nn.Module):
    """The schedule (saved with the weights) and the denoiser, under the names its state
    dict uses (`ldm.alpha`, ..., `ldm.eps_model.*`)."""

    def __init__(self, eps_model: UNetModel, linear_start: float, linear_end: float, steps: int):
        super().__init__()
        self.eps_model = eps_model
        beta = torch.linspace(linear_start**0.5, linear_end**0.5, steps, dtype=torch.float64) ** 2
        alpha = 1.0 - beta
        self.register_buffer("alpha", alpha.float())
        self.register_buffer("beta", beta.float())
        self.register_buffer("alpha_bar", torch.cumprod(alpha, dim=0).float())
        # Saved under its own name too (its code aliases beta).
        self.register_buffer("sigma2", beta.float())


class DiffBgm(nn.Module):
    """Diff-BGM's model: the diffusion and the caption projection (768 -> d_cond)."""

    def __init__(self, params: dict[str, Any]):
        super().__init__()
        self.ldm = LatentDiffusion(unet_from_params(params, ATTENTION_SEGMENTS),
                                   params["linear_start"], params["linear_end"],
                                   params["n_steps"])  # fmt: skip
        self.caption_enc = nn.Linear(CAPTION_DIM, params["d_cond"])


@dataclass(frozen=True)
class LoadedDiffBgm:
    model: DiffBgm
    params: dict[str, Any]
    # Which features condition the steps above `switch_step`, and which the others.
    early: str
    late: str


def read_params(folder: Path) -> dict[str, Any]:
    file = folder / "params.json"
    if not file.is_file():
        hint = (" (a diffusers pipeline: use generator.backend diffusion)"
                if (folder / "model_index.json").is_file() else "")  # fmt: skip
        raise ConfigError(f"{folder} is not a Diff-BGM checkpoint folder (no params.json){hint}")
    try:
        params = json.loads(file.read_text())
    except ValueError as error:
        raise ConfigError(f"{file} is not JSON: {error}") from None
    if not isinstance(params, dict):
        raise ConfigError(f"{file} is not a Diff-BGM params file (expected an object)")
    missing = [key for key in REQUIRED_PARAMS if key not in params]
    if missing:
        raise ConfigError(f"{file} is not a Diff-BGM params file: it lacks {', '.join(missing)}")
    if (params["img_h"], params["img_w"]) != (STEPS_PER_WINDOW, PITCHES) or (
        params["in_channels"], params["out_channels"]) != (2, 2):  # fmt: skip
        raise ConfigError(f"{file}: Diff-BGM models take 2 x {STEPS_PER_WINDOW} x {PITCHES} "
                          f"piano rolls (got {params['in_channels']} x {params['img_h']} x "
                          f"{params['img_w']})")  # fmt: skip
    if params["cond_type"] not in COND_TYPES:
        raise ConfigError(f"{file}: cond_type {params['cond_type']!r} is not one of "
                          f"{', '.join(COND_TYPES)}")  # fmt: skip
    return params


def load_diffbgm(folder: Path, checkpoint: str, device: str, dtype: torch.dtype) -> LoadedDiffBgm:
    """The model in `folder`, strictly loaded, or a ConfigError saying what is missing or
    foreign."""
    if not folder.is_dir():
        raise ConfigError(f"Diff-BGM model path {folder} does not exist or is not a folder")
    params = read_params(folder)
    weights = folder / "chkpts" / checkpoint
    if weights.is_symlink() and not weights.exists():
        raise ConfigError(f"{weights} is a link that leads nowhere, or round")
    if not weights.is_file():
        found = sorted(p.name for p in (folder / "chkpts").glob("*.pt"))
        raise ConfigError(f"{folder} has no chkpts/{checkpoint}"
                          + (f" (it has {', '.join(found)})" if found else ""))  # fmt: skip
    try:
        saved = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds for a damaged or foreign file
        raise ConfigError(f"{weights} is not a readable torch checkpoint: {error}") from None
    state = saved.get("model", saved) if isinstance(saved, dict) else None
    if not isinstance(state, dict):
        raise ConfigError(f"{weights} holds no state dict")
    unused = [key for key in state if key.startswith(UNUSED_PREFIXES)]
    if unused:
        log.info("Diff-BGM checkpoint: %d weights of modules inference does not use are "
                 "skipped (%s)", len(unused),
                 ", ".join(sorted({k.split(".")[0] for k in unused})))  # fmt: skip
    state = {key: value for key, value in state.items() if key not in set(unused)}
    # Built without memory (sizes from params.json had been allocated before they were
    # compared with the checkpoint's: 800 GB for a large n_steps), then given its weights.
    try:
        with torch.device("meta"):
            model = DiffBgm(params)
    except Exception as error:  # a size of 0 or a string divides or multiplies deep in torch
        raise ConfigError(f"{folder / 'params.json'} does not describe a Diff-BGM model: "
                          f"{describe_error(error)}") from None  # fmt: skip
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as error:
        message = str(error).split("\n\t", 1)[-1][:600]
        raise ConfigError(f"{weights} does not match its params.json: {message}") from None
    model.eval().requires_grad_(False).to(device=device, dtype=dtype)
    early, late = COND_TYPES[params["cond_type"]]
    return LoadedDiffBgm(model, params, early, late)


def save_diffbgm(model: DiffBgm, params: dict[str, Any], folder: Path) -> Path:
    """Save as Diff-BGM's trainer does (for the tiny test models)."""
    (folder / "chkpts").mkdir(parents=True, exist_ok=True)
    (folder / "params.json").write_text(json.dumps(params))
    state = {key: value.cpu() for key, value in model.state_dict().items()}
    torch.save({"step": 0, "epoch": 0, "model": state, "optimizer": {}, "scaler": {}},
               folder / "chkpts" / "weights_best.pt")  # fmt: skip
    return folder
