"""A tiny random StableAudio3Pipeline (Stable Audio 3's architecture)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.generator.backends.diffusion.tiny.words import WORDS

SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
WIDTH = 16
LATENT_DIM = 8
MAX_TEXT_TOKENS = 256


def _tokenizer() -> Any:
    """A Gemma-style BPE tokenizer trained here on WORDS. It must be a BPE of Gemma's exact
    shape: GemmaTokenizer rebuilds its pipeline from vocab and merges when loaded."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import GemmaTokenizerFast  # type: ignore[attr-defined]

    model = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    model.normalizer = normalizers.Replace(" ", "▁")
    model.pre_tokenizer = pre_tokenizers.Split(" ", behavior="merged_with_previous")
    model.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                       decoders.Fuse()])  # fmt: skip
    words = [w.lower() for w in WORDS]
    alphabet = sorted(set("".join(words)) | set("0123456789#.'") | {"▁"})
    trainer = trainers.BpeTrainer(vocab_size=4096, min_frequency=1, special_tokens=SPECIALS,
                                  initial_alphabet=alphabet, limit_alphabet=len(alphabet),
                                  show_progress=False)  # fmt: skip
    model.train_from_iterator([form for w in words for form in (w, " " + w)], trainer=trainer)
    return GemmaTokenizerFast(tokenizer_object=model, unk_token="<unk>", bos_token="<bos>",
                              eos_token="<eos>", pad_token="<pad>", mask_token="<mask>",
                              padding_side="right", model_max_length=MAX_TEXT_TOKENS)  # fmt: skip


def _unzero(model: Any) -> None:
    """Random values where the architecture starts at zero (output projections, learned
    tokens): at zero a random decoder ignores its input and every seed sounds the same."""
    import torch

    for module in model.modules():
        weight = getattr(module, "weight", None)
        if (isinstance(module, torch.nn.Linear | torch.nn.Conv1d)
                and not hasattr(module, "weight_g")
                and weight is not None and not weight.detach().any()):  # fmt: skip
            module.reset_parameters()
    for name, parameter in model.named_parameters():
        if name.endswith("new_tokens"):
            torch.nn.init.normal_(parameter, std=1.0)
    if hasattr(model, "prompt_padding_embedding"):
        torch.nn.init.normal_(model.prompt_padding_embedding, std=1.0)


def stable_audio_3(folder: Path, sample_rate: int = 1024) -> Path:
    """A tiny distilled StableAudio3Pipeline at `sample_rate` Hz (512 samples a latent frame),
    stereo."""
    import torch
    from diffusers import (
        AutoencoderSAME,
        FlowMatchEulerDiscreteScheduler,
        StableAudio3DiTModel,
        StableAudio3Pipeline,
    )
    from diffusers.pipelines.stable_audio_3.modeling_stable_audio_3 import (
        StableAudio3DurationEmbedder,
    )
    from transformers import T5GemmaConfig, T5GemmaEncoderModel
    from transformers.models.t5gemma.configuration_t5gemma import T5GemmaModuleConfig

    torch.manual_seed(0)
    tokenizer = _tokenizer()
    transformer = StableAudio3DiTModel(
        io_channels=LATENT_DIM, patch_size=1, embed_dim=32, depth=2, num_heads=4,
        cond_token_dim=WIDTH, global_cond_dim=WIDTH, local_add_cond_dim=LATENT_DIM + 1,
        timestep_features_dim=16, ff_mult=2, num_memory_tokens=3,
        use_differential_attention=True)  # fmt: skip
    _unzero(transformer)
    vae = AutoencoderSAME(
        audio_channels=2, patch_size=256, encoder_channels=8, encoder_c_mults=(2,),
        encoder_strides=(2,), encoder_transformer_depths=(1,), latent_dim=LATENT_DIM,
        use_differential_attention=True, dim_heads=8, ff_mult=2, sliding_window=1,
        sampling_rate=sample_rate)  # fmt: skip
    _unzero(vae)
    with torch.no_grad():  # a random decoder's output mostly inside -1..1
        mapping = vae.decoder.blocks[-1].mapping  # type: ignore[attr-defined]
        (mapping.weight_g if hasattr(mapping, "weight_g") else mapping.weight).mul_(0.3)
    module = T5GemmaModuleConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=WIDTH, intermediate_size=32,
        num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=8,
        query_pre_attn_scalar=8, max_position_embeddings=MAX_TEXT_TOKENS,
        sliding_window=MAX_TEXT_TOKENS, layer_types=["full_attention", "full_attention"],
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id).to_dict()  # fmt: skip
    text_encoder = T5GemmaEncoderModel(T5GemmaConfig(
        encoder=module, decoder=module, is_encoder_decoder=False,
        vocab_size=tokenizer.vocab_size)).eval()  # fmt: skip
    pipeline = StableAudio3Pipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
        duration_embedder=StableAudio3DurationEmbedder(output_dim=WIDTH, fourier_dim=16),
        transformer=transformer,
        # The distilled checkpoints' sampler (8 steps, no guidance).
        scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1, shift=1.0,
                                                  stochastic_sampling=True))  # fmt: skip
    target = folder / "tiny-stable-audio-3"
    pipeline.save_pretrained(str(target))  # type: ignore[attr-defined]
    return target
