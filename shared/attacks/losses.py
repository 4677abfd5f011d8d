"""Teacher-forced likelihood of target strings, batched the way the generators batch.

Each row is ``chat_text(prompt)`` (with the processor's image/audio token expansion) followed by
the target's tokens (and end-of-sequence when the target is a complete answer), left-padded
like a ``generate`` batch. Labels cover the target only; the media tensors (``pixel_values``,
``input_features``) are supplied per step from the attacked input, so gradients reach it.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

MEDIA_KEYS = ("pixel_values", "input_features")  # supplied per step from the attacked input
SEQUENCE_KEYS = ("attention_mask", "token_type_ids", "mm_token_type_ids")  # [R, S], aligned with input_ids


@dataclass
class TargetBatch:
    """Token-side tensors of R rows, batch-first (``rows`` selects a sub-batch).

    ``labels`` ``[R, keep-1]`` are the last ``keep-1`` positions of each row's labels (−100 outside
    the target); the model's last ``keep`` logits, minus the final one, predict them.
    """

    inputs: dict[str, torch.Tensor]  # input_ids, attention_mask, other [R, ...] model inputs
    labels: torch.Tensor
    keep: int

    def rows(self, index: torch.Tensor) -> TargetBatch:
        return TargetBatch({k: v[index] for k, v in self.inputs.items()}, self.labels[index], self.keep)

    def repeat(self, draws: int) -> TargetBatch:
        """Every row ``draws`` times, consecutively (row r's draws are rows r·draws … r·draws+draws−1)."""
        return self.rows(torch.arange(self.labels.shape[0], device=self.labels.device).repeat_interleave(draws))

    def to(self, device: torch.device) -> TargetBatch:
        return TargetBatch({k: v.to(device) for k, v in self.inputs.items()}, self.labels.to(device), self.keep)


def encode_targets(
    generator: Any, prompts: Sequence[str], targets: Sequence[str], *, eos: bool, **media: Any
) -> TargetBatch:
    """Rows ``chat_text(prompt) + target (+ eos)``; ``media`` is the processor's media keyword
    (``images=[...]`` or ``audio=[...], sampling_rate=...``), one item per row."""
    processor = generator.processor
    enc = processor(text=[generator.chat_text(p) for p in prompts], return_tensors="pt", padding=True, **media)
    ids, mask = enc["input_ids"], enc["attention_mask"].bool()
    rows = ids.shape[0]
    aligned = {k: enc[k] for k in SEQUENCE_KEYS if k in enc}
    skip = {"input_ids", *SEQUENCE_KEYS, *MEDIA_KEYS}
    other = {k: v for k, v in enc.items() if _is_tensor(v) and k not in skip and v.dim() and v.shape[0] == rows}
    tails = [_target_ids(processor.tokenizer, generator.model, t, eos) for t in targets]
    seqs = [torch.cat([ids[r][mask[r]], tails[r]]) for r in range(rows)]
    width = max(len(s) for s in seqs)
    keep = max(len(t) for t in tails) + 1
    pad = _pad_id(processor.tokenizer)
    out_ids = torch.full((rows, width), pad, dtype=ids.dtype)
    out_mask = torch.zeros((rows, width), dtype=enc["attention_mask"].dtype)
    labels = torch.full((rows, width), -100, dtype=torch.long)
    extra = {k: torch.zeros((rows, width), dtype=v.dtype) for k, v in aligned.items() if k != "attention_mask"}
    for r, seq in enumerate(seqs):
        out_ids[r, width - len(seq) :] = seq
        out_mask[r, width - len(seq) :] = 1
        labels[r, width - len(tails[r]) :] = tails[r]
        for k, v in extra.items():  # e.g. mm_token_type_ids: the prompt's values, 0 on target tokens
            v[r, width - len(seq) : width - len(tails[r])] = aligned[k][r][mask[r]]
    inputs = {"input_ids": out_ids, "attention_mask": out_mask, **extra, **other}
    return TargetBatch(inputs, labels[:, width - keep + 1 :], keep)


def row_losses(model: Any, batch: TargetBatch, media: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy per row of the target tokens ``[R]`` (float32), given the media tensors."""
    kwargs: dict[str, Any] = {**batch.inputs, **media, "use_cache": False}
    if _accepts_logits_to_keep(model):
        kwargs["logits_to_keep"] = batch.keep
    logits = model(**kwargs).logits[:, -batch.keep : -1].float()
    ce = F.cross_entropy(logits.transpose(1, 2), batch.labels, ignore_index=-100, reduction="none")
    counts = (batch.labels != -100).sum(1).clamp(min=1)
    return ce.sum(1) / counts


def _target_ids(tokenizer: Any, model: Any, target: str, eos: bool) -> torch.Tensor:
    ids = list(tokenizer(target, add_special_tokens=False)["input_ids"])
    if eos:
        ids.append(_eos_id(tokenizer, model))
    if not ids:
        raise ValueError(f"target {target!r} has no tokens")
    return torch.tensor(ids, dtype=torch.long)


def _eos_id(tokenizer: Any, model: Any) -> int:
    """The token ``generate`` stops at (the first, where the generation config lists several)."""
    eos: Any = getattr(model.generation_config, "eos_token_id", None)
    if isinstance(eos, list):
        eos = eos[0] if eos else None
    if eos is None:
        eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the model has no end-of-sequence token; use target_eos=False")
    return int(eos)


def _pad_id(tokenizer: Any) -> int:
    return int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)


def _is_tensor(v: Any) -> bool:
    return isinstance(v, torch.Tensor)


def _accepts_logits_to_keep(model: Any) -> bool:
    return "logits_to_keep" in inspect.signature(model.forward).parameters
