"""What the vision-language model is asked, what it should answer, and how its answer is read.

The model gets frames per segment and an instruction asking for JSON against ANSWER_SCHEMA.
Models do not always comply: the reader takes the first JSON object anywhere in the reply
(code fences, prose around it, trailing commas and Python-style quotes are tolerated), accepts
a string where a list was asked for, and refuses with UnusableAnswer when nothing usable is
there, so the backend can fall back to the picture's tags and say so.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from typing import Any

# The answer asked for; sent to servers that constrain decoding (OpenAI-compatible
# `response_format`), and spelled out in the instruction for every model.
ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "scene": {"type": "string"},
        "music": {"type": "string"},
        "genres": {"type": "array", "items": {"type": "string"}},
        "moods": {"type": "array", "items": {"type": "string"}},
        "instruments": {"type": "array", "items": {"type": "string"}},
        "segments": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "segment": {"type": "integer"},
                    "caption": {"type": "string"},
                    "moods": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["segment", "caption", "moods"],
            },
        },
    },
    "required": ["scene", "music", "genres", "moods", "instruments"],
}

# Other names models use for the fields.
_ALIASES = {
    "description": "scene",
    "scene_description": "scene",
    "music_description": "music",
    "soundtrack": "music",
    "genre": "genres",
    "style": "genres",
    "mood": "moods",
    "instrument": "instruments",
    "instrumentation": "instruments",
    "shots": "segments",
    "scenes": "segments",
}
_TAG_FIELDS = ("genres", "moods", "instruments")


class UnusableAnswer(ValueError):
    """The model's reply holds no answer that can be used; the message says why."""


@dataclass(frozen=True)
class SegmentCaption:
    # 0-based, as in the analysis.
    segment: int
    caption: str
    moods: list[str]


@dataclass(frozen=True)
class VlmAnswer:
    scene: str
    music: str
    genres: list[str]
    moods: list[str]
    instruments: list[str]
    segments: list[SegmentCaption]


def instruction(
    genres: list[str], moods: list[str], instruments: list[str], segments: int, captions: bool
) -> str:
    """The text that follows the frames."""
    caption_part = (
        f' and "segments": for each of the {segments} segments, {{"segment": its number, '
        '"caption": one sentence on what happens, "moods": 1-2 moods for its music}'
        if captions
        else ""
    )
    return (
        "These frames come from one video, grouped by segment (shot). Describe the scene and the "
        "background music that would fit it. Answer with one JSON object only, no other text, "
        'with the keys "scene" (one or two sentences on what the video shows), "music" (one '
        'sentence on the music that fits), "genres" (1-2), "moods" (1-3), "instruments" '
        f"(2-4){caption_part}. Prefer these words: genres "
        f"{', '.join(genres)}; moods {', '.join(moods)}; instruments {', '.join(instruments)}."
    )


def parse_answer(text: str, segment_count: int) -> VlmAnswer:
    """The answer in a model's reply, or UnusableAnswer."""
    data = _first_object(text)
    if data is None:
        raise UnusableAnswer("the model's answer holds no JSON object")
    fields = {_ALIASES.get(str(k).strip().lower(), str(k).strip().lower()): v
              for k, v in data.items()}  # fmt: skip
    tags = {name: _phrases(fields.get(name)) for name in _TAG_FIELDS}
    scene = _text(fields.get("scene"))
    music = _text(fields.get("music"))
    if not any(tags.values()) and not scene and not music:
        raise UnusableAnswer(
            "the model's JSON has none of the fields asked for (scene, music, genres, moods, "
            "instruments)"
        )
    return VlmAnswer(
        scene=scene,
        music=music,
        genres=tags["genres"],
        moods=tags["moods"],
        instruments=tags["instruments"],
        segments=_captions(fields.get("segments"), segment_count),
    )


def _first_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in `text` that parses, leniently."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        candidate = text[match.start() :]
        for attempt in (candidate, _repaired(candidate)):
            try:
                value, _ = decoder.raw_decode(attempt)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
        python_like = _balanced(candidate)
        if python_like is not None:
            try:
                value = ast.literal_eval(python_like)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                continue
            if isinstance(value, dict):
                return value
    return None


def _repaired(text: str) -> str:
    """Trailing commas removed (a common slip of small models)."""
    return re.sub(r",\s*([}\]])", r"\1", text)


def _balanced(text: str) -> str | None:
    """`text` up to the brace that closes its first one, or None."""
    depth = 0
    for index, character in enumerate(text):
        depth += {"{": 1, "}": -1}.get(character, 0)
        if depth == 0:
            return text[: index + 1]
    return None


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _phrases(value: Any) -> list[str]:
    """A list of short phrases from a list, or from a string of comma/slash/"and"-separated
    words."""
    if isinstance(value, str):
        items: list[Any] = re.split(r",|/|;|\band\b", value)
    elif isinstance(value, list):
        items = value
    else:
        return []
    phrases = [item.strip().strip(".").strip() for item in items if isinstance(item, str)]
    return list(dict.fromkeys(p for p in phrases if p))


def _captions(value: Any, segment_count: int) -> list[SegmentCaption]:
    if not isinstance(value, list):
        return []
    captions = []
    for position, item in enumerate(value):
        if not isinstance(item, dict):
            continue
        fields = {str(k).lower(): v for k, v in item.items()}
        number = fields.get("segment", fields.get("index", position + 1))
        # Models count segments from 1, as the instruction does.
        index = number - 1 if isinstance(number, int) else position
        if 0 <= index < segment_count:
            moods = _phrases(fields.get("moods", fields.get("mood")))
            captions.append(SegmentCaption(index, _text(fields.get("caption")), moods))
    return captions
