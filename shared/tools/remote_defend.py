"""``smoothguard defend`` through a running stack (``smoothguard up``, or a deployment): the input
goes up as one job over REST, the job is followed to its end, and its result and samples come
back as the core's ``SmoothResult`` — the command prints the same whichever side did the work.

The service's workers hold the models warm, so this path imports neither torch nor a model: the
command answers in about a second, where loading everything in-process takes several.

Which side runs it (``choose_api``): ``--local`` always in-process; ``--url`` always that API;
otherwise the configured API (``SMOOTHGUARD_PUBLIC_URL``) when an API key is set and the API
answers ``/readyz`` within a second — unless ``--backend`` or ``--embedder`` name a choice only
this process can make.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from typing import Any

import httpx
from smoothguard_client import Backoff, SmoothGuard

from shared.config import Settings
from shared.jobs.options import SingleDefenseOptions
from shared.smoothing.types import Certificate, ClusterSummary, Consensus, RefusalVote, Sample, SmoothResult, Timings

READY_TIMEOUT_S = 1.0  # how long the implicit choice waits for /readyz before running in-process
# a job of the warm workers often ends in a few hundred ms: look every 20 ms at first, backing off to 0.5 s
JOB_POLL = Backoff(initial=0.02, factor=1.5, maximum=0.5, jitter=0.2)


def choose_api(args: argparse.Namespace, settings: Settings) -> tuple[str, str] | None:
    """``(url, key)`` of the API to send this defense to, or None: run it in this process."""
    if args.local:
        return None
    key = args.key or settings.api_key
    if args.url is not None:
        if not key:
            raise ValueError("--url needs an API key: --key or SMOOTHGUARD_API_KEY")
        if not ready(args.url):
            raise RuntimeError(f"the API at {args.url} is not ready (GET /readyz); --local runs it here")
        return args.url, key
    if not key or args.backend or args.embedder or not ready(settings.public_url):
        return None
    return settings.public_url, key


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url.rstrip('/')}/readyz", timeout=READY_TIMEOUT_S).status_code == 200
    except httpx.HTTPError:
        return False


def defend_remote(args: argparse.Namespace, url: str, key: str, timeout: float = 600.0) -> SmoothResult:
    """One job for ``args`` (file, prompt, model and the defense's flags), followed to its end."""
    with SmoothGuard(url, key) as sg:
        job = sg.jobs.submit((args.file.name, args.file.read_bytes()), **form_fields(args))
        job = sg.jobs.wait(job.id, timeout=timeout, backoff=JOB_POLL)
        if job.status not in ("succeeded", "abstained"):
            raise RuntimeError(f"job {job.id} {job.status}: {job.error}")
        samples = [s.model_dump() for s in sg.jobs.samples(job.id)]
    print(f"smoothguard: answered by the service at {url} (job {job.id}); --local runs it here", file=sys.stderr)
    return to_result(job.model_dump(mode="json"), samples, embedder=f"the service's at {url}")


def form_fields(args: argparse.Namespace) -> dict[str, str]:
    """The multipart fields: the prompt, the model when named, every defense flag that has a value."""
    fields = {"prompt": args.prompt} | ({"model": args.model} if args.model else {})
    for name in SingleDefenseOptions.model_fields:
        value = getattr(args, name)
        if value is not None:
            fields[name] = str(value).lower() if isinstance(value, bool) else str(value)
    return fields


def to_result(job: dict[str, Any], sample_rows: list[dict[str, Any]], embedder: str) -> SmoothResult:
    """The core's result from the job and its samples (the clusters summarised from the samples)."""
    samples = [Sample(**row) for row in sample_rows]
    selected = next((s for s in samples if s.selected), None)
    c = job["consensus"]
    cert = Certificate(**c["certificate"]) if c.get("certificate") else None
    refusal = job.get("refusal")
    vote = RefusalVote(**(refusal | {"candidates": tuple(refusal["candidates"])})) if refusal else None
    return SmoothResult(
        answer=job["answer"],
        selected_index=selected.index if selected else -1,
        abstained=job["abstained"],
        consensus=Consensus(**(c | {"certificate": cert})),
        clusters=cluster_summaries(samples, set(vote.candidates) if vote else set()),
        samples=samples,
        rounds=job["rounds_done"],
        samples_spent=job["samples_spent"],
        stop_reason=job["stop_reason"],
        answer_label=selected.answer_label if selected else None,
        generator=job["model"],
        embedder=embedder,
        config=job["params"],
        timings=Timings(**job["timings"]),
        refusal=vote,
    )


def cluster_summaries(samples: list[Sample], refusing: set[int]) -> list[ClusterSummary]:
    """One summary per cluster, largest first; its text is the member closest to the centroid."""
    members: dict[int, list[Sample]] = defaultdict(list)
    for s in samples:
        if s.cluster is not None:
            members[s.cluster].append(s)
    out = []
    for cluster, group in members.items():
        rep = max(group, key=lambda s: (s.selected, s.cosine_to_centroid or 0.0))
        noisy = sum(not s.is_clean for s in group)
        out.append(
            ClusterSummary(cluster, len(group), noisy, rep.index, rep.text, rep.answer_label, rep.index in refusing)
        )
    return sorted(out, key=lambda cl: (-cl.size, cl.cluster))
