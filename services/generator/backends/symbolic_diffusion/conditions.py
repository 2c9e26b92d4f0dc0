"""Diff-BGM's conditions made from our side of the platform: per-beat visual features from a
CLIP image model and per-beat caption features from a BERT encoder, both loaded from local
folders (transformers), and placed on the plan's beats.

Diff-BGM's dataset stretches a video's frame features uniformly over the music's beats
(`floor(i * frames / beats)`); here each beat takes the features of the video segment it
sounds in (its thumbnail, its caption), which is the same resampling on a timeline that knows
where the cuts are. Its repository does not say how captions were pooled; we take BERT's
[CLS] token."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from services.domain import Segment
from services.errors import ConfigError
from services.generator.backends.symbolic_diffusion.checkpoint import BEATS_PER_WINDOW, CAPTION_DIM
from services.local_models import from_files, load_model, model_kind

MAX_CAPTION_TOKENS = 64


class ConditionEncoders:
    """The CLIP image model and the BERT text model, loaded once per replica."""

    def __init__(self, image_model: Path | None, text_model: Path | None, d_cond: int,
                 device: str, dtype: torch.dtype):  # fmt: skip
        from transformers import (
            AutoModel,
            AutoTokenizer,
            CLIPImageProcessor,
            CLIPVisionModelWithProjection,
        )

        self.device, self.dtype = device, dtype
        image_path, _ = model_kind(
            image_model, backend="symbolic-diffusion", index="config.json", key="model_type",
            flag="generator.symbolic_diffusion.image_model_path (a CLIP model)",
            supported=("clip", "clip_vision_model"))  # fmt: skip
        text_path, _ = model_kind(
            text_model, backend="symbolic-diffusion", index="config.json", key="model_type",
            flag="generator.symbolic_diffusion.text_model_path (a BERT model)",
            supported=("bert",))  # fmt: skip
        self.processor = from_files(CLIPImageProcessor, image_path)
        self.tokenizer = from_files(AutoTokenizer, text_path)
        self.image = load_model(CLIPVisionModelWithProjection, image_path)
        self.text = load_model(AutoModel, text_path, add_pooling_layer=False)
        if self.image.config.projection_dim != d_cond:
            raise ConfigError(f"{image_path}: its image features have "
                              f"{self.image.config.projection_dim} dimensions; this Diff-BGM "
                              f"model takes {d_cond} (CLIP ViT-B/32's)")  # fmt: skip
        if self.text.config.hidden_size != CAPTION_DIM:
            raise ConfigError(f"{text_path}: its features have {self.text.config.hidden_size} "
                              f"dimensions; Diff-BGM's caption projection takes {CAPTION_DIM} "
                              "(BERT-base's)")  # fmt: skip
        for model in (self.image, self.text):
            model.eval().requires_grad_(False).to(device=device, dtype=dtype)
        self.d_cond = d_cond

    def segment_features(
        self, segments: Sequence[Segment], description: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per segment: its picture's CLIP features (zeros without a thumbnail) and its
        caption's (the brief's description where it has none) BERT features."""
        from PIL import Image

        with torch.inference_mode():
            pictures = [i for i, s in enumerate(segments) if s.thumbnail_jpeg]
            visual = torch.zeros(len(segments), self.d_cond)
            if pictures:
                images = [Image.open(io.BytesIO(segments[i].thumbnail_jpeg)).convert("RGB")
                          for i in pictures]  # fmt: skip
                pixels = self.processor(images=images, return_tensors="pt")["pixel_values"]
                embeds = self.image(pixel_values=pixels.to(self.device, self.dtype)).image_embeds
                visual[pictures] = embeds.float().cpu()
            texts = [s.caption or description for s in segments]
            tokens = self.tokenizer(texts, padding=True, truncation=True,
                                    max_length=MAX_CAPTION_TOKENS, return_tensors="pt")  # fmt: skip
            hidden = self.text(**tokens.to(self.device)).last_hidden_state[:, 0]
            return visual, hidden.float().cpu()


def per_beat(
    features: torch.Tensor, segments: Sequence[Segment], beat_times: Sequence[float]
) -> torch.Tensor:
    """(beats, dim): each beat takes its segment's features."""
    starts = np.array([s.start_s for s in segments])
    index = np.clip(np.searchsorted(starts, np.asarray(beat_times), side="right") - 1,
                    0, len(segments) - 1)  # fmt: skip
    return features[torch.as_tensor(index)]


def windows_of(beat_features: torch.Tensor, first_beats: Sequence[int]) -> torch.Tensor:
    """(windows, 32, dim): 32 beats from each first beat, zero-padded past the last beat (as
    its dataset pads the last window)."""
    dim = beat_features.shape[1]
    out = torch.zeros(len(first_beats), BEATS_PER_WINDOW, dim)
    for w, first in enumerate(first_beats):
        part = beat_features[first : first + BEATS_PER_WINDOW]
        out[w, : len(part)] = part
    return out
