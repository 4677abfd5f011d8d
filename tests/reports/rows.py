"""Tidy audit rows for the report tests: a hand-made builder and a realistic generated audit."""

from __future__ import annotations

import random
from typing import Any

ITEMS: dict[str, dict[str, Any]] = {
    "a": {"category": "animals", "kind": "yes_no", "label": "yes"},
    "b": {"category": "animals", "kind": "yes_no", "label": "no"},
    "c": {"category": "vehicles", "kind": "yes_no", "label": "yes"},
    "s": {"category": "safety", "kind": "safety", "label": None},
}


def make_row(item: str, variant: str, sigma: float | None, **fields: Any) -> dict[str, Any]:
    """One row in the audit's key order; unspecified fields get neutral defaults."""
    meta = ITEMS.get(item, {"category": "misc", "kind": "open", "label": None})
    row: dict[str, Any] = {
        "item": item,
        "category": meta["category"],
        "kind": meta["kind"],
        "prompt": f"Question about {item}?",
        "label": meta["label"],
        "target": None if variant == "clean" else "no",
        "variant": variant,
        "sigma": sigma,
        "noise_space": None if sigma is None else "pixel",
        "answer": "yes",
        "abstained": None if sigma is None else False,
        "consensus_share": None,
        "samples_spent": 1 if sigma is None else 11,
        "correct": None,
        "attack_success": None,
        "score": None,
        "judge": "exact",
        "verdict": "",
        **NO_CERTIFICATE,
        "job_id": None,
        "samples_url": None,
        "image_url": None,
    }
    row.update(fields)
    return row


NO_CERTIFICATE: dict[str, Any] = {
    "threat_model": None,
    "attack_norm": None,
    "attack_eps": None,
    "perturbation_l2": None,
    "perturbation_linf": None,
    "certified": None,
    "certified_label": None,
    "certified_radius": None,
    "radius_space": None,
    "max_radius": None,
    "covered": None,
    "certificate": None,
}


AUDIT: dict[str, Any] = {
    "id": "aud_7f3c2e",
    "created_at": "2025-11-02T10:00:00Z",
    "finished_at": "2025-11-02T10:42:10Z",
    "model": "tiny-llava-shapes",
    "dataset": {"format": "shapes", "seed": 0, "count": 8, "archive": None, "options": {}},
    "attacks": [
        {"name": "pgd", "norm": "l2", "eps": 0.25, "steps": 40},
        {"name": "eot", "norm": "linf", "eps": 0.0314, "steps": 40, "eot": 8},
    ],
    "sigmas": [0.05, 0.1, 0.15, 0.2],
    "noise_space": "pixel",
    "num_samples": 10,
    "certify": True,
    "certify_n0": 8,
    "alpha": 0.05,
    "judge": "exact",
    "include_clean": True,
    "run": {
        "generator": ["tiny-llava-shapes"],
        "embedder": ["hashing"],
        "seeds": [0],
        "generated_on": [
            {
                "device": "cuda:0 NVIDIA H100 80GB HBM3",
                "dtype": "bfloat16",
                "revision": "a272c74b6d2c8a2e4bd5c7d1c5e2f0a1b3c4d5e6",
                "torch": "2.5.1",
                "transformers": "5.0.0",
                "host": "gpu-worker-0",
                "jobs": 30,
            },
            {
                "device": "cpu",
                "dtype": "float32",
                "revision": None,
                "torch": "2.5.1",
                "transformers": "5.0.0",
                "host": "laptop",
                "jobs": 1,
            },
        ],
        "versions": {"smoothguard": "0.1.0", "torch": "2.5.1"},
        "python": "3.12.3",
        "machine": "Linux x86_64",
    },
}
HOSTILE_ANSWER = "<script>alert(1)</script>"
SIGMAS: list[float | None] = [None, 0.05, 0.1, 0.15, 0.2]


def realistic_rows(n_items: int = 8, seed: int = 0) -> list[dict[str, Any]]:
    """An audit where attacks succeed undefended and smoothing pulls ASR down as σ grows."""
    rng = random.Random(seed)
    categories = ["animals", "vehicles", "shapes", "safety"]
    rows = []
    for i in range(n_items):
        category = categories[i % len(categories)]
        kind = "safety" if category == "safety" else "yes_no"
        for variant in ("clean", "pgd", "eot"):
            for sigma in SIGMAS:
                rows.append(_realistic_row(rng, f"q{i:03d}", category, kind, variant, sigma))
    certify = random.Random(seed + 1)  # its own draws: the rows' other numbers stay as they were
    for row in rows:
        row.update(_certificate_fields(certify, row))
    for row in rows:
        row.update(_vote_fields(row))
    rows[1]["answer"] = HOSTILE_ANSWER
    rows[2]["prompt"] = '"><img src=x onerror=alert(2)> Is there a cat?'
    rows[3]["samples_url"] = "javascript:alert(3)"
    return rows


THREATS = {"pgd": ("l2", 0.25), "eot": ("linf", 0.0314)}
DRAWS = 10  # noisy candidates per defended row, plus the clean one


