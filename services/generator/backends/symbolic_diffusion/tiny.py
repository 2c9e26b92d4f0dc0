"""A tiny random Diff-BGM checkpoint folder and the tiny CLIP and BERT folders it needs, built
from configs with no download and saved in each project's own format, for tests and
benchmarks: they load through exactly the code a real checkpoint does."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from services.generator.backends.symbolic_diffusion.checkpoint import (
    CAPTION_DIM,
    DiffBgm,
    save_diffbgm,
)

# Diff-BGM's released params.json with the widths shrunk (same keys, same window).
TINY_PARAMS: dict[str, Any] = {
    "batch_size": 32, "max_epoch": 100, "learning_rate": 5e-05, "max_grad_norm": 10,
    "fp16": True, "num_workers": 4, "pin_memory": True, "in_channels": 2, "out_channels": 2,
    "channels": 32, "attention_levels": [3], "n_res_blocks": 1,
    "channel_multipliers": [1, 1, 2, 2],
    "n_heads": 2, "tf_layers": 1, "d_cond": 64, "linear_start": 0.00085, "linear_end": 0.012,
    "n_steps": 1000, "latent_scaling_factor": 0.18215, "img_h": 128, "img_w": 128,
    "cond_type": "c_v", "cond_mode": "mix", "use_enc": True, "chd_n_step": 32,
    "chd_input_dim": 36, "chd_z_input_dim": 512, "chd_hidden_dim": 512, "chd_z_dim": 512,
}  # fmt: skip
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "the", "music", "with", "piano",
         "city", "night", "car", "people", "walk", "run", "sea", "light", "dark", "calm",
         "happy", "sad", "and", "in", "on", "of", *"abcdefghijklmnopqrstuvwxyz"]  # fmt: skip


@dataclass(frozen=True)
class TinyDiffBgm:
    model: Path
    image_model: Path
    text_model: Path


def tiny_diffbgm(folder: Path, seed: int = 0, params: dict[str, Any] | None = None) -> TinyDiffBgm:
    """Random weights of `params` (the tiny ones by default), with a tiny CLIP whose
    features have d_cond dimensions and a tiny BERT of BERT-base's width."""
    params = params or TINY_PARAMS
    torch.manual_seed(seed)
    model = save_diffbgm(DiffBgm(params), params, folder / "diffbgm")
    return TinyDiffBgm(model, _clip(folder / "clip", params["d_cond"]), _bert(folder / "bert"))


def _clip(folder: Path, projection_dim: int) -> Path:
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                              num_attention_heads=2, image_size=32, patch_size=8,
                              projection_dim=projection_dim)  # fmt: skip
    CLIPVisionModelWithProjection(config).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
                       ).save_pretrained(folder)  # fmt: skip
    return folder


def _bert(folder: Path) -> Path:
    from transformers import BertConfig, BertModel, BertTokenizerFast  # type: ignore[attr-defined]

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    config = BertConfig(vocab_size=len(WORDS), hidden_size=CAPTION_DIM, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=128)  # fmt: skip
    BertModel(config, add_pooling_layer=False).save_pretrained(folder)
    return folder
