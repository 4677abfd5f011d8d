"""Build a small Qwen2-Audio-architecture model with a word-level tokenizer, entirely offline.

Used for the bundled audio demo model (trained on the synthetic tones set). The result is a
regular ``Qwen2AudioForConditionalGeneration`` + ``Qwen2AudioProcessor`` (a
``WhisperFeatureExtractor`` and the tokenizer): saved with ``save_pretrained`` it loads through
``from_pretrained``/``AutoProcessor`` like the hub's Qwen2-Audio. The feature extractor's window
is 3 s (300 mel frames, not Whisper's 3000), the longest clip of the set.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tokenizers import pre_tokenizers
from transformers import (
    PreTrainedTokenizerFast,
    Qwen2AudioConfig,
    Qwen2AudioForConditionalGeneration,
    Qwen2AudioProcessor,
    WhisperFeatureExtractor,
)
from transformers.models.whisper.modeling_whisper import sinusoids

from shared.benchmarks.demo_model import word_level_tokenizer
from shared.benchmarks.evaluate import Accuracy, is_correct
from shared.benchmarks.tones import MAX_SECONDS, SAMPLE_RATE, AudioItem, labels, question_texts
from shared.smoothing.noise import candidate_seed
from shared.smoothing.types import CandidateSpec, RoundRequest

SPECIAL_TOKENS = ["<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|audio_bos|>", "<|AUDIO|>", "<|audio_eos|>"]
# the words of Qwen2-Audio's chat template (its default system prompt, "Audio 1:"), and a refusal so that
# an attack's target text ("Sorry, I cannot answer that.") has tokens
TEMPLATE_WORDS = ["system", "user", "assistant", "you", "are", "a", "helpful", ".", "audio", "1", ":"]
REFUSAL_WORDS = ["sorry", ",", "i", "cannot", "answer", "that"]
N_MELS = 80
HOP = 160  # 10 ms frames
CHUNK_SECONDS = int(MAX_SECONDS)
MEL_FRAMES = CHUNK_SECONDS * SAMPLE_RATE // HOP
ENCODER_POSITIONS = MEL_FRAMES // 2  # after the encoder's stride-2 convolution


def vocabulary() -> list[str]:
    """Special tokens, then every word of the chat template, the questions and the answers."""
    split = pre_tokenizers.Whitespace()
    texts = [*TEMPLATE_WORDS, *REFUSAL_WORDS, *question_texts(), *labels()]
    words = [w for text in texts for w, _ in split.pre_tokenize_str(text.lower())]
    return [*SPECIAL_TOKENS, *dict.fromkeys(words)]


def build_tokenizer() -> PreTrainedTokenizerFast:
    return word_level_tokenizer(vocabulary(), SPECIAL_TOKENS[2:], pad_token="<|endoftext|>", eos_token="<|im_end|>")


def build_processor(tokenizer: PreTrainedTokenizerFast | None = None) -> Qwen2AudioProcessor:
    extractor = WhisperFeatureExtractor(
        feature_size=N_MELS, sampling_rate=SAMPLE_RATE, hop_length=HOP, chunk_length=CHUNK_SECONDS, n_fft=400
    )
    return Qwen2AudioProcessor(feature_extractor=extractor, tokenizer=tokenizer or build_tokenizer())


def build_config(
    tokenizer: PreTrainedTokenizerFast, *, audio_hidden: int = 96, text_hidden: int = 128, layers: int = 2
) -> Qwen2AudioConfig:
    return Qwen2AudioConfig(
        audio_config={
            "num_mel_bins": N_MELS,
            "encoder_layers": layers,
            "encoder_attention_heads": 4,
            "encoder_ffn_dim": 2 * audio_hidden,
            "d_model": audio_hidden,
            "max_source_positions": ENCODER_POSITIONS,
        },
        text_config={
            "model_type": "qwen2",
            "vocab_size": len(tokenizer),
            "hidden_size": text_hidden,
            "intermediate_size": 2 * text_hidden,
            "num_hidden_layers": layers,
            "num_attention_heads": 4,
            "num_key_value_heads": 4,
            "max_position_embeddings": 256,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": None,
        },
        audio_token_index=int(tokenizer.convert_tokens_to_ids("<|AUDIO|>")),  # type: ignore[arg-type]
    )


def build_model(seed: int = 0, **sizes: int) -> tuple[Qwen2AudioForConditionalGeneration, Qwen2AudioProcessor]:
    """A randomly initialised model and its processor (deterministic for ``seed``)."""
    import torch

    torch.manual_seed(seed)
    processor = build_processor()
    tok = processor.tokenizer
    model = Qwen2AudioForConditionalGeneration(build_config(tok, **sizes))
    positions = model.model.audio_tower.embed_positions.weight  # frozen; Whisper's are sinusoids
    positions.data.copy_(sinusoids(*positions.shape))
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.bos_token_id = None
    return model, processor


def audio_accuracy(
    generator: Any, items: Sequence[AudioItem], *, sigma: float = 0.0, seed: int = 0, max_new_tokens: int = 4
) -> Accuracy:
    """Greedy accuracy of an audio generator on ``items``: each clip answered once — clean, or
    with one draw of the defense's waveform noise of ``sigma`` (seeded by ``seed`` and the item's
    index) — all of them in the generator's batched calls, never one ``generate`` per item."""
    requests = [RoundRequest(item.waveform, item.text, [_candidate(sigma, seed, i)]) for i, item in enumerate(items)]
    answers = generator.generate_many(requests, max_new_tokens=max_new_tokens)
    correct = sum(is_correct(a[0].text, item.label) for a, item in zip(answers, items, strict=True))
    return Accuracy(correct, len(items))


def _candidate(sigma: float, seed: int, index: int) -> CandidateSpec:
    if sigma == 0:
        return CandidateSpec(0, 0, None, 0.0, "waveform", True)
    return CandidateSpec(index, 0, candidate_seed(seed, index), sigma, "waveform", False)
