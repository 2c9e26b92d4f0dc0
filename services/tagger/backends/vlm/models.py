"""The vision-language models the `vlm` and `openai` tagger backends ask.

Both take frames grouped by segment and an instruction, and return the model's reply as text.
A local model loads through transformers' Auto classes with its own processor and chat
template; a served one is reached over its OpenAI-compatible chat API.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import cv2
import numpy as np

from services.config import OpenAiVlmConfig, VlmConfig
from services.errors import ConfigError, UnavailableError
from services.local_models import device_and_dtype, from_files, load_model, model_kind
from services.tagger.backends.vlm.answer import ANSWER_SCHEMA

# config.json model_type -> family; the families tested here (tiny models built from configs).
FAMILIES = {
    "qwen2_vl": "Qwen2-VL",
    "qwen2_5_vl": "Qwen2.5-VL",
    "idefics3": "SmolVLM (Idefics3)",
    "smolvlm": "SmolVLM2",
}


@dataclass(frozen=True)
class SegmentFrames:
    """Frames from one segment, and how the model is told which segment they show."""

    label: str
    frames: list[np.ndarray]


class VisionLanguageModel(Protocol):
    # What the analysis reports as the model.
    name: str

    def answer(
        self, segments: list[SegmentFrames], instruction: str, heartbeat: Callable[[], None]
    ) -> str:
        """The model's reply to the frames, in order, then the instruction; `heartbeat` is
        called while it works (it raises to cancel)."""
        ...


def _user_content(
    segments: list[SegmentFrames],
    instruction: str,
    image: Callable[[np.ndarray], dict[str, Any]],
) -> list[dict[str, Any]]:
    """A chat message's content: each segment's label and frames (as `image` makes them), in
    order, then the instruction."""
    content: list[dict[str, Any]] = []
    for segment in segments:
        content.append({"type": "text", "text": segment.label})
        content.extend(image(frame) for frame in segment.frames)
    content.append({"type": "text", "text": instruction})
    return content


class _ImageTextModel(Protocol):
    """What the tagger uses of a transformers image-text-to-text model. It is typed against
    this, not transformers' annotations of its Auto classes, which change between releases
    (5.23 annotated `generate` so that mypy refused the call, 5.24 did not)."""

    device: Any
    dtype: Any

    def to(self, device: str) -> Any: ...

    def generate(self, **inputs: Any) -> Any: ...


class LocalVlm:
    """A transformers image-text-to-text model from a local folder, loaded once."""

    def __init__(self, config: VlmConfig):
        path, family = _checked_folder(config.model_path)
        import torch
        import transformers

        transformers.utils.logging.disable_progress_bar()
        allow_qwen_processors_without_torchvision()
        self.config = config
        self._torch = torch
        device, dtype = device_and_dtype(
            config.device, config.dtype, prefer_bf16=True, key="tagger.vlm.device"
        )
        self.processor = from_files(transformers.AutoProcessor, path)
        self.model = cast(
            _ImageTextModel,
            load_model(transformers.AutoModelForImageTextToText, path, dtype=dtype),
        )
        self.model.to(device).eval()
        self.name = f"{family} at {path}"

    def answer(
        self, segments: list[SegmentFrames], instruction: str, heartbeat: Callable[[], None]
    ) -> str:
        from PIL import Image
        from transformers import StoppingCriteria, StoppingCriteriaList

        torch = self._torch

        class EveryToken(StoppingCriteria):
            """Never stops generation itself: hears a cancel between tokens."""

            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                heartbeat()
                return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

        content = _user_content(
            segments, instruction, lambda frame: {"type": "image", "image": Image.fromarray(frame)}
        )
        inputs = self.processor.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=True,
            return_dict=True, return_tensors="pt",
        ).to(self.model.device, dtype=self.model.dtype)  # fmt: skip
        with self._torch.inference_mode():
            output = self.model.generate(
                **inputs, max_new_tokens=self.config.max_new_tokens, do_sample=False,
                stopping_criteria=StoppingCriteriaList([EveryToken()]),
            )  # fmt: skip
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        return str(self.processor.batch_decode(new_tokens, skip_special_tokens=True)[0])


def allow_qwen_processors_without_torchvision() -> None:
    """transformers' Qwen VL processors always carry a video processor, which needs
    torchvision; the tagger sends images only, so where torchvision is missing the processors
    are built and loaded without their video part."""
    from transformers import Qwen2_5_VLProcessor, Qwen2VLProcessor
    from transformers.processing_utils import ProcessorMixin
    from transformers.utils import is_torchvision_available

    if is_torchvision_available():
        return

    def attributes(cls: type) -> list[str]:
        every = ProcessorMixin.get_attributes.__func__(cls)  # type: ignore[attr-defined]
        return [name for name in every if name != "video_processor"]

    for processor_class in (Qwen2VLProcessor, Qwen2_5_VLProcessor):
        processor_class.get_attributes = classmethod(attributes)  # type: ignore[method-assign,assignment]


def _checked_folder(path: Path | None) -> tuple[Path, str]:
    """The model folder and its family, or a ConfigError that says what is missing."""
    path, model_type = model_kind(
        path, backend="vlm", flag="--tagger-model PATH or tagger.vlm.model_path",
        index="config.json", key="model_type", supported=FAMILIES)  # fmt: skip
    processor_files = ("processor_config.json", "preprocessor_config.json")
    if not any((path / name).is_file() for name in processor_files):
        raise ConfigError(f"{path} has no processor (no processor_config.json or "
                          "preprocessor_config.json): save it beside the model")  # fmt: skip
    return path, FAMILIES[model_type]


class OpenAiVlm:
    """A VLM served behind an OpenAI-compatible chat API (vLLM, SGLang, Ollama)."""

    def __init__(self, config: OpenAiVlmConfig, frames: VlmConfig):
        if not config.base_url or not config.model:
            raise ConfigError("the openai tagger needs tagger.openai.base_url and "
                              "tagger.openai.model")  # fmt: skip
        self.config = config
        self.max_tokens = frames.max_new_tokens
        self.url = config.base_url.rstrip("/") + "/chat/completions"
        self.name = f"{config.model} at {config.base_url}"

    def answer(
        self, segments: list[SegmentFrames], instruction: str, heartbeat: Callable[[], None]
    ) -> str:
        # The request itself cannot be interrupted (its timeout bounds it); a cancel is
        # heard before it is sent.
        heartbeat()
        content = _user_content(
            segments,
            instruction,
            lambda frame: {"type": "image_url", "image_url": {"url": _data_url(frame)}},
        )
        body = {
            "model": self.config.model,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": self.max_tokens,
            "temperature": 0,
            # Servers that constrain decoding return exactly this shape.
            "response_format": {"type": "json_schema",
                                "json_schema": {"name": "video_music", "schema": ANSWER_SCHEMA}},
        }  # fmt: skip
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.config.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(self.url, json.dumps(body).encode(), headers)
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout_s) as response:
                reply = json.loads(response.read())
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")[:300]
            raise UnavailableError(
                f"the VLM server {self.url} answered HTTP {error.code}: {detail}"
            ) from None
        except (urllib.error.URLError, TimeoutError, OSError) as error:
            raise UnavailableError(f"the VLM server {self.url} is unreachable: {error}") from None
        except ValueError:
            raise UnavailableError(f"the VLM server {self.url} sent no JSON") from None
        try:
            return str(reply["choices"][0]["message"]["content"] or "")
        except (KeyError, IndexError, TypeError):
            raise UnavailableError(
                f"the VLM server {self.url} sent no chat completion: {str(reply)[:300]}"
            ) from None


def _data_url(rgb: np.ndarray) -> str:
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, 85])  # fmt: skip
    if not ok:
        raise ValueError("a frame could not be encoded as JPEG")
    return "data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode()