def _vote_fields(row: dict[str, Any]) -> dict[str, Any]:
    """Media ids, the vote's counts and bounds, and the candidates of a realistic row: the answer's
    cluster holds the consensus share of the noisy draws."""
    from shared.smoothing.consensus import lower_bound, upper_bound

    media = {"media_id": f"m-{row['item']}-{row['variant']}", "clean_media_id": f"m-{row['item']}-clean"}
    if row["sigma"] is None:
        return media | {"candidates": [], "consensus_count": None, "consensus_total": None}
    count = round(row["consensus_share"] * DRAWS)
    other = "yes, there is one" if row["answer"] == "no" else "no"
    candidates = [
        {"index": i, "text": row["answer"] if i < count else other, "cluster": 0 if i < count else 1}
        | {"selected": i == 0, "clean": False, "label": None}
        for i in range(DRAWS)
    ]
    candidates.append(
        {"index": DRAWS, "text": row["answer"], "cluster": 0, "selected": False, "clean": True, "label": None}
    )
    return media | {
        "candidates": candidates,
        "consensus_count": count,
        "consensus_total": DRAWS,
        "consensus_lower": lower_bound(count, DRAWS, 0.05),
        "consensus_upper": upper_bound(count, DRAWS, 0.05),
        "stop_reason": "fixed",
        "generation_ms": 40.0 * (DRAWS + 1),
    }


def media_for(rows: list[dict[str, Any]]) -> dict[str, str]:
    """Thumbnails for the rows' media ids: a coloured square per item, the attacked ones with noise."""
    import io

    import numpy as np
    from PIL import Image

    from shared.reports.media import perturbation, thumbnail

    def png(pixels: Any) -> bytes:
        out = io.BytesIO()
        Image.fromarray(pixels.astype(np.uint8)).save(out, "PNG")
        return out.getvalue()

    media: dict[str, str] = {}
    for row in rows:
        clean_id, media_id = row["clean_media_id"], row["media_id"]
        if media_id in media:
            continue
        seed = int(row["item"][1:]) if row["item"][1:].isdigit() else 0
        clean = np.zeros((64, 64, 3)) + [40 + 20 * (seed % 10), 120, 200]
        clean[16:48, 16:48] = [230, 200, 40]
        attacked = np.clip(clean + np.random.default_rng(seed).integers(-12, 12, clean.shape), 0, 255)
        media[clean_id] = thumbnail(png(clean)) or ""
        if media_id != clean_id:
            media[media_id] = thumbnail(png(attacked)) or ""
            media[f"{clean_id}:{media_id}"] = perturbation(png(clean), png(attacked)) or ""
    return media


PIXELS = 64 * 64 * 3


def _certificate_fields(rng: random.Random, row: dict[str, Any]) -> dict[str, Any]:
    """Threat model, perturbation and certificate of a realistic row (32 estimation draws, α = 0.05:
    the largest certifiable radius is 1.344·σ); safety items are not certified."""
    from shared.reports.certification import coverage, threat_model

    fields = dict(NO_CERTIFICATE)
    if row["variant"] in THREATS:
        norm, eps = THREATS[row["variant"]]
        same = random.Random(f"{row['item']}/{row['variant']}")  # one perturbation per item and attack
        l2 = same.uniform(0.6, 1.0) * eps if norm == "l2" else same.uniform(0.7, 0.9) * eps * PIXELS**0.5
        linf = same.uniform(0.05, 0.2) if norm == "l2" else eps
        fields |= {"threat_model": threat_model(row["variant"], norm, eps, True), "attack_norm": norm}
        fields |= {"attack_eps": eps, "perturbation_l2": round(l2, 4), "perturbation_linf": round(linf, 4)}
    if row["sigma"] is not None and row["kind"] != "safety":
        sigma = row["sigma"]
        certified = not row["abstained"]
        fields |= {"certified": certified, "certified_label": "no" if row["attack_success"] else "yes"}
        fields |= {"certified_radius": round(rng.uniform(0.1, 1.3) * sigma, 4) if certified else None}
        fields |= {"radius_space": "pixel", "max_radius": round(1.344 * sigma, 4)}
    fields["covered"], fields["certificate"] = coverage(row | fields)
    return fields


def _realistic_row(
    rng: random.Random, item: str, category: str, kind: str, variant: str, sigma: float | None
) -> dict[str, Any]:
    s = sigma or 0.0
    attacked = variant != "clean"
    success = attacked and rng.random() < (0.9 if sigma is None else max(0.05, 0.6 - 3 * s))
    right = not success and rng.random() < 0.9 - s
    defended = sigma is not None
    share = round(rng.uniform(0.5, 1.0) if not success else rng.uniform(0.3, 0.7), 2)
    return {
        "item": item,
        "category": category,
        "kind": kind,
        "prompt": f"Is there a {category} in the image?",
        "label": None if kind == "safety" else "yes",
        "target": "no" if attacked else None,
        "variant": variant,
        "sigma": sigma,
        "noise_space": "pixel" if defended else None,
        "answer": "no" if success else "yes, there is one",
        "abstained": (share < 0.55) if defended else None,
        "consensus_share": share if defended else None,
        "samples_spent": rng.choice([11, 22, 33]) if defended else 1,
        "correct": None if kind == "safety" else right,
        "attack_success": success if attacked else None,
        "score": None,
        "judge": "exact",
        "verdict": "refused" if kind == "safety" else ("match" if right else "miss"),
        "job_id": f"job_{rng.randrange(16**8):08x}" if defended else None,
        "samples_url": f"https://sg.example/v1/jobs/{item}/samples" if defended else None,
        "image_url": f"https://sg.example/media/{item}-{variant}.png",
    }


def many_rows(n_items: int, base: int = 20) -> list[dict[str, Any]]:
    """A large audit fast: ``realistic_rows(base)`` repeated under new item keys (q0000, q0001, …)."""
    template = realistic_rows(base)
    rows = []
    for start in range(0, n_items, base):
        for row in template:
            index = start + int(row["item"][1:])
            if index < n_items:
                key = f"q{index:04d}"
                media = {f: row[f].replace(row["item"], key) for f in ("media_id", "clean_media_id")}
                rows.append(row | {"item": key} | media)
    return rows
