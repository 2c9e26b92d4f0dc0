"""Tiny random diffusers audio pipelines, built from configs with no download, for tests and
benchmarks. They are saved with save_pretrained and then loaded exactly as a real checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# The tiny tokenizers' whole vocabulary: enough words for the prompts the backend writes.
WORDS = [
    "ambient",
    "cinematic",
    "orchestral",
    "electronic",
    "pop",
    "rock",
    "hip-hop",
    "lo-fi",
    "acoustic",
    "folk",
    "corporate",
    "calm",
    "peaceful",
    "dreamy",
    "melancholic",
    "dark",
    "mysterious",
    "tense",
    "warm",
    "nostalgic",
    "romantic",
    "happy",
    "uplifting",
    "playful",
    "energetic",
    "epic",
    "aggressive",
    "soft",
    "steady",
    "intense",
    "piano",
    "strings",
    "pads",
    "acoustic-guitar",
    "electric-guitar",
    "bass",
    "drums",
    "brass",
    "woodwinds",
    "synth",
    "plucks",
    "major",
    "minor",
    "bpm",
    "c",
    "d",
    "e",
    "f",
    "g",
    "a",
    "b",
    "#",
    ",",
    "music",
    "with",
    "and",
    "at",
    "in",
]


def _tokenizer(max_length: int) -> Any:
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


def stable_audio(folder: Path, window_s: float = 4.0, sample_rate: int = 8) -> Path:
    """A tiny StableAudioPipeline: `window_s` seconds a call at `sample_rate` Hz, stereo."""
    import torch
    from diffusers import (
        AutoencoderOobleck,
        CosineDPMSolverMultistepScheduler,
        StableAudioDiTModel,
        StableAudioPipeline,
        StableAudioProjectionModel,
    )
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(0)
    tokenizer = _tokenizer(max_length=64)
    text_encoder = T5EncoderModel(T5Config(
        vocab_size=len(tokenizer), d_model=8, d_kv=4, d_ff=16, num_layers=1, num_heads=2,
        relative_attention_num_buckets=4))  # fmt: skip
    hop = 2  # the VAE's downsampling: latent frames = samples / 2
    transformer = StableAudioDiTModel(
        sample_size=round(window_s * sample_rate / hop), in_channels=3, num_layers=2,
        attention_head_dim=4, num_key_value_attention_heads=2, out_channels=3,
        cross_attention_dim=4, time_proj_dim=8, global_states_input_dim=8,
        cross_attention_input_dim=4)  # fmt: skip
    scheduler = CosineDPMSolverMultistepScheduler(
        solver_order=2, prediction_type="v_prediction", sigma_data=1.0,
        sigma_schedule="exponential")  # fmt: skip
    vae = AutoencoderOobleck(
        encoder_hidden_size=6, downsampling_ratios=[1, hop], decoder_channels=3,
        decoder_input_channels=3, audio_channels=2, channel_multiples=[2, 4],
        sampling_rate=sample_rate)  # fmt: skip
    projection = StableAudioProjectionModel(text_encoder_dim=8, conditioning_dim=4,
                                            min_value=0, max_value=7200)  # fmt: skip
    pipeline = StableAudioPipeline(transformer=transformer, scheduler=scheduler, vae=vae,
                                   text_encoder=text_encoder, tokenizer=tokenizer,
                                   projection_model=projection)  # fmt: skip
    target = folder / "tiny-stable-audio"
    pipeline.save_pretrained(str(target))  # type: ignore[attr-defined]
    return target
