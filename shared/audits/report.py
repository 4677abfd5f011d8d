"""An audit's report: one row per (item, variant, σ), judged in batches, summarised, rendered,
stored. A defended row carries its job's candidates (answer, cluster, selected) and consensus
bounds; the report embeds the items' images as thumbnails (their clips as playable audio), so it
reads without a key."""

from __future__ import annotations

import json
import platform
import uuid
from collections.abc import Iterable
from importlib import metadata
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.audits.spec import AuditSpec, ref
from shared.audits.store import CONTENT_TYPES, VariantOutput, items_of, outputs_of, report_key, spec_of
from shared.benchmarks.items import Item
from shared.benchmarks.judges import DEFAULT_JUDGES, make_judge
from shared.config import Settings
from shared.jobs.store import now, result_of
from shared.models import Audit, AuditItem, Job, Media, SampleRow
from shared.reports.certification import PERTURBATION_UNITS, coverage, threat_model
from shared.reports.media import perturbation, preview
from shared.reports.render import render
from shared.reports.summary import CLEAN, summarize
from shared.smoothing.types import SmoothResult
from shared.storage import ObjectStore

MEDIA_BUDGET = 8_000_000  # characters of embedded thumbnails and clips per report; later items are not embedded
PACKAGES = ("smoothguard", "torch", "transformers", "numpy")  # versions named in the run metadata
SAMPLE_CHUNK = 1000  # jobs per candidates query


def jobs_of(session: Session, audit: Audit) -> dict[tuple[uuid.UUID | None, str | None], Job]:
    """The audit's defense jobs by (item, "<variant>@<σ>"), in one query."""
    query = select(Job).join(AuditItem, Job.audit_item_id == AuditItem.id).where(AuditItem.audit_id == audit.id)
    return {(j.audit_item_id, j.audit_ref): j for j in session.scalars(query)}


def candidates_of(session: Session, job_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[dict[str, Any]]]:
    """Every job's candidates in index order: answer, cluster, selected, clean, closed-set label."""
    out: dict[uuid.UUID, list[dict[str, Any]]] = {}
    for start in range(0, len(job_ids), SAMPLE_CHUNK):
        query = select(SampleRow).where(SampleRow.job_id.in_(job_ids[start : start + SAMPLE_CHUNK]))
        for s in session.scalars(query.order_by(SampleRow.job_id, SampleRow.round, SampleRow.index)):
            out.setdefault(s.job_id, []).append(
                {
                    "index": s.index,
                    "text": s.text,
                    "cluster": s.cluster,
                    "selected": bool(s.selected),
                    "clean": s.is_clean,
                    "label": s.answer_label,
                }
            )
    return out


def rows_of(session: Session, audit: Audit, items: list[AuditItem], public_url: str) -> list[dict[str, Any]]:
    """Tidy rows: per item and variant, the undefended answer (σ None) and one per defended σ,
    each with the variant's threat model and, defended, its job's candidates, consensus bounds,
    certificate and whether that covers the perturbation (``shared.reports.certification``)."""
    spec, base = spec_of(audit), public_url.rstrip("/")
    jobs = jobs_of(session, audit)
    candidates = candidates_of(session, [j.id for j in jobs.values()])
    rows = []
    for item in items:
        outputs = outputs_of(item)
        clean_media = outputs[CLEAN].media_id if CLEAN in outputs else item.media_id
        for variant in spec.variants():
            out = outputs.get(variant)
            common: dict[str, Any] = {
                "item": item.key,
                "category": item.category,
                "kind": item.kind,
                "prompt": item.prompt,
                "label": item.label,
                "target": item.target,
                "variant": variant,
                "image_url": f"{base}/v1/media/{out.media_id if out else None}",
                "media_id": str(out.media_id) if out else None,
                "clean_media_id": str(clean_media),
            } | threat_of(spec, audit, variant, out)
            rows.append(
                common
                | {
                    "sigma": None,
                    "noise_space": None,
                    "answer": (out.answer if out else None) or "",
                    "abstained": None,
                    "consensus_share": None,
                    "samples_spent": 1,
                    "job_id": None,
                    "samples_url": None,
                }
                | consensus_of(None)
                | certificate_of(None)
            )
            for sigma in spec.defense.sigmas:
                job = jobs.get((item.id, ref(variant, sigma)))
                found = candidates.get(job.id, []) if job is not None else []
                rows.append(common | defended(job, sigma, spec, base) | {"candidates": found})
    for row in rows:
        row["covered"], row["certificate"] = coverage(row)
    return rows


