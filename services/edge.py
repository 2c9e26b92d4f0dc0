"""The one schema of limits every request meets at a service's edge, before any work.

Each service checks the message it receives here first: no file, folder or model call
happens for a request that breaks a limit. The schema is generic where it can be (every
string is bounded and free of control characters, every list is bounded, every float is
finite, every enum one its contract names) and names the fields that differ. The limits
themselves live in the typed config (`RequestLimits`). Messages name the field
(`controls.genres[2]`) and the limit, and quote at most a short excerpt of what was sent.

Meaning (is this a known genre, a valid key) is checked later by the domain code, which the
command line shares; this module only bounds shape and size.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from services.config import RequestLimits
from services.errors import InvalidInputError, ResourceExhaustedError

# How much of a refused value a message quotes.
EXCERPT_CHARS = 32
# Messages nest at most this deep (the contracts nest four levels).
MAX_DEPTH = 8
# Unicode's control characters (category Cc), matched in C: a character at a time in Python,
# a 42 MB request's captions held its server's event loop 2.3 s. Free text may hold line
# breaks and tabs.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
CONTROL_IN_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Characters that show nothing, or turn text round, in a name (a tag, a key, a file name):
# soft hyphen, zero-width space, direction marks, embeddings and overrides, line and
# paragraph separators, word joiner and invisible operators, isolates, byte-order mark. "rock"
# with a zero-width space had been refused as "unknown genre rock; did you mean rock?", and a
# right-to-left override turns a file name round where a message quotes it. (Prose may hold
# them; the joiners that emoji and some scripts need are allowed everywhere.)
INVISIBLE_IN_NAME = re.compile(
    "[\u00ad\u200b\u200e\u200f\u2028-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"
)


@dataclass(frozen=True)
class Rule:
    """What one field may hold; None = the default for its type."""

    max_chars: int | None = None
    # Newlines and tabs allowed (free text), other control characters never.
    text: bool = False
    max_items: int | None = None
    unique: bool = False
    max_bytes: int | None = None
    low: float | None = None
    high: float | None = None


DEFAULT_RULE = Rule()


def _rules(limits: RequestLimits) -> dict[str, Rule]:
    """Fields whose limits differ from their type's default, by full protobuf name."""
    tags = Rule(max_items=limits.max_tags, unique=True)
    prose = Rule(max_chars=limits.max_prompt_chars, text=True)
    uri = Rule(max_chars=limits.max_uri_chars)
    timeline = Rule(max_items=limits.max_timeline_items)
    seed = Rule(low=0, high=limits.max_seed)
    return {
        "bgm.v1.VideoSource.uri": uri,
        "bgm.v1.OutputOptions.output_uri": uri,
        "bgm.v1.UserControls.genres": tags,
        "bgm.v1.UserControls.moods": tags,
        "bgm.v1.UserControls.instruments": tags,
        "bgm.v1.UserControls.negative": tags,
        "bgm.v1.UserControls.prompt": prose,
        "bgm.v1.UserControls.seed": seed,
        "bgm.v1.UserControls.reference_audio": Rule(max_bytes=limits.max_reference_bytes),
        "bgm.v1.UserControls.candidates": Rule(low=0),
        "bgm.v1.AnalyzeRequest.prompt": prose,
        "bgm.v1.GatewayAnalyzeRequest.prompt": prose,
        "bgm.v1.MusicTags.genres": tags,
        "bgm.v1.MusicTags.moods": tags,
        "bgm.v1.MusicTags.instruments": tags,
        "bgm.v1.MusicTags.origins": Rule(max_items=4 * limits.max_tags),
        "bgm.v1.MusicBrief.segments": timeline,
        "bgm.v1.MusicBrief.cuts": timeline,
        "bgm.v1.MusicBrief.speech": timeline,
        "bgm.v1.SpeechInterval.start_s": Rule(low=0),
        "bgm.v1.SpeechInterval.end_s": Rule(low=0),
        "bgm.v1.UserControls.speech": Rule(max_chars=16),
        "bgm.v1.MusicBrief.negative": tags,
        "bgm.v1.MusicBrief.prompt": prose,
        "bgm.v1.MusicBrief.seed": seed,
        "bgm.v1.MusicBrief.reference_audio": Rule(max_bytes=limits.max_reference_bytes),
        "bgm.v1.MusicBrief.duration_s": Rule(low=0),
        "bgm.v1.Segment.caption": prose,
        "bgm.v1.Segment.moods": tags,
        "bgm.v1.Segment.thumbnail_jpeg": Rule(max_bytes=limits.max_thumbnail_bytes),
        "bgm.v1.Cut.time_s": Rule(low=0),
        "bgm.v1.Segment.start_s": Rule(low=0),
        "bgm.v1.Segment.end_s": Rule(low=0),
        "bgm.v1.GenerateRequest.candidates": Rule(low=0),
        "bgm.v1.OutputOptions.sample_rate": Rule(low=0),
        "bgm.v1.UploadHeader.size_bytes": Rule(low=0),
    }


