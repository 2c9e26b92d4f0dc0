"""What every backend that loads weights from a local folder shares: checks on the folder
(clear errors before any library call, whose own messages talk of hub repositories), and the
device and precision to load onto."""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path
from typing import Any

from services.errors import ConfigError


def model_kind(
    path: Path | None,
    *,
    backend: str,
    flag: str,
    index: str,
    key: str,
    supported: Collection[str],
) -> tuple[Path, str]:
    """The folder and the kind of model its `index` file names under `key`, or a ConfigError
    saying what is wrong."""
    if path is None:
        raise ConfigError(f"the {backend} backend needs a model path ({flag})")
    if not path.is_dir():
        raise ConfigError(f"{backend} model path {path} does not exist or is not a folder")
    file = path / index
    if not file.is_file():
        raise ConfigError(f"{path} is not a {backend} model folder (no {index})")
    try:
        kind = json.loads(file.read_text())[key]
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"{file} is unreadable or has no {key}") from None
    if kind not in supported:
        raise ConfigError(f"{path} holds a {kind}; supported: {', '.join(sorted(supported))}")
    return path, str(kind)


def device_and_dtype(device: str, dtype: str, prefer_bf16: bool) -> tuple[str, Any]:
    """The torch device and dtype for config values ("auto" or a name): CUDA if available,
    else CPU; on CUDA bfloat16 where supported if `prefer_bf16`, else float16; float32 on
    CPU."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype != "auto":
        return device, getattr(torch, dtype)
    if not device.startswith("cuda"):
        return device, torch.float32
    if prefer_bf16 and torch.cuda.is_bf16_supported():
        return device, torch.bfloat16
    return device, torch.float16