def threat_of(spec: AuditSpec, audit: Audit, variant: str, out: VariantOutput | None) -> dict[str, Any]:
    """A variant's threat model (the attack's norm and ε) and its perturbation's L2 / L∞ norms in
    ``perturbation_units``: [0, 1] ``pixel`` units, or ``waveform`` amplitude for audio (the
    universal image's are the audit's); all None for the clean variant."""
    attack = next((a for a in spec.attacks if a.variant == variant), None)
    norms = dict(audit.universal or {}) if attack is not None and attack.name == "universal" else {}
    if out is not None and out.l2 is not None:
        norms = {"l2": out.l2, "linf": out.linf}
    targeted = out.targeted if out is not None else None
    units = PERTURBATION_UNITS[spec.dataset.modality]
    return {
        "threat_model": threat_model(variant, attack.norm, attack.eps, targeted, units) if attack else None,
        "attack_norm": attack.norm if attack else None,
        "attack_eps": attack.eps if attack else None,
        "perturbation_l2": norms.get("l2") if attack else None,
        "perturbation_linf": norms.get("linf") if attack else None,
        "perturbation_units": units if attack else None,
    }


def certificate_of(result: SmoothResult | None) -> dict[str, Any]:
    """A defense job's CERTIFY certificate as row fields (all None when the job did not certify)."""
    cert = result.consensus.certificate if result is not None else None
    return {
        "certified": None if cert is None else not cert.abstained,
        "certified_label": cert.label if cert else None,
        "certified_radius": cert.radius if cert else None,
        "radius_space": cert.radius_space if cert else None,
        "max_radius": cert.max_radius if cert else None,
    }


def consensus_of(result: SmoothResult | None) -> dict[str, Any]:
    """The vote's numbers as row fields: the majority's count among the noisy draws, its one-sided
    Clopper–Pearson bounds, why voting stopped, the generation time (all None undefended)."""
    c = result.consensus if result is not None else None
    return {
        "consensus_count": c.count if c else None,
        "consensus_total": c.total if c else None,
        "consensus_lower": c.lower_bound if c else None,
        "consensus_upper": c.upper_bound if c else None,
        "stop_reason": result.stop_reason if result else None,
        "generation_ms": result.timings.generation_ms if result else None,
        "candidates": [],
    }


def defended(job: Job | None, sigma: float, spec: AuditSpec, base: str) -> dict[str, Any]:
    r = result_of(job) if job is not None else None
    return (
        {
            "sigma": sigma,
            "noise_space": spec.noise_space,
            "answer": (r.answer if r else None) or "",
            "abstained": r.abstained if r else None,
            "consensus_share": r.consensus.share if r else None,
            "samples_spent": r.samples_spent if r else 0,
            "job_id": str(job.id) if job else None,
            "samples_url": f"{base}/v1/jobs/{job.id}/samples" if job else None,
        }
        | consensus_of(r)
        | certificate_of(r)
    )


