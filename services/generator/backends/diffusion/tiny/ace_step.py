"""A tiny random AceStepPipeline (ACE-Step 1.5's architecture), with the audio tokenizer that
its "cover" task (score-then-render) needs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from services.generator.backends.diffusion.tiny.words import WORDS

# ACE-Step 1.5 runs at 25 latent frames a second whatever the audio rate.
LATENTS_PER_SECOND = 25
ACOUSTIC_DIM = 8
SPECIALS = ["<unk>", "<|endoftext|>"]
# What the pipeline's own templates write around the caption, lyrics and metadata.
TEMPLATES = """
# Instruction # Caption # Metas # Languages # Lyric
Fill the audio semantic mask based on the given conditions:
Generate audio semantic tokens based on the given conditions:
- bpm: N/A - timesignature: - keyscale: - duration: seconds
[Instrumental] unknown en
"""


def _tokenizer() -> Any:
    """A word-level tokenizer over the templates and WORDS; digits one by one."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    text = (TEMPLATES + " " + " ".join(WORDS)).lower()
    words = [*SPECIALS]
    for token in [*re.findall(r"\w+|[^\w\s]", text), *"0123456789", *"#:-/|,.[]"]:
        if token not in words:
            words.append(token)
    model = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    model.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    model.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Whitespace(),
        pre_tokenizers.Punctuation(behavior="isolated"),
        pre_tokenizers.Digits(individual_digits=True),
    ])  # fmt: skip
    model.add_special_tokens(SPECIALS)
    return PreTrainedTokenizerFast(tokenizer_object=model, unk_token="<unk>",
                                   eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                                   padding_side="right", model_max_length=4096)  # fmt: skip


def ace_step(folder: Path, sample_rate: int = 200) -> Path:
    """A tiny AceStepPipeline at `sample_rate` Hz (a multiple of 25), stereo."""
    import torch
    from diffusers import AceStepPipeline, AutoencoderOobleck, FlowMatchEulerDiscreteScheduler
    from diffusers.models.transformers.ace_step_transformer import AceStepTransformer1DModel
    from diffusers.pipelines.ace_step.modeling_ace_step import (
        AceStepAudioTokenDetokenizer,
        AceStepAudioTokenizer,
        AceStepConditionEncoder,
    )
    from transformers import Qwen3Config, Qwen3Model

    if sample_rate % (2 * LATENTS_PER_SECOND):
        raise ValueError(f"sample_rate must be a multiple of {2 * LATENTS_PER_SECOND}")
    hop = sample_rate // LATENTS_PER_SECOND
    # Every stride even: an odd one makes Oobleck's decoder one sample short per frame.
    strides = [2, hop // 2] if hop % 4 else [2, 2, hop // 4]
    strides = [s for s in strides if s > 1] or [2]
    torch.manual_seed(0)
    tokenizer = _tokenizer()
    attention = dict(num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                     rope_theta=10000.0, sliding_window=16)  # fmt: skip
    text_encoder = Qwen3Model(Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None, tie_word_embeddings=True)).eval()  # fmt: skip
    transformer = AceStepTransformer1DModel(
        hidden_size=16, intermediate_size=32, num_hidden_layers=2, in_channels=3 * ACOUSTIC_DIM,
        audio_acoustic_hidden_dim=ACOUSTIC_DIM, patch_size=2, encoder_hidden_size=16,
        is_turbo=False, **attention)  # fmt: skip
    condition_encoder = AceStepConditionEncoder(
        hidden_size=16, intermediate_size=32, text_hidden_dim=16,
        timbre_hidden_dim=ACOUSTIC_DIM, num_lyric_encoder_hidden_layers=1,
        num_timbre_encoder_hidden_layers=1, **attention)  # fmt: skip
    # The encoder's output splits into mean and scale: twice the latent width.
    vae = AutoencoderOobleck(
        encoder_hidden_size=2 * ACOUSTIC_DIM, downsampling_ratios=strides,
        channel_multiples=[1] * len(strides), decoder_channels=4,
        decoder_input_channels=ACOUSTIC_DIM, audio_channels=2,
        sampling_rate=sample_rate)  # fmt: skip
    audio_tokenizer = AceStepAudioTokenizer(
        hidden_size=16, intermediate_size=32, audio_acoustic_hidden_dim=ACOUSTIC_DIM,
        pool_window_size=5, fsq_dim=16, fsq_input_levels=[8, 8, 8, 5, 5, 5],
        num_attention_pooler_hidden_layers=1, **attention)  # fmt: skip
    detokenizer = AceStepAudioTokenDetokenizer(
        hidden_size=16, intermediate_size=32, audio_acoustic_hidden_dim=ACOUSTIC_DIM,
        pool_window_size=5, num_attention_pooler_hidden_layers=1, **attention)  # fmt: skip
    pipeline = AceStepPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer,
        condition_encoder=condition_encoder,
        scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1, shift=1.0),
        audio_tokenizer=audio_tokenizer, audio_token_detokenizer=detokenizer)  # fmt: skip
    target = folder / "tiny-ace-step"
    pipeline.save_pretrained(str(target))  # type: ignore[attr-defined]
    return target
