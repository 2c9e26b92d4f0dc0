"""A tiny random AudioLDM2Pipeline (AudioLDM 2's architecture: a latent-diffusion U-Net
conditioned on CLAP, T5 and a GPT-2 that turns them into conditioning states)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.generator.backends.diffusion.tiny.words import WORDS

WIDTH = 16
MEL_BINS = 8
CLAP_MEL_BINS = 16
# The vocoder's upsampling (256 samples a spectrogram frame at 16 kHz).
UPSAMPLE_RATES = [8, 8, 4]
MAX_TOKENS = 32


def _roberta_tokenizer() -> Any:
    """CLAP's byte-level BPE over WORDS: every word one token, anything else bytes. Built the
    way transformers rebuilds it from vocab and merges when loading."""
    from tokenizers import pre_tokenizers
    from transformers import RobertaTokenizerFast

    vocab: dict[str, int] = {}
    for token in ["<s>", "<pad>", "</s>", "<unk>", "<mask>",
                  *sorted(pre_tokenizers.ByteLevel.alphabet())]:  # fmt: skip
        vocab.setdefault(token, len(vocab))
    splitter = pre_tokenizers.ByteLevel(add_prefix_space=True)
    merges: list[tuple[str, str]] = []
    for word in WORDS:
        for piece, _ in splitter.pre_tokenize_str(word):
            if not piece.startswith("\u0120"):
                continue
            joined = piece[0]
            for character in piece[1:]:
                if (joined, character) not in merges:
                    merges.append((joined, character))
                joined += character
                vocab.setdefault(joined, len(vocab))
    # (The stubs say strings; the tokenizers library wants the pairs.)
    return RobertaTokenizerFast(vocab=vocab, merges=merges,  # type: ignore[arg-type]
                                add_prefix_space=True,
                                model_max_length=MAX_TOKENS)  # fmt: skip


def _t5_tokenizer() -> Any:
    """A Unigram T5 tokenizer: WORDS whole, other lowercase text letter by letter."""
    from transformers import T5TokenizerFast  # type: ignore[attr-defined]

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    for word in WORDS:
        for part in word.replace("-", " - ").split():
            if ("\u2581" + part, -1.0) not in pieces:
                pieces.append(("\u2581" + part, -1.0))
    for character in "abcdefghijklmnopqrstuvwxyz0123456789,.-'#":
        for piece in (character, "\u2581" + character):
            if (piece, -6.0) not in pieces and (piece, -1.0) not in pieces:
                pieces.append((piece, -6.0))
    return T5TokenizerFast(vocab=pieces, extra_ids=0, model_max_length=MAX_TOKENS)


def audioldm2(folder: Path, sample_rate: int = 16000) -> Path:
    """A tiny AudioLDM2Pipeline at `sample_rate` Hz, mono (like the real one)."""
    import torch
    from diffusers import (
        AudioLDM2Pipeline,
        AudioLDM2ProjectionModel,
        AudioLDM2UNet2DConditionModel,
        AutoencoderKL,
        DDIMScheduler,
    )
    from transformers import (
        ClapAudioConfig,
        ClapConfig,
        ClapFeatureExtractor,
        ClapModel,
        ClapTextConfig,
        GPT2Config,
        GPT2LMHeadModel,
        SpeechT5HifiGan,
        SpeechT5HifiGanConfig,
        T5Config,
        T5EncoderModel,
    )

    torch.manual_seed(0)
    tokenizer = _roberta_tokenizer()
    tokenizer_2 = _t5_tokenizer()
    clap = ClapModel(ClapConfig(
        text_config=ClapTextConfig(
            vocab_size=len(tokenizer), hidden_size=WIDTH, intermediate_size=32,
            num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=MAX_TOKENS + 8,
            type_vocab_size=1, bos_token_id=0, pad_token_id=1, eos_token_id=2,
            projection_dim=WIDTH).to_dict(),
        audio_config=ClapAudioConfig(
            spec_size=CLAP_MEL_BINS, num_mel_bins=CLAP_MEL_BINS, window_size=4, patch_size=2,
            patch_stride=2, patch_embed_input_channels=1, patch_embeds_hidden_size=8,
            depths=[1, 1], num_attention_heads=[2, 2], hidden_size=WIDTH,
            num_hidden_layers=2, enable_fusion=False, projection_dim=WIDTH).to_dict(),
        projection_dim=WIDTH))  # fmt: skip
    # Only used to rank several waveforms per prompt, which the backend never asks for.
    feature_extractor = ClapFeatureExtractor(
        feature_size=CLAP_MEL_BINS, sampling_rate=sample_rate,
        hop_length=-(-10 * sample_rate // (CLAP_MEL_BINS - 1)), max_length_s=10,
        fft_window_size=256, frequency_min=0, frequency_max=sample_rate // 2,
        truncation="rand_trunc", padding="repeatpad")  # fmt: skip
    t5 = T5EncoderModel(T5Config(
        vocab_size=len(tokenizer_2), d_model=WIDTH, d_ff=32, d_kv=8, num_heads=2, num_layers=1,
        relative_attention_num_buckets=8, relative_attention_max_distance=32, pad_token_id=0,
        eos_token_id=1))  # fmt: skip
    # The pipeline calls the language model's generation helpers: an LM head model.
    language_model = GPT2LMHeadModel(GPT2Config(
        vocab_size=8, n_embd=WIDTH, n_head=2, n_layer=1, n_positions=128, n_inner=32,
        bos_token_id=0, eos_token_id=0))  # fmt: skip
    language_model.config.max_new_tokens = 8
    unet = AudioLDM2UNet2DConditionModel(
        sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), block_out_channels=(8, 16),
        layers_per_block=1, norm_num_groups=4, attention_head_dim=2,
        cross_attention_dim=([None, WIDTH, WIDTH], [None, WIDTH, WIDTH]))  # fmt: skip
    vae = AutoencoderKL(
        in_channels=1, out_channels=1, down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2, block_out_channels=[8, 16],
        layers_per_block=1, latent_channels=4, norm_num_groups=4, sample_size=MEL_BINS)  # fmt: skip
    # A larger initial range than the default: at 0.01 a random vocoder is all but silent.
    vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(
        model_in_dim=MEL_BINS, sampling_rate=sample_rate, upsample_initial_channel=16,
        upsample_rates=UPSAMPLE_RATES, upsample_kernel_sizes=[2 * r for r in UPSAMPLE_RATES],
        resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]], normalize_before=False,
        initializer_range=0.25))  # fmt: skip
    pipeline = AudioLDM2Pipeline(
        vae=vae, text_encoder=clap, text_encoder_2=t5,
        projection_model=AudioLDM2ProjectionModel(text_encoder_dim=WIDTH,
                                                  text_encoder_1_dim=WIDTH,
                                                  langauge_model_dim=WIDTH),
        language_model=language_model, tokenizer=tokenizer, tokenizer_2=tokenizer_2,
        feature_extractor=feature_extractor, unet=unet,
        scheduler=DDIMScheduler(beta_start=0.0015, beta_end=0.0195,
                                beta_schedule="scaled_linear", clip_sample=False,
                                set_alpha_to_one=False, steps_offset=1),
        vocoder=vocoder)  # fmt: skip
    target = folder / "tiny-audioldm2"
    pipeline.save_pretrained(str(target))  # type: ignore[attr-defined]
    return target