def judge_rows(rows: list[dict[str, Any]], judge_spec: str | None, embedder: Any = None) -> None:
    """Fill ``correct``, ``attack_success``, ``score``, ``judge``, ``verdict``: one batched call per judge."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(judge_spec or DEFAULT_JUDGES[row["kind"]], []).append(row)
    for name, group in groups.items():
        judge = make_judge(name, embedder=embedder)
        items = [
            Item(key=r["item"], prompt=r["prompt"], image="", label=r["label"], category=r["category"], kind=r["kind"])
            for r in group
        ]
        for row, v in zip(group, judge.judge(items, [r["answer"] for r in group]), strict=True):
            row.update(
                correct=v.correct, attack_success=v.attack_success, score=v.score, judge=v.judge, verdict=v.detail
            )


def needs_embedder(rows: list[dict[str, Any]], judge_spec: str | None) -> bool:
    return any((judge_spec or DEFAULT_JUDGES[r["kind"]]) == "similarity" for r in rows)


def write_report(session: Session, audit: Audit, store: ObjectStore, settings: Settings) -> dict[str, Any]:
    """Judge, store the verdicts per item, render and upload; returns ``audits.report``."""
    spec = spec_of(audit)
    items = items_of(session, audit.id)
    rows = rows_of(session, audit, items, settings.public_url)
    embedder = None
    if needs_embedder(rows, spec.judge):
        from shared.backends.registry import load_embedder

        embedder = load_embedder(settings=settings)
    judge_rows(rows, spec.judge, embedder)
    save_verdicts(items, rows)
    summary = summarize(rows)
    info = audit_info(audit, spec) | {"run": run_info(jobs_of(session, audit).values())}
    files = render(info, rows, summary, embedded_media(session, store, rows))
    keys = {}
    for name, data in files.items():
        keys[name] = report_key(audit, name)
        store.put(keys[name], data, CONTENT_TYPES.get(name, "application/octet-stream"))
    return {"files": keys, "summary": summary}


def save_verdicts(items: list[AuditItem], rows: list[dict[str, Any]]) -> None:
    by_key: dict[str, dict[str, Any]] = {}
    for r in rows:
        name = f"{r['variant']}@undefended" if r["sigma"] is None else ref(r["variant"], r["sigma"])
        by_key.setdefault(r["item"], {})[name] = {
            k: r[k] for k in ("correct", "attack_success", "score", "judge", "verdict")
        }
    for item in items:
        item.verdicts = by_key.get(item.key)


def audit_info(audit: Audit, spec: AuditSpec) -> dict[str, Any]:
    return {
        "id": str(audit.id),
        "created_at": audit.created_at.isoformat() if audit.created_at else None,
        "finished_at": now().isoformat(),
        "model": audit.model,
        "modality": spec.dataset.modality,
        "dataset": spec.dataset.model_dump(mode="json"),
        "attacks": [a.model_dump(mode="json") for a in spec.attacks],
        "sigmas": spec.defense.sigmas,
        "noise_space": spec.noise_space,
        "num_samples": spec.defense.num_samples,
        "include_clean": spec.defense.include_clean,
        "limit": spec.limit,
        "certify": spec.defense.certify,
        "certify_n0": spec.defense.certify_n0 if spec.defense.certify else None,
        "alpha": spec.defense.alpha,
        "judge": spec.judge or "by item kind",
        "universal": audit.universal,
    }


def run_info(jobs: Iterable[Job]) -> dict[str, Any]:
    """Run metadata: the generator and embedder the jobs ran, their seeds, where their candidates
    were generated (``generated_on``: the distinct devices, dtypes, revisions, library versions and
    hosts, with how many jobs each), and the library versions and machine of the process writing
    the report."""
    jobs = list(jobs)
    results = [r for r in (result_of(j) for j in jobs) if r is not None]
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "generator": sorted({r.generator for r in results}),
        "embedder": sorted({r.embedder for r in results}),
        "seeds": sorted({int(r.config.get("seed", 0)) for r in results}),
        "generated_on": origins_of(jobs),
        "versions": versions,
        "python": platform.python_version(),
        "machine": f"{platform.system()} {platform.machine()}",
    }


def origins_of(jobs: list[Job]) -> list[dict[str, Any]]:
    """Each distinct place the jobs' rounds were generated, with how many jobs ran there, most first."""
    counts: dict[str, int] = {}
    for job in jobs:
        for origin in job.generated_on or []:
            key = json.dumps(origin, sort_keys=True)
            counts[key] = counts.get(key, 0) + 1
    return [json.loads(k) | {"jobs": n} for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def embedded_media(session: Session, store: ObjectStore, rows: list[dict[str, Any]]) -> dict[str, str]:
    """Thumbnails (clips) as data: URIs by media id (and by "clean:attacked" for an image's magnified
    perturbation), item by item until ``MEDIA_BUDGET`` characters are spent (one item's media in
    memory at a time)."""
    ids = {uuid.UUID(i) for r in rows for i in (r.get("media_id"), r.get("clean_media_id")) if i}
    keys = {str(m.id): m.object_key for m in session.scalars(select(Media).where(Media.id.in_(ids)))}
    blobs: dict[str, bytes] = {}
    media: dict[str, str] = {}
    spent = 0
    for row in rows:
        clean, attacked = row.get("clean_media_id"), row.get("media_id")
        if clean not in blobs:
            blobs.clear()
        for key in (clean, attacked, f"{clean}:{attacked}" if attacked != clean else None):
            if key is None or key in media or spent > MEDIA_BUDGET:
                continue
            for k in key.split(":"):
                if k in keys and k not in blobs:
                    blobs[k] = store.get(keys[k])
            parts = [blobs[k] for k in key.split(":") if k in blobs]
            uri = preview(parts[0]) if len(parts) == 1 else perturbation(*parts) if len(parts) == 2 else None
            if uri is not None:
                media[key] = uri
                spent += len(uri)
    return media
