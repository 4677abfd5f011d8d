"""From answers to one answer: embed, cluster, pick the majority cluster and its central member.

Paper default: KMeans with k=2 (n_init=10, fixed random_state) on sentence embeddings; the
larger cluster wins; the answer is its member with the highest cosine similarity to the cluster
mean. Extras: agglomerative clustering with a cosine distance threshold (automatic k), a
closed-answer mode that clusters by the answer each text maps to, and safety-first tie-breaking.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.cluster import AgglomerativeClustering, KMeans

from shared.smoothing.types import OTHER, ClusterSummary, SmoothConfig

RANDOM_STATE = 0
_REFUSAL = re.compile(
    r"\b(i\s+(cannot|can ?not|can't|won't|will not|am unable|'m unable|am not able|must decline)|"
    r"(i'm|i am)\s+sorry|as an ai|cannot (help|assist|comply|provide)|not able to (help|assist))\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Vote:
    """Cluster of every candidate, the winning cluster and the chosen candidate (positions, not indices)."""

    labels: np.ndarray  # [n] int cluster per candidate
    cosine: np.ndarray  # [n] cosine of each candidate to its own cluster's mean
    winner: int
    chosen: int
    answer_labels: list[str] | None = None


def is_refusal(text: str) -> bool:
    return bool(_REFUSAL.search(text))


def normalize_answer(text: str) -> str:
    return text.strip().lower().strip(string.punctuation + string.whitespace)


def cluster_open(texts: Sequence[str], emb: np.ndarray, config: SmoothConfig) -> np.ndarray:
    """Cluster labels ``[n]``, numbered by first appearance so results are deterministic."""
    if len({t.strip() for t in texts}) <= 1:
        return np.zeros(len(texts), dtype=int)
    distinct = len(np.unique(emb.round(6), axis=0))
    if config.clustering == "kmeans":
        k = min(config.n_clusters, distinct)
        raw = (
            KMeans(n_clusters=k, n_init=10, random_state=RANDOM_STATE).fit_predict(emb)
            if k > 1
            else np.zeros(len(texts), dtype=int)
        )
    else:
        raw = AgglomerativeClustering(
            n_clusters=None, metric="cosine", linkage="average", distance_threshold=config.distance_threshold
        ).fit_predict(emb)
    return _by_first_appearance(raw)


def _by_first_appearance(raw: np.ndarray) -> np.ndarray:
    order = {c: i for i, c in enumerate(dict.fromkeys(raw.tolist()))}
    return np.array([order[c] for c in raw.tolist()], dtype=int)


def map_answers(
    texts: Sequence[str], emb: np.ndarray, answer_set: Sequence[str], answer_emb: np.ndarray, threshold: float
) -> list[str]:
    """Map each text to an entry of ``answer_set``: exact or first-word match after normalisation,
    else the most similar entry by cosine if it reaches ``threshold``, else ``other``."""
    keys = [normalize_answer(a) for a in answer_set]
    sims = _unit(emb) @ _unit(answer_emb).T
    out = []
    for i, text in enumerate(texts):
        norm = normalize_answer(text)
        first = norm.split()[0].strip(string.punctuation) if norm.split() else ""
        hit = next((a for a, key in zip(answer_set, keys, strict=False) if norm == key or first == key), None)
        if hit is None and sims[i].max() >= threshold:
            hit = answer_set[int(sims[i].argmax())]
        out.append(hit or OTHER)
    return out


def cluster_closed(mapped: Sequence[str], answer_set: Sequence[str]) -> np.ndarray:
    order = [*answer_set, OTHER]
    return np.array([order.index(m) for m in mapped], dtype=int)


def cosine_to_centroid(emb: np.ndarray, labels: np.ndarray) -> np.ndarray:
    unit = _unit(emb)
    out = np.zeros(len(labels), dtype=float)
    for c in np.unique(labels):
        members = labels == c
        centre = unit[members].mean(0)
        out[members] = unit[members] @ centre / max(float(np.linalg.norm(centre)), 1e-12)
    return out


def pick_winner(labels: np.ndarray, texts: Sequence[str], prefer_refusal: bool) -> int:
    """Largest cluster; on a tie the refusal cluster if ``prefer_refusal``, else the lowest label."""
    sizes = np.bincount(labels)
    tied = [int(c) for c in np.flatnonzero(sizes == sizes.max())]
    if prefer_refusal and len(tied) > 1:
        refusing = [c for c in tied if _refusal_cluster(labels, texts, c)]
        if refusing:
            return refusing[0]
    return tied[0]


def _refusal_cluster(labels: np.ndarray, texts: Sequence[str], c: int) -> bool:
    members = [t for t, lab in zip(texts, labels, strict=False) if lab == c]
    return sum(map(is_refusal, members)) * 2 > len(members)


def vote(texts: Sequence[str], emb: np.ndarray, config: SmoothConfig, answer_emb: np.ndarray | None = None) -> Vote:
    """Cluster the candidates and choose one. ``emb`` is ``[n, d]``; ``answer_emb`` is the
    embedding of ``config.answer_set`` (closed-answer mode only)."""
    mapped = None
    if config.answer_set is not None:
        assert answer_emb is not None, "closed-answer mode needs the answer-set embeddings"
        mapped = map_answers(texts, emb, config.answer_set, answer_emb, config.match_threshold)
        labels = cluster_closed(mapped, config.answer_set)
    else:
        labels = cluster_open(texts, emb, config)
    cosine = cosine_to_centroid(emb, labels)
    winner = pick_winner(labels, texts, config.prefer_refusal)
    members = np.flatnonzero(labels == winner)
    chosen = int(members[np.argmax(cosine[members])])  # argmax keeps the lowest index on ties
    return Vote(labels, cosine, winner, chosen, mapped)


def summarize(
    vote_: Vote, texts: Sequence[str], noisy: np.ndarray, indices: Sequence[int], answer_set: Sequence[str] | None
) -> list[ClusterSummary]:
    """One summary per cluster, largest first. ``noisy`` is a bool mask ``[n]``."""
    order = [*answer_set, OTHER] if answer_set is not None else None
    out = []
    for c in np.unique(vote_.labels):
        members = np.flatnonzero(vote_.labels == c)
        rep = int(members[np.argmax(vote_.cosine[members])])
        out.append(
            ClusterSummary(
                cluster=int(c),
                size=len(members),
                noisy_size=int(noisy[members].sum()),
                representative=int(indices[rep]),
                text=texts[rep],
                label=order[int(c)] if order is not None else None,
                refusal=_refusal_cluster(vote_.labels, texts, int(c)),
            )
        )
    return sorted(out, key=lambda s: (-s.size, s.cluster))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
