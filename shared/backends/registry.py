"""Generators and embedders by name, imported lazily so torch loads only where one is used.

A model is loaded once per process (per name, device and dtype) and reused.
"""

from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from shared.smoothing.types import Embedder, Generator

GENERATORS = {
    "hf": "shared.backends.hf_vision:HFVisionGenerator",
    "hf-audio": "shared.backends.hf_audio:HFAudioGenerator",
}
EMBEDDERS = {
    "sentence-transformers": "shared.backends.embedders:SentenceTransformerEmbedder",
    "hf-mean": "shared.backends.embedders:MeanPoolEmbedder",
}
AUDIO_MODEL_TYPES = {"qwen2_audio"}
DEFAULT_EMBEDDER = "sentence-transformers:all-MiniLM-L6-v2"


class LoadedGenerator(Generator, Protocol):
    """A generator the registry loaded; ``generated_on`` says where it makes its candidates
    (device, dtype, revision, torch and transformers versions, host: ``hf_common.origin_of``)."""

    generated_on: dict[str, Any]


class Runtime(Protocol):
    """Where and how models run: the service's ``Settings`` has these fields (this library reads
    no environment itself)."""

    @property
    def model(self) -> str: ...
    @property
    def model_revision(self) -> str: ...
    @property
    def embedder(self) -> str: ...
    @property
    def device(self) -> str: ...
    @property
    def dtype(self) -> str: ...
    @property
    def max_batch_size(self) -> int: ...
    @property
    def compile_generator(self) -> bool: ...
    @property
    def batch_buckets(self) -> str: ...
    @property
    def hf_offline(self) -> bool: ...


@dataclass(frozen=True)
class LocalRuntime:
    """The defaults without settings: no default model, the bundled embedder, device and dtype
    chosen by what the machine has, offline."""

    model: str = ""
    model_revision: str = ""
    embedder: str = DEFAULT_EMBEDDER
    device: str = "auto"
    dtype: str = "auto"
    max_batch_size: int = 32
    compile_generator: bool = False
    batch_buckets: str = "8,16,32,64,128"
    hf_offline: bool = True


def _import(target: str) -> Any:
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


@lru_cache(maxsize=64)
def detect_backend(model: str) -> str:
    """``hf-audio`` for audio-language checkpoints (by ``model_type`` in config.json), else ``hf``.
    Remembered per model (every submit asks): a checkpoint's ``model_type`` does not change."""
    config = Path(model) / "config.json"
    if config.is_file() and json.loads(config.read_text()).get("model_type") in AUDIO_MODEL_TYPES:
        return "hf-audio"
    return "hf-audio" if "audio" in model.lower() else "hf"


def load_generator(
    model: str | None = None, backend: str | None = None, settings: Runtime | None = None
) -> LoadedGenerator:
    s = settings or LocalRuntime()
    model = model or s.model
    if not model:
        raise ValueError("no model named (and no settings with a default model)")
    backend = backend or detect_backend(model)
    if backend not in GENERATORS:
        raise ValueError(f"unknown generator backend {backend!r}; known: {sorted(GENERATORS)}")
    from shared.backends.compiled import compile_buckets

    buckets = compile_buckets(s.compile_generator, s.batch_buckets, s.max_batch_size)
    revision = s.model_revision if model == s.model else ""  # the pin belongs to the default model only
    return _load_generator(backend, model, revision, s.device, s.dtype, s.max_batch_size, buckets, s.hf_offline)


@lru_cache(maxsize=4)
def _load_generator(
    backend: str,
    model: str,
    revision: str,
    device: str,
    dtype: str,
    max_batch: int,
    buckets: tuple[int, ...],
    offline: bool,
) -> LoadedGenerator:
    """``revision``: the hub revision (``""``: the default branch); ``buckets``: compiled static-cache
    generation padded to these batch sizes; ``()``: eager."""
    prepare_hf(offline)
    cls = _import(GENERATORS[backend])
    return cls(model, revision=revision, device=device, dtype=dtype, max_batch_size=max_batch, compile_buckets=buckets)


def load_embedder(spec: str | None = None, settings: Runtime | None = None) -> Embedder:
    """``spec`` is ``backend:name-or-path`` (``sentence-transformers:all-MiniLM-L6-v2``,
    ``hf-mean:roberta-base``); a bare name means sentence-transformers."""
    s = settings or LocalRuntime()
    spec = spec or s.embedder
    backend, _, name = spec.partition(":") if ":" in spec else ("sentence-transformers", "", spec)
    if backend not in EMBEDDERS:
        raise ValueError(f"unknown embedder backend {backend!r}; known: {sorted(EMBEDDERS)}")
    return _load_embedder(backend, name, s.device, s.hf_offline)


@lru_cache(maxsize=4)
def _load_embedder(backend: str, name: str, device: str, offline: bool) -> Embedder:
    prepare_hf(offline)
    return _import(EMBEDDERS[backend])(name, device=device)


def prepare_hf(offline: bool) -> None:
    """No hub at run time when ``offline``; no per-load progress bars in service logs."""
    from transformers.utils import logging

    logging.disable_progress_bar()
    if offline:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
