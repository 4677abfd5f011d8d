"""From answers to one answer: embed, cluster, pick the majority cluster and its central member.

Paper default: KMeans with k=2 (n_init=10, fixed random_state) on sentence embeddings; the
larger cluster wins; the answer is its member with the highest cosine similarity to the cluster
mean. Extras: agglomerative clustering with a cosine distance threshold (automatic k), a
closed-answer mode that clusters by the answer each text maps to, and refusal-aware voting
(``shared.smoothing.refusal``): refusals form one group of their own, the compliant answers are
clustered without them, and the refusal group answers only when a refusal rule fires.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.cluster import AgglomerativeClustering, KMeans

from shared.smoothing.refusal import is_refusal, should_refuse
from shared.smoothing.types import OTHER, ClusterSummary, SmoothConfig

RANDOM_STATE = 0
REFUSAL = "refusal"  # closed-answer mode, refusal-aware: the class the refusing candidates form


@dataclass(frozen=True)
class Vote:
    """Cluster of every candidate, the winning cluster and the chosen candidate (positions, not indices)."""

    labels: np.ndarray  # [n] int cluster per candidate
    cosine: np.ndarray  # [n] cosine of each candidate to its own cluster's mean
    winner: int
    chosen: int
    answer_labels: list[str] | None = None
    refusals: np.ndarray | None = None  # [n] bool: the candidate refuses
    refused: bool = False  # a refusal rule fired and the refusal group won


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


def closed_classes(answer_set: Sequence[str]) -> list[str]:
    """Closed-answer mode's classes in cluster-label order: the set, ``other``, then ``refusal``
    (which only refusal-aware voting uses)."""
    return [*answer_set, OTHER, REFUSAL]


def cluster_closed(mapped: Sequence[str], answer_set: Sequence[str]) -> np.ndarray:
    order = closed_classes(answer_set)
    return np.array([order.index(m) for m in mapped], dtype=int)


def cluster_apart(texts: Sequence[str], emb: np.ndarray, config: SmoothConfig, refusing: np.ndarray) -> np.ndarray:
    """Refusal-aware open clustering: every refusal (``refusing``, bool ``[n]``) in one group, the
    compliant answers clustered among themselves; labels by first appearance. Without refusals
    this is ``cluster_open``."""
    compliant = np.flatnonzero(~refusing).tolist()
    raw = np.full(len(texts), -1, dtype=int)
    raw[compliant] = cluster_open([texts[i] for i in compliant], emb[compliant], config)
    return _by_first_appearance(raw)


def cosine_to_centroid(emb: np.ndarray, labels: np.ndarray) -> np.ndarray:
    unit = _unit(emb)
    out = np.zeros(len(labels), dtype=float)
    for c in np.unique(labels):
        members = labels == c
        centre = unit[members].mean(0)
        out[members] = unit[members] @ centre / max(float(np.linalg.norm(centre)), 1e-12)
    return out


def pick_winner(labels: np.ndarray, among: np.ndarray | None = None) -> int:
    """The largest cluster (every member counts, the clean one too, as in the paper); on a tie the
    lowest label. ``among``: bool mask ``[n]`` of the candidates whose clusters may win (refusal-
    aware voting: the compliant ones); None, or no candidate in it: every cluster may win."""
    allowed = np.unique(labels if among is None or not among.any() else labels[among])
    sizes = np.bincount(labels)
    return int(allowed[np.argmax(sizes[allowed])])  # argmax: the first, i.e. lowest, label on ties


def vote(
    texts: Sequence[str],
    emb: np.ndarray,
    config: SmoothConfig,
    answer_emb: np.ndarray | None = None,
    *,
    refusals: Sequence[bool] | None = None,
    noisy: np.ndarray | None = None,
    alpha: float | None = None,
) -> Vote:
    """Cluster the candidates and choose one. ``emb`` is ``[n, d]``; ``answer_emb`` the embedding
    of ``config.answer_set`` (closed-answer mode only); ``refusals`` one refuse flag per candidate
    (default: the keyword test ``is_refusal``); ``noisy`` the bool mask ``[n]`` of the noisy
    candidates, the only ones the refusal rules count (default: all); ``alpha`` the level of the
    refusal rules' bounds (default: the first look's, ``config.look_alpha(0)``).

    Refusal-aware (``config.refusal_aware``): the refusals form one group; if a refusal rule fires
    (``shared.smoothing.refusal.should_refuse``) its most central member answers, else the
    largest compliant cluster's. Otherwise: the paper's vote, the flags only reported."""
    flags = np.array([is_refusal(t) for t in texts] if refusals is None else list(refusals), dtype=bool)
    noisy_ = np.ones(len(texts), dtype=bool) if noisy is None else np.asarray(noisy, dtype=bool)
    aware = config.refusal_aware
    mapped, labels = _cluster(texts, emb, config, answer_emb, flags if aware else None)
    cosine = cosine_to_centroid(emb, labels)
    level = config.look_alpha(0) if alpha is None else alpha
    refused = aware and should_refuse(int((flags & noisy_).sum()), int(noisy_.sum()), config, level)
    winner = int(labels[flags][0]) if refused else pick_winner(labels, ~flags if aware else None)
    members = np.flatnonzero(labels == winner)
    chosen = int(members[np.argmax(cosine[members])])  # argmax keeps the lowest index on ties
    return Vote(labels, cosine, winner, chosen, mapped, flags, refused)


def _cluster(
    texts: Sequence[str],
    emb: np.ndarray,
    config: SmoothConfig,
    answer_emb: np.ndarray | None,
    refusing: np.ndarray | None,
) -> tuple[list[str] | None, np.ndarray]:
    """Cluster labels ``[n]`` and, in closed-answer mode, the answer each text maps to; with
    ``refusing`` (refusal-aware voting) the refusals form a group of their own."""
    if config.answer_set is None:
        labels = cluster_open(texts, emb, config) if refusing is None else cluster_apart(texts, emb, config, refusing)
        return None, labels
    assert answer_emb is not None, "closed-answer mode needs the answer-set embeddings"
    mapped = map_answers(texts, emb, config.answer_set, answer_emb, config.match_threshold)
    if refusing is not None:
        mapped = [REFUSAL if r else m for m, r in zip(mapped, refusing, strict=True)]
    return mapped, cluster_closed(mapped, config.answer_set)


def summarize(
    vote_: Vote, texts: Sequence[str], noisy: np.ndarray, indices: Sequence[int], answer_set: Sequence[str] | None
) -> list[ClusterSummary]:
    """One summary per cluster, largest first. ``noisy`` is a bool mask ``[n]``; a cluster is a
    refusal cluster when most of its members refuse (the vote's flags, else ``is_refusal``)."""
    order = closed_classes(answer_set) if answer_set is not None else None
    flags = vote_.refusals if vote_.refusals is not None else np.array([is_refusal(t) for t in texts], dtype=bool)
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
                refusal=bool(flags[members].sum() * 2 > len(members)),
            )
        )
    return sorted(out, key=lambda s: (-s.size, s.cluster))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
