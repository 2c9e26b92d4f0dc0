"""Tiny random vision-language models, with processors, tokenizers and chat templates built
here (no download), for tests and benchmarks; saved with save_pretrained and loaded through
the `vlm` backend exactly as a real checkpoint. Their answers are noise.

Families: Qwen2-VL and Qwen2.5-VL, and SmolVLM in its first layout (Idefics3, as
SmolVLM-256M/500M/2.2B-Instruct ship; SmolVLM2's processor needs torchvision and num2words).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from services.tagger.backends.vlm.models import allow_qwen_processors_without_torchvision

QWEN_SPECIALS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]  # fmt: skip
# Qwen2-VL's chat template (Qwen2.5-VL ships the same).
QWEN_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# SmolVLM's chat template (SmolVLM-*-Instruct).
SMOLVLM_CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}"
    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
# A Qwen2-VL frame of up to 6 merged 28x28 patches: a handful of tokens.
QWEN_PIXELS = (28 * 28, 28 * 28 * 6)
# SmolVLM frames resized to 32 px, 8 px patches, pixel shuffle 2: 4 image tokens a frame.
SMOLVLM_IMAGE, SMOLVLM_PATCH, SMOLVLM_SHUFFLE = 32, 8, 2
TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=4096,
            tie_word_embeddings=False)  # fmt: skip


def _byte_bpe(specials: list[str]) -> Any:
    """A byte-level BPE (any text, JSON included, encodes and decodes) with a few merges."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    model = Tokenizer(models.BPE())
    model.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    model.decoder = decoders.ByteLevel()
    model.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=320, min_frequency=1, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)  # fmt: skip
    model.train_from_iterator(['{"scene": "a calm lake", "genres": ["ambient"], "moods": []}',
                               "Describe the scene and the music that fits it."],
                              trainer=trainer)  # fmt: skip
    return model


def _id(tokenizer: Any, token: str) -> int:
    value = tokenizer.convert_tokens_to_ids(token)
    assert isinstance(value, int), token
    return value


def _qwen(folder: Path, version: str) -> Path:
    import torch
    import transformers
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    allow_qwen_processors_without_torchvision()
    merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("Ġ", "{"), ("Ġ", '"'), ('"', ":")]
    from tokenizers import pre_tokenizers

    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    for token in QWEN_SPECIALS:
        vocab[token] = len(vocab)
    # (The stubs want merge strings and an unknown token; the library takes pairs and None.)
    tokenizer = transformers.Qwen2Tokenizer(
        vocab=vocab, merges=merges, unk_token=None, bos_token=None,  # type: ignore[arg-type]
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>", extra_special_tokens=QWEN_SPECIALS[1:],
        padding_side="left")  # fmt: skip
    image_processor = Qwen2VLImageProcessorPil(min_pixels=QWEN_PIXELS[0],
                                               max_pixels=QWEN_PIXELS[1])  # fmt: skip
    processor_class, model_class, config_class = {
        "2": (transformers.Qwen2VLProcessor, transformers.Qwen2VLForConditionalGeneration,
              transformers.Qwen2VLConfig),
        "2.5": (transformers.Qwen2_5_VLProcessor,
                transformers.Qwen2_5_VLForConditionalGeneration, transformers.Qwen2_5_VLConfig),
    }[version]  # fmt: skip
    processor = processor_class(image_processor=image_processor, tokenizer=tokenizer,
                                chat_template=QWEN_CHAT_TEMPLATE)  # fmt: skip
    ids = {t: _id(tokenizer, t) for t in QWEN_SPECIALS}
    eos, pad = ids["<|im_end|>"], ids["<|endoftext|>"]
    text = dict(TEXT, vocab_size=len(tokenizer), bos_token_id=pad, eos_token_id=eos,
                pad_token_id=pad, rope_parameters={"rope_type": "default", "rope_theta": 1e6,
                                                   "mrope_section": [2, 1, 1]})  # fmt: skip
    vision = (
        dict(depth=1, embed_dim=32, hidden_size=32, mlp_ratio=2, num_heads=4)
        if version == "2"
        else dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=4,
                  out_hidden_size=32, window_size=56, fullatt_block_indexes=[1])
    )  # fmt: skip
    torch.manual_seed(0)
    model = model_class(config_class(
        text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=False)).eval()  # fmt: skip
    model.generation_config = transformers.GenerationConfig(
        bos_token_id=pad, eos_token_id=[eos, pad], pad_token_id=pad, do_sample=False)  # fmt: skip
    target = folder / f"tiny-qwen{version}-vl"
    model.save_pretrained(str(target))
    processor.save_pretrained(str(target))
    return target


def qwen2_vl(folder: Path) -> Path:
    return _qwen(folder, "2")


def qwen2_5_vl(folder: Path) -> Path:
    return _qwen(folder, "2.5")


def smolvlm(folder: Path) -> Path:
    """SmolVLM in its Idefics3 layout."""
    import torch
    import transformers

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    image_tokens = ["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>",
                    *(f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7))]  # fmt: skip
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=_byte_bpe(specials), bos_token="<|im_start|>",
        eos_token="<end_of_utterance>", pad_token="<|im_end|>", unk_token="<|endoftext|>",
        additional_special_tokens=image_tokens, padding_side="left")  # fmt: skip
    image_processor = transformers.Idefics3ImageProcessorPil(
        size={"longest_edge": SMOLVLM_IMAGE}, max_image_size={"longest_edge": SMOLVLM_IMAGE},
        do_image_splitting=False, image_mean=[0.5] * 3, image_std=[0.5] * 3)  # fmt: skip
    processor = transformers.Idefics3Processor(
        image_processor=image_processor, tokenizer=tokenizer,
        image_seq_len=(SMOLVLM_IMAGE // SMOLVLM_PATCH) ** 2 // SMOLVLM_SHUFFLE**2,
        chat_template=SMOLVLM_CHAT_TEMPLATE)  # fmt: skip
    bos, eos, pad = (_id(tokenizer, t) for t in ("<|im_start|>", "<end_of_utterance>",
                                                   "<|im_end|>"))  # fmt: skip
    torch.manual_seed(0)
    model = transformers.Idefics3ForConditionalGeneration(transformers.Idefics3Config(
        text_config=dict(TEXT, model_type="llama", vocab_size=len(tokenizer), head_dim=8,
                         bos_token_id=bos, eos_token_id=eos, pad_token_id=pad),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                           num_attention_heads=2, image_size=SMOLVLM_IMAGE,
                           patch_size=SMOLVLM_PATCH),
        scale_factor=SMOLVLM_SHUFFLE, image_token_id=_id(tokenizer, "<image>"),
        tie_word_embeddings=False)).eval()  # fmt: skip
    model.generation_config.eos_token_id = [eos, pad]
    model.generation_config.pad_token_id = pad
    target = folder / "tiny-smolvlm"
    model.save_pretrained(str(target))
    processor.save_pretrained(str(target))
    return target


BUILDERS: dict[str, Callable[[Path], Path]] = {
    "qwen2-vl": qwen2_vl,
    "qwen2.5-vl": qwen2_5_vl,
    "smolvlm": smolvlm,
}
