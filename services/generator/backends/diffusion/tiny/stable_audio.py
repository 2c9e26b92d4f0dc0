"""A tiny random StableAudioPipeline (Stable Audio Open 1.0's architecture)."""

from __future__ import annotations

from pathlib import Path


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

    from services.generator.backends.diffusion.tiny.words import t5_tokenizer

    torch.manual_seed(0)
    tokenizer = t5_tokenizer(max_length=64)
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
