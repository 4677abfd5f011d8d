"""Build a small LLaVA-architecture model with a word-level tokenizer, entirely offline.

Used for the bundled demo model (trained on the synthetic shapes set) and for tests. The
result is a regular ``LlavaForConditionalGeneration`` + ``LlavaProcessor`` pair: saved with
``save_pretrained`` it loads through ``AutoModelForImageTextToText``/``AutoProcessor`` like
any checkpoint from the hub.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from transformers import (
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)

from shared.benchmarks.shapes import COLOURS, IMAGE_SIZE, SHAPES

SPECIAL_TOKENS = ["<pad>", "<unk>", "<s>", "</s>", "<image>"]
WORDS = [
    "user",
    "assistant",
    ":",
    "?",
    ".",
    ",",
    "is",
    "are",
    "there",
    "a",
    "an",
    "the",
    "in",
    "on",
    "image",
    "picture",
    "what",
    "which",
    "colour",
    "color",
    "of",
    "shape",
    "yes",
    "no",
    "i",
    "cannot",
    "answer",
    "sorry",
    "describe",
    "this",
    "do",
    "you",
    "see",
    "any",
    *SHAPES,
    *COLOURS,
]

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}USER: "
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}<image>\n{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %} "
    "{% else %}ASSISTANT: "
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for c in message['content'] %}{{ c['text'] }}{% endfor %}{% endif %}</s>"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)

PATCH_SIZE = 8


def word_level_tokenizer(tokens: Sequence[str], added: Sequence[str], **special: Any) -> PreTrainedTokenizerFast:
    """A lower-casing, whitespace-split word-level tokenizer over ``tokens`` (ids in that order;
    ``<unk>`` among them), padding on the left; ``added`` become additional special tokens."""
    tok = Tokenizer(models.WordLevel(vocab={t: i for i, t in enumerate(tokens)}, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", padding_side="left", **special)
    fast.add_special_tokens({"additional_special_tokens": list(added)})
    return fast


def build_tokenizer() -> PreTrainedTokenizerFast:
    return word_level_tokenizer(
        [*SPECIAL_TOKENS, *WORDS],
        ["<image>"],
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        extra_special_tokens={"image_token": "<image>"},
    )


def build_processor(tokenizer: PreTrainedTokenizerFast | None = None) -> LlavaProcessor:
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer or build_tokenizer(),
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy="full",
        num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE,
    )


def build_config(
    tokenizer: PreTrainedTokenizerFast, *, vision_hidden: int = 96, text_hidden: int = 128, layers: int = 3
) -> LlavaConfig:
    vision = CLIPVisionConfig(
        hidden_size=vision_hidden,
        intermediate_size=2 * vision_hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        projection_dim=vision_hidden,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=text_hidden,
        intermediate_size=2 * text_hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=int(tokenizer.convert_tokens_to_ids("<image>")),  # type: ignore[arg-type]
        image_seq_length=(IMAGE_SIZE // PATCH_SIZE) ** 2 + 1,  # patches + CLS ("full")
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
    )


def build_model(seed: int = 0, **sizes: int) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """A randomly initialised model and its processor (deterministic for ``seed``)."""
    import torch

    torch.manual_seed(seed)
    processor = build_processor()
    model = LlavaForConditionalGeneration(build_config(processor.tokenizer, **sizes))
    tok = processor.tokenizer
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.bos_token_id = tok.bos_token_id
    return model, processor
