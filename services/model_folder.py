"""Checks on a local model folder, shared by the backends that load weights: clear errors
before any library call (whose own messages talk of hub repositories)."""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path

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
