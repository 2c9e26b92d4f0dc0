"""A tiny random SONIQUE folder: its best_model.json with the widths shrunk (same model type,
autoencoder, conditioners and U-Net as SONIQUE_CONFIG below), the weights and CLAP checkpoint
saved as its code reads them, and the hub files laion-clap asks for, as huggingface_hub's
cache holds them. Needs the SONIQUE environment (stable-audio-tools, laion-clap)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from services.generator.backends.diffusion.sonique import offline_hub

# The cache's commit for every tiny hub repository.
COMMIT = "0" * 40
# CLAP's text branch: RoBERTa-base's width (SONIQUE's conditioning is 768-wide), two layers.
ROBERTA: dict[str, Any] = {"hidden_size": 768, "num_hidden_layers": 2, "num_attention_heads": 2,
           "intermediate_size": 32, "max_position_embeddings": 80, "type_vocab_size": 1,
           "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2}  # fmt: skip


# SONIQUE's released best_model.json (github.com/zxxwxyyy/sonique), without its training
# section: what a real checkpoint is built from.
SONIQUE_CONFIG: dict[str, Any] = {
    "model_type": "diffusion_cond", "sample_size": 1048576, "sample_rate": 44100,
    "audio_channels": 1,
    "model": {
        "pretransform": {"type": "autoencoder", "iterate_batch": True, "config": {
            "encoder": {"type": "dac", "config": {"in_channels": 1, "latent_dim": 128,
                                                  "d_model": 128, "strides": [4, 4, 8, 8]}},
            "decoder": {"type": "dac", "config": {"out_channels": 1, "latent_dim": 64,
                                                  "channels": 1536, "rates": [8, 8, 4, 4]}},
            "bottleneck": {"type": "vae"}, "latent_dim": 64, "downsampling_ratio": 1024,
            "io_channels": 1}},
        "conditioning": {"configs": [
            {"id": "prompt", "type": "clap_text", "config": {
                "audio_model_type": "HTSAT-base", "enable_fusion": True,
                "clap_ckpt_path": "./ckpts/clap/clap.ckpt", "use_text_features": True,
                "feature_layer_ix": -2}},
            {"id": "seconds_start", "type": "int", "config": {"min_val": 0, "max_val": 512}},
            {"id": "seconds_total", "type": "int", "config": {"min_val": 0, "max_val": 512}},
        ], "cond_dim": 768},
        "diffusion": {"type": "adp_cfg_1d",
                      "cross_attention_cond_ids": ["prompt", "seconds_start", "seconds_total"],
                      "config": {
            "in_channels": 64, "context_embedding_features": 768,
            "context_embedding_max_length": 79, "channels": 256, "resnet_groups": 16,
            "kernel_multiplier_downsample": 2, "multipliers": [4, 4, 4, 5, 5],
            "factors": [1, 2, 2, 4], "num_blocks": [2, 2, 2, 2], "attentions": [1, 3, 3, 3, 3],
            "attention_heads": 16, "attention_multiplier": 4, "use_nearest_upsample": False,
            "use_skip_scale": True, "use_context_time": True}},
        "io_channels": 64,
    },
}  # fmt: skip


def tiny_config(sample_rate: int = 1024, window_s: float = 4.0) -> dict[str, Any]:
    """SONIQUE's config with the widths shrunk: a DAC-style VAE downsampling 8x to 4
    channels and a two-level U-Net; the conditioners exactly as SONIQUE's."""
    config = json.loads(json.dumps(SONIQUE_CONFIG))
    downsampling = 8
    # The U-Net halves its input twice: whole multiples of 4 latent frames.
    config["sample_size"] = round(window_s * sample_rate / (4 * downsampling)) * 4 * downsampling
    config["sample_rate"] = sample_rate
    model = config["model"]
    autoencoder = model["pretransform"]["config"]
    autoencoder["encoder"]["config"] |= {"latent_dim": 8, "d_model": 4, "strides": [2, 4]}
    autoencoder["decoder"]["config"] |= {"latent_dim": 4, "channels": 16, "rates": [4, 2]}
    autoencoder |= {"latent_dim": 4, "downsampling_ratio": downsampling}
    model["diffusion"]["config"] |= {
        "in_channels": 4, "channels": 32, "resnet_groups": 4, "multipliers": [1, 1, 1],
        "factors": [2, 2], "num_blocks": [1, 1], "attentions": [0, 1, 1], "attention_heads": 2,
        "attention_multiplier": 2}  # fmt: skip
    model["io_channels"] = 4
    return config


def sonique(
    folder: Path,
    window_s: float = 4.0,
    sample_rate: int = 1024,
    seed: int = 0,
    real_size: bool = False,
) -> Path:
    """A tiny SONIQUE folder in `folder`/tiny-sonique: `window_s` seconds a call, mono; with
    `real_size`, SONIQUE's own config with random weights (what a real checkpoint costs to
    run; the CLAP text branch stays tiny)."""
    import torch
    from stable_audio_tools.models.factory import create_model_from_config

    target = folder / "tiny-sonique"
    torch.manual_seed(seed)
    _hub_cache(target / "hf-cache")
    config = SONIQUE_CONFIG if real_size else tiny_config(sample_rate, window_s)
    clap = target / "ckpts" / "clap" / "clap.ckpt"
    with offline_hub(target / "hf-cache", check=True):
        _clap_checkpoint(clap)
        built = json.loads(json.dumps(config))
        built["model"]["conditioning"]["configs"][0]["config"]["clap_ckpt_path"] = str(clap)
        model = create_model_from_config(built)
    (target / "best_model.json").write_text(json.dumps(config, indent=2))
    torch.save({"state_dict": model.state_dict()}, target / "best_model.ckpt")
    return target


def _hub_cache(cache: Path) -> None:
    """roberta-base (tiny weights) and the three tokenizers laion-clap loads, over a byte-level
    vocabulary (every text encodes), in huggingface_hub's cache layout."""
    from tokenizers import pre_tokenizers
    from transformers import RobertaConfig, RobertaModel

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    vocab = {t: i for i, t in enumerate(specials + sorted(pre_tokenizers.ByteLevel.alphabet()))}
    for repo in ("roberta-base", "facebook/bart-base"):
        snapshot = _snapshot(cache, repo)
        (snapshot / "vocab.json").write_text(json.dumps(vocab))
        (snapshot / "merges.txt").write_text("#version: 0.2\n")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghijklmnopqrstuvwxyz0123456789,"]
    (_snapshot(cache, "bert-base-uncased") / "vocab.txt").write_text("\n".join(words) + "\n")
    RobertaModel(RobertaConfig(vocab_size=len(vocab), **ROBERTA)).save_pretrained(
        _snapshot(cache, "roberta-base"))  # fmt: skip


def _snapshot(cache: Path, repo: str) -> Path:
    folder = cache / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(COMMIT)
    snapshot = folder / "snapshots" / COMMIT
    snapshot.mkdir(parents=True, exist_ok=True)
    return snapshot


def _clap_checkpoint(path: Path) -> None:
    """A CLAP checkpoint as laion-clap's training writes it ({"epoch", "state_dict"} with
    DistributedDataParallel's "module." prefix), holding the text side SONIQUE uses."""
    import laion_clap
    import torch

    clap = laion_clap.CLAP_Module(enable_fusion=True, amodel="HTSAT-base", device="cpu")
    text = {f"module.{k}": v for k, v in clap.model.state_dict().items()
            if k.startswith(("text_branch.", "text_projection.", "text_transform."))}  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": 1, "state_dict": text}, path)