class EdgeSchema:
    """Checks a request message against the limits; raises InvalidInputError naming the
    first field that breaks one."""

    def __init__(self, limits: RequestLimits):
        self.limits = limits
        self.rules = _rules(limits)

    def check(self, message: Message) -> None:
        self._message(message, "", 0)

    # Only the fields a message holds are walked (`ListFields`): a field left at its default
    # (0, "", empty) breaks no limit. A field's name is spelt out only in a refusal: a brief
    # at the limits holds 40,000 messages, and walking every field of each by name had cost
    # 0.68 s (now 0.16 s).
    def _message(self, message: Message, path: str, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise _refused(path, f"nested deeper than {MAX_DEPTH} levels")
        for field, value in message.ListFields():
            rule = self.rules.get(field.full_name, DEFAULT_RULE)
            if field.is_repeated:
                self._items(field, rule, _named(path, field.name), value, depth)
            elif field.type == FieldDescriptor.TYPE_MESSAGE:
                self._message(value, _named(path, field.name), depth + 1)
            elif field.type == FieldDescriptor.TYPE_ENUM:
                _check_enum(field, value, _named(path, field.name))
            else:
                problem = self._problem(rule, value)
                if problem is not None:
                    raise _refused(_named(path, field.name), problem)

    def _items(
        self, field: FieldDescriptor, rule: Rule, name: str, values: Sequence, depth: int
    ) -> None:
        most = rule.max_items or self.limits.max_list_items
        if len(values) > most:
            raise _refused(name, f"at most {most} items (got {len(values)})")
        if rule.unique and len(set(values)) < len(values):
            repeated = next(v for i, v in enumerate(values) if v in values[:i])
            raise _refused(name, f"{_excerpt(repeated)} is named more than once")
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            for index, value in enumerate(values):
                self._message(value, f"{name}[{index}]", depth + 1)
            return
        if field.type == FieldDescriptor.TYPE_ENUM:
            for index, value in enumerate(values):
                _check_enum(field, value, f"{name}[{index}]")
            return
        for index, value in enumerate(values):
            problem = self._problem(rule, value)
            if problem is not None:
                raise _refused(f"{name}[{index}]", problem)

    def _problem(self, rule: Rule, value: object) -> str | None:
        """What is wrong with a scalar value under `rule`, or None."""
        if isinstance(value, str):
            most = rule.max_chars or self.limits.max_name_chars
            if len(value) > most:
                return f"at most {most} characters (got {len(value)}: {_excerpt(value)})"
            bad = (CONTROL_IN_TEXT if rule.text else CONTROL).search(value)
            if bad is not None:
                return f"control character {bad.group()!r} is not allowed"
            hidden = None if rule.text else INVISIBLE_IN_NAME.search(value)
            if hidden is not None:
                return f"invisible character U+{ord(hidden.group()):04X} is not allowed"
            return None
        if isinstance(value, bytes):
            if rule.max_bytes is not None and len(value) > rule.max_bytes:
                return f"at most {rule.max_bytes} bytes (got {len(value)})"
            return None
        if isinstance(value, float) and not math.isfinite(value):
            return f"must be a finite number (got {value})"
        if isinstance(value, int | float) and not isinstance(value, bool):
            if rule.low is not None and value < rule.low:
                return f"must be at least {_figure(rule.low)} (got {_figure(value)})"
            if rule.high is not None and value > rule.high:
                return f"must be at most {_figure(rule.high)} (got {_figure(value)})"
        return None


def _check_enum(field: FieldDescriptor, value: int, name: str) -> None:
    """An enum's value is one its contract names (proto3 carries any number: a cut of kind
    99 had been played as a hard cut)."""
    enum = field.enum_type
    if value not in enum.values_by_number:
        valid = ", ".join(map(str, sorted(enum.values_by_number)))
        raise _refused(name, f"{value} is not a value of {enum.name} (valid: {valid})")


def _figure(value: float) -> str:
    """A whole number in full (a seed's 4294967296 is not 4.29497e+09), else as %g."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _named(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _excerpt(value: object) -> str:
    text = str(value)
    if len(text) <= EXCERPT_CHARS:
        return repr(text)
    return repr(text[:EXCERPT_CHARS]) + "..."


def _refused(field: str, text: str) -> InvalidInputError:
    """A field over a limit: the message starts with its name, the details name it too."""
    return InvalidInputError(f"{field}: {text}", field=field, error_reason="FIELD_LIMIT")


def audio_bytes(seconds: float, sample_rate: int) -> int:
    """What `seconds` of the audio the services pass between them take in memory: 32-bit
    stereo at `sample_rate`."""
    return math.ceil(seconds * sample_rate) * 2 * 4


def check_work(music_s: float, candidates: int, limits: RequestLimits, tracks: int = 1) -> None:
    """The total a request may ask for: seconds of music times candidates, times the tracks
    each piece holds (a stem, or the audio a diffusion piece starts from, is a track of the
    piece's length, as the mix is)."""
    total = music_s * max(candidates, 1) * tracks
    if total > limits.max_music_s:
        held = ("" if tracks == 1 else f" x {tracks} tracks each: the mix and its stems, or "
                "the audio it starts from")  # fmt: skip
        raise ResourceExhaustedError(
            f"the request asks for {total:.0f} s of audio ({music_s:.1f} s x "
            f"{max(candidates, 1)} candidate(s){held}); the limit is {limits.max_music_s:g} s",
            error_reason="TOO_MUCH_MUSIC",
        )
