"""Shared pieces of the Hugging Face generators: loading, one batched greedy generate, decoding."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer, BatchFeature

from shared.backends import compiled
from shared.backends.torch_device import resolve_device, resolve_dtype, synchronize
from shared.smoothing.types import CandidateSpec, Generation, RoundRequest


def load_model(
    model_path: str,
    device: str,
    dtype: str,
    auto_class: Any = AutoModelForImageTextToText,
    compile_buckets: tuple[int, ...] = (),
    revision: str = "",
):
    """Processor, model and device; with ``compile_buckets``, a static KV cache and compiled
    decoding, batches padded to those sizes (``shared.backends.compiled``). ``revision``: the hub
    revision to load (``""``: the default branch; ignored for a local folder)."""
    dev = resolve_device(device)
    processor = load_processor(model_path, revision)
    processor.tokenizer.padding_side = "left"  # decoder-only batches generate from the right edge
    pinned = {"revision": revision} if revision else {}
    model = auto_class.from_pretrained(model_path, dtype=resolve_dtype(dtype, dev), **pinned).to(dev).eval()
    if compile_buckets:
        compiled.enable(model, compile_buckets)
    return processor, model, dev


def load_processor(model_path: str, revision: str = "") -> Any:
    """``AutoProcessor``, or — where the video processor cannot load (Qwen-VL without
    torchvision, as on a CPU-only torch build) — the same processor class without it."""
    try:
        return AutoProcessor.from_pretrained(model_path, **({"revision": revision} if revision else {}))
    except (AttributeError, ImportError):
        config = Path(model_path) / "processor_config.json"
        cls = getattr(transformers, json.loads(config.read_text())["processor_class"]) if config.is_file() else None
        if cls is None or not any("video" in a for a in cls.get_attributes()):
            raise
        return _image_only_processor(model_path, cls)


def _image_only_processor(model_path: str, cls: Any) -> Any:

    class ImageOnly(cls):  # type: ignore[misc, valid-type]
        def check_argument_for_proper_class(self, name: str, arg: Any) -> Any:
            return None if arg is None else super().check_argument_for_proper_class(name, arg)

    template = Path(model_path) / "chat_template.jinja"
    kwargs = {a: None for a in cls.get_attributes() if "video" in a}
    return ImageOnly(
        image_processor=AutoImageProcessor.from_pretrained(model_path),
        tokenizer=AutoTokenizer.from_pretrained(model_path),
        chat_template=template.read_text() if template.is_file() else None,
        **kwargs,
    )


def origin_of(model: Any, device: torch.device, revision: str = "") -> dict[str, Any]:
    """Where a loaded model makes its candidates: the device as torch sees it (a GPU with its name,
    e.g. ``cuda:0 NVIDIA H100 80GB HBM3``), the weights' dtype, the checkpoint's commit (the hub
    snapshot's, else the pinned ``revision``; None for a local folder), the torch and transformers
    versions and the host."""
    return {
        "device": device_name(device),
        "dtype": str(model.dtype).removeprefix("torch."),
        "revision": getattr(model.config, "_commit_hash", None) or revision or None,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "host": socket.gethostname(),
    }


def device_name(device: torch.device) -> str:
    """``cpu``, or ``cuda:<index> <GPU name>``."""
    if device.type != "cuda":
        return str(device)
    index = device.index if device.index is not None else torch.cuda.current_device()
    return f"cuda:{index} {torch.cuda.get_device_name(index)}"


def repeat_batch(inputs: BatchFeature, count: int, skip: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """Every tensor of a one-example batch repeated ``count`` times along its first dimension.

    This is right for batch-first tensors (``input_ids``, ``image_grid_thw``, ``image_sizes``) and
    for Qwen-style ``pixel_values`` ``[num_patches, C*T*P*P]``, whose batch is the concatenation."""
    return {
        k: v.repeat(count, *([1] * (v.dim() - 1)))
        for k, v in inputs.items()
        if isinstance(v, torch.Tensor) and k not in skip
    }


@torch.inference_mode()
def generate_batch(
    model, processor, batch: dict[str, torch.Tensor], device: torch.device, max_new_tokens: int
) -> list[Generation]:
    """ONE greedy ``generate`` over the batch; only the new tokens are decoded. A compiled model's
    batch is padded to its bucket first; the padding rows' outputs are dropped."""
    rows = batch["input_ids"].shape[0]
    batch = compiled.pad_batch(batch, compiled.bucket_for(rows, getattr(model, compiled.BUCKETS_ATTR, ())))
    batch = {k: v.to(device) for k, v in batch.items()}
    if "pixel_values" in batch and batch["pixel_values"].is_floating_point():
        batch["pixel_values"] = batch["pixel_values"].to(model.dtype)
    if "input_features" in batch:
        batch["input_features"] = batch["input_features"].to(model.dtype)
    synchronize(device)
    t0 = time.perf_counter()
    out = model.generate(
        **batch,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        pad_token_id=pad_token_id(processor.tokenizer),
    )[:rows]
    synchronize(device)
    ms = (time.perf_counter() - t0) * 1e3 / rows
    new = out[:, batch["input_ids"].shape[1] :].cpu()
    texts = processor.batch_decode(new, skip_special_tokens=True)
    return [Generation(t.strip(), _count_tokens(row, model), ms) for t, row in zip(texts, new, strict=False)]


def pad_token_id(tokenizer: Any) -> int:
    """What pads a batch: the tokenizer's pad token, else its end-of-sequence token."""
    return int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)


