"""Test doubles for the pure core: a generator that answers from a script and a bag-of-words
embedder. They implement the core's interfaces; no service is mocked with them."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import numpy as np

from shared.smoothing.types import NOISE_SPACES_BY_MODALITY, CandidateSpec, Generation


class ScriptedGenerator:
    """Answers ``script(spec)``; records every call so tests can check the batching."""

    modality = "image"
    noise_spaces = NOISE_SPACES_BY_MODALITY["image"]

    def __init__(self, script: Callable[[CandidateSpec], str], name: str = "scripted"):
        self.script = script
        self.name = name
        self.calls: list[list[CandidateSpec]] = []

    def generate(
        self, media, prompt: str, candidates: Sequence[CandidateSpec], *, max_new_tokens: int
    ) -> list[Generation]:
        self.calls.append(list(candidates))
        return [Generation(self.script(c), len(self.script(c).split()), 1.0) for c in candidates]


class BagOfWordsEmbedder:
    """Hashes words into 64 buckets: texts sharing words are close, others far apart."""

    name = "bag-of-words"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), 64), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().replace(".", " ").replace(",", " ").split():
                out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % 64] += 1.0
        return out
