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
        # Named by its key: a backend may take several (Diff-BGM's CLIP and BERT).
        raise ConfigError(f"{backend} model path {path} ({flag}) does not exist or is not a "
                          "folder")  # fmt: skip
    file = path / index
    if not file.is_file():
        raise ConfigError(f"{path} is not a {backend} model folder (no {index})")
    try:
        kind = json.loads(file.read_text())[key]
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"{file} is unreadable or has no {key}") from None
    if not isinstance(kind, str) or kind not in supported:
        raise ConfigError(f"{path} holds a {kind}; supported: {', '.join(sorted(supported))}")
    return path, str(kind)


def device_and_dtype(device: str, dtype: str, prefer_bf16: bool, key: str) -> tuple[str, Any]:
    """The torch device and dtype for config values ("auto" or a name; `key` names the
    device's): CUDA if available, else CPU; on CUDA bfloat16 where supported if
    `prefer_bf16`, else float16; float32 on CPU."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device.startswith("cuda"):
        # A GPU node's config on a CPU node had ended in a traceback from torch.
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(device.partition(":")[2] or 0)
        if index >= count:
            devices = f"{count or 'no'} CUDA device{'' if count == 1 else 's'}"
            raise ConfigError(f"{key} is {device}, but this machine has {devices}")
    if dtype != "auto":
        return device, getattr(torch, dtype)
    if not device.startswith("cuda"):
        return device, torch.float32
    if prefer_bf16 and torch.cuda.is_bf16_supported():
        return device, torch.bfloat16
    return device, torch.float16


def describe_error(error: BaseException) -> str:
    """A library's error on one line, its kind named (a bare "invalid header length" or
    "division by zero" says little about a model folder)."""
    said = " ".join(str(error).split())[:400]
    return f"{type(error).__name__}: {said}" if said else type(error).__name__


def from_files(loader: Any, folder: Path, **options: Any) -> Any:
    """`loader.from_pretrained` of `folder`'s own files (a tokenizer, a processor, a model, a
    pipeline), or a ConfigError naming the folder: the libraries raise many kinds of error
    for one damaged file."""
    try:
        return loader.from_pretrained(str(folder), local_files_only=True, **options)
    except Exception as error:
        raise ConfigError(f"{folder} is incomplete or damaged: {describe_error(error)}") from None


def load_model(model_class: Any, folder: Path, **options: Any) -> Any:
    """`model_class` from `folder` (`from_files`), with every weight its config asks for;
    else a ConfigError. The libraries fill a missing weight with random values and only log
    it (a config with a layer more than its weights had loaded without a word)."""
    model, info = from_files(model_class, folder, output_loading_info=True, **options)
    missing = sorted({*info.get("missing_keys", ()), *map(str, info.get("mismatched_keys", ()))})
    if missing:
        raise ConfigError(f"{folder} lacks weights its config asks for "
                          f"({len(missing)}: {', '.join(missing[:4])})")  # fmt: skip
    return model