def _count_tokens(row: torch.Tensor, model) -> int:
    """Generated tokens up to and including the first end-of-sequence token (padding excluded)."""
    eos = model.generation_config.eos_token_id
    stops = set(eos if isinstance(eos, list) else [eos]) if eos is not None else set()
    for i, t in enumerate(row.tolist()):
        if t in stops:
            return i + 1
    return len(row)


class HFGenerator:
    """A loaded model + processor; subclasses build a round's batch in ``prepare``.

    ``generate`` makes ONE ``generate`` call per round (chunked only by ``max_batch_size``)."""

    auto_class: Any = AutoModelForImageTextToText

    def __init__(
        self,
        model_path: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        max_batch_size: int = 32,
        compile_buckets: tuple[int, ...] = (),
        revision: str = "",
    ):
        self.name = model_path
        self.max_batch_size = max_batch_size
        self.processor, self.model, self.device = load_model(
            model_path, device, dtype, self.auto_class, compile_buckets, revision
        )
        self.generated_on = origin_of(self.model, self.device, revision)

    def prepare(self, media: Any, prompt: str, specs: Sequence[CandidateSpec]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def encode(self, media: Sequence[Any], prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        """The model inputs of (input, prompt) pairs as they are, no noise, left-padded into one batch."""
        raise NotImplementedError

    def answer_batch(self, media: Sequence[Any], prompts: Sequence[str], *, max_new_tokens: int) -> list[Generation]:
        """Undefended answers to many (input, prompt) pairs: ONE ``generate`` per ``max_batch_size``."""
        out: list[Generation] = []
        for part in chunks(list(zip(media, prompts, strict=True)), self.max_batch_size):
            batch = self.encode([m for m, _ in part], [p for _, p in part])
            out += generate_batch(self.model, self.processor, batch, self.device, max_new_tokens)
        return out

    def generate(
        self, media: Any, prompt: str, candidates: Sequence[CandidateSpec], *, max_new_tokens: int
    ) -> list[Generation]:
        return self.generate_many([RoundRequest(media, prompt, candidates)], max_new_tokens=max_new_tokens)[0]

    def generate_many(self, requests: Sequence[RoundRequest], *, max_new_tokens: int) -> list[list[Generation]]:
        """Every request's candidates in ONE ``generate`` per ``max_batch_size`` candidates: each
        request's part prepared on its own (its input, prompt and noise), then left-padded into one
        batch. Parts whose inputs cannot share a batch (e.g. clips of different lengths) go alone."""
        out: list[list[Generation]] = [[] for _ in requests]
        flat = [(i, spec) for i, r in enumerate(requests) for spec in r.candidates]
        for part in chunks(flat, self.max_batch_size):
            owners = [i for i, _ in part]
            parts = [
                self.prepare(requests[i].media, requests[i].prompt, [s for j, s in part if j == i])
                for i in dict.fromkeys(owners)
            ]
            gens: list[Generation] = []
            for batch in merge_batches(parts, pad_token_id(self.processor.tokenizer)):
                gens += generate_batch(self.model, self.processor, batch, self.device, max_new_tokens)
            for i, gen in zip(owners, gens, strict=True):
                out[i].append(gen)
        return out


TOKEN_KEYS = ("input_ids", "attention_mask", "token_type_ids", "mm_token_type_ids")  # [batch, sequence]


def merge_batches(parts: list[dict[str, torch.Tensor]], pad_id: int) -> list[dict[str, torch.Tensor]]:
    """Consecutive prepared batches joined into as few as their inputs allow: token tensors
    left-padded to the longest (``pad_id``, attention 0), the rest concatenated along the batch
    dimension — which needs equal shapes past it (a part that differs starts a new batch)."""
    merged: list[list[dict[str, torch.Tensor]]] = []
    for part in parts:
        if merged and joinable(merged[-1][0], part):
            merged[-1].append(part)
        else:
            merged.append([part])
    return [join(group, pad_id) if len(group) > 1 else group[0] for group in merged]


def joinable(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(k in TOKEN_KEYS or a[k].shape[1:] == b[k].shape[1:] for k in a)


def join(group: list[dict[str, torch.Tensor]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(p["input_ids"].shape[1] for p in group)

    def left_pad(t: torch.Tensor, value: int) -> torch.Tensor:
        return torch.nn.functional.pad(t, (width - t.shape[1], 0), value=value)

    return {
        k: torch.cat([left_pad(p[k], pad_id if k == "input_ids" else 0) if k in TOKEN_KEYS else p[k] for p in group])
        for k in group[0]
    }


def chunks(seq, size: int):
    for i in range(0, len(seq), size):
        yield seq[i : i + size]
