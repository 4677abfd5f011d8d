"""SmoothGuard: randomized smoothing for a multimodal LLM (Su et al., 2025), with consensus
statistics and adaptive sampling.

The pieces the service distributes over workers — ``plan_round`` (which candidates), a
generator call (ONE batch per round), ``aggregate`` (vote and bound) and ``next_step`` (stop or
go on) — are composed in-process by ``SmoothGuard.run`` for the CLI and tests.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from shared.smoothing.aggregate import summarize, vote
from shared.smoothing.certify import apply_certificate, certify_stop
from shared.smoothing.consensus import consensus, stop_reason
from shared.smoothing.noise import plan_round
from shared.smoothing.refusal import KeywordRefusals, RefusalCache, RefusalClassifier, refusal_vote
from shared.smoothing.types import OTHER, Embedder, Generator, Sample, SmoothConfig, SmoothResult, StopReason, Timings


class EmbeddingCache:
    """Embeds each distinct text once across rounds (answers repeat a lot)."""

    def __init__(self, embedder: Embedder):
        self.embedder = embedder
        self._cache: dict[str, np.ndarray] = {}

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        new = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if new:
            for t, e in zip(new, np.asarray(self.embedder.embed(new), dtype=np.float32), strict=True):
                self._cache[t] = e
        return np.stack([self._cache[t] for t in texts])


def aggregate(
    samples: list[Sample],
    embed: EmbeddingCache,
    config: SmoothConfig,
    *,
    rounds: int,
    stop: StopReason,
    generator: str,
    timings: Timings | None = None,
    refusals: RefusalClassifier | None = None,
) -> SmoothResult:
    """Vote over ``samples`` (updated in place with cluster, cosine and selection) into a result.
    ``refusals`` labels the answers refuse/comply (default: the core's keyword test); its time
    counts as clustering time."""
    timings = timings or Timings()
    texts = [s.text for s in samples]
    t0 = time.perf_counter()
    emb = embed(texts)
    answer_emb = embed(list(config.answer_set)) if config.answer_set else None
    t1 = time.perf_counter()
    noisy = np.array([not s.is_clean for s in samples])
    classify = refusals or KeywordRefusals()
    flags = list(classify(texts))
    alpha = config.look_alpha(rounds - 1)
    v = vote(texts, emb, config, answer_emb, refusals=flags, noisy=noisy, alpha=alpha)
    timings.embedding_ms += (t1 - t0) * 1e3
    timings.clustering_ms += (time.perf_counter() - t1) * 1e3
    for i, s in enumerate(samples):
        s.cluster, s.cosine_to_centroid = int(v.labels[i]), float(v.cosine[i])
        s.selected = i == v.chosen
        s.answer_label = v.answer_labels[i] if v.answer_labels else None
    k = int(((v.labels == v.winner) & noisy).sum())
    label = v.answer_labels[v.chosen] if v.answer_labels else None
    certify = label is not None and label != OTHER
    cons = consensus(k, int(noisy.sum()), alpha, sigma=config.sigma if certify else None, space=config.noise_space)
    result = SmoothResult(
        answer=texts[v.chosen],
        selected_index=samples[v.chosen].index,
        abstained=cons.abstained,
        consensus=cons,
        clusters=summarize(v, texts, noisy, [s.index for s in samples], config.answer_set),
        samples=samples,
        rounds=rounds,
        samples_spent=len(samples),
        stop_reason=stop,
        answer_label=label,
        generator=generator,
        embedder=embed.embedder.name,
        config=asdict(config),
        timings=timings,
        refusal=refusal_vote(flags, noisy, [s.index for s in samples], config, classify.name, alpha),
    )
    if config.certify:  # CERTIFY: answer, bound and radius from the separate selection/estimation draws
        apply_certificate(result, config)
    return result


def next_step(result: SmoothResult, config: SmoothConfig) -> StopReason | None:
    """None to run another round; otherwise why the run ends."""
    if config.certify:
        assert result.consensus.certificate is not None, "a certify run's consensus carries its certificate"
        return certify_stop(result.consensus.certificate, config)
    noisy_done = result.consensus.total
    if not config.adaptive:
        return "fixed" if noisy_done >= config.num_samples else None
    remaining = config.num_samples - noisy_done
    reason = stop_reason(result.consensus.count, noisy_done, remaining, result.consensus.alpha)
    return reason  # type: ignore[return-value]


class SmoothGuard:
    """The smoothed model: a generator, an embedder and a config; ``run`` answers one input.
    ``refusals`` labels answers refuse/comply for the refusal rules (default: keywords)."""

    def __init__(
        self,
        generator: Generator,
        embedder: Embedder,
        config: SmoothConfig | None = None,
        refusals: RefusalClassifier | None = None,
    ):
        self.generator = generator
        self.embed = EmbeddingCache(embedder)
        self.config = config or SmoothConfig()
        self.refusals = RefusalCache(refusals or KeywordRefusals())

    def run(self, media: Any, prompt: str) -> SmoothResult:
        cfg = self.config
        if cfg.noise_space not in self.generator.noise_spaces:
            raise ValueError(
                f"{self.generator.name} supports noise spaces {self.generator.noise_spaces}, not {cfg.noise_space!r}"
            )
        samples: list[Sample] = []
        timings = Timings()
        round_index = 0
        while True:
            specs = plan_round(cfg, round_index)
            t0 = time.perf_counter()
            gens = self.generator.generate(media, prompt, specs, max_new_tokens=cfg.max_new_tokens)
            timings.generation_ms += (time.perf_counter() - t0) * 1e3
            samples.extend(Sample.from_generation(s, g) for s, g in zip(specs, gens, strict=True))
            round_index += 1
            result = aggregate(
                samples,
                self.embed,
                cfg,
                rounds=round_index,
                stop="fixed",
                generator=self.generator.name,
                timings=timings,
                refusals=self.refusals,
            )
            reason = next_step(result, cfg)
            if reason is not None:
                result.stop_reason = reason
                return result
