"""Tokenizers for the tiny pipelines, built in memory from a small word list (no download)."""

from __future__ import annotations

from typing import Any

from services.generator.backends.diffusion.backend import INTENSITIES
from services.vocabulary import load_vocabulary


def _words() -> list[str]:
    vocabulary = load_vocabulary()
    return [*vocabulary.genres, *vocabulary.moods, *INTENSITIES, *vocabulary.instruments,
            *vocabulary.modes, "bpm", *"cdefgab", "#", ",", "music", "with", "and", "at",
            "in"]  # fmt: skip


# The tiny tokenizers' whole vocabulary: the words of the prompts the backend writes.
WORDS = _words()


def t5_tokenizer(max_length: int) -> Any:
    """A T5 tokenizer over WORDS (a Unigram model built here, no download)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import T5TokenizerFast  # type: ignore[attr-defined]

    specials = ["<pad>", "</s>", "<unk>"]
    pieces = [(w, 0.0) for w in specials] + [(w, -1.0) for w in WORDS]
    model = Tokenizer(models.Unigram(pieces, unk_id=2))
    model.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    model.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", 1)]
    )
    return T5TokenizerFast(
        tokenizer_object=model,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=max_length,
        extra_ids=0,
    )
