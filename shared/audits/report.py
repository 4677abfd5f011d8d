"""An audit's report: one row per (item, variant, σ), judged in batches, summarised, rendered,
stored."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.audits.spec import AuditSpec, ref
from shared.audits.store import CONTENT_TYPES, VariantOutput, items_of, outputs_of, report_key, spec_of
from shared.benchmarks.items import Item
from shared.benchmarks.judges import DEFAULT_JUDGES, make_judge
from shared.config import Settings
from shared.jobs.store import now, result_of
from shared.models import Audit, AuditItem, Job
from shared.reports.certification import coverage, threat_model
from shared.reports.render import render
from shared.reports.summary import summarize
from shared.smoothing.types import SmoothResult
from shared.storage import ObjectStore


def rows_of(session: Session, audit: Audit, items: list[AuditItem], public_url: str) -> list[dict[str, Any]]:
    """Tidy rows: per item and variant, the undefended answer (σ None) and one per defended σ,
    each with the variant's threat model and, defended, its job's certificate and whether that
    covers the perturbation (``shared.reports.certification``)."""
    spec, base = spec_of(audit), public_url.rstrip("/")
    query = select(Job).join(AuditItem, Job.audit_item_id == AuditItem.id).where(AuditItem.audit_id == audit.id)
    jobs = {(j.audit_item_id, j.audit_ref): j for j in session.scalars(query)}  # all of them in one query
    rows = []
    for item in items:
        for variant in spec.variants():
            out = outputs_of(item).get(variant)
            common: dict[str, Any] = {
                "item": item.key,
                "category": item.category,
                "kind": item.kind,
                "prompt": item.prompt,
                "label": item.label,
                "target": item.target,
                "variant": variant,
                "image_url": f"{base}/v1/media/{out.media_id if out else None}",
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
                | certificate_of(None)
            )
            for sigma in spec.defense.sigmas:
                job = jobs.get((item.id, ref(variant, sigma)))
                rows.append(common | defended(job, sigma, spec, base))
    for row in rows:
        row["covered"], row["certificate"] = coverage(row)
    return rows


def threat_of(spec: AuditSpec, audit: Audit, variant: str, out: VariantOutput | None) -> dict[str, Any]:
    """A variant's threat model (the attack's norm and ε) and its perturbation's L2 / L∞ norms
    ([0, 1] pixel units; the universal image's are the audit's); all None for the clean image."""
    attack = next((a for a in spec.attacks if a.variant == variant), None)
    norms = dict(audit.universal or {}) if attack is not None and attack.name == "universal" else {}
    if out is not None and out.l2 is not None:
        norms = {"l2": out.l2, "linf": out.linf}
    targeted = out.targeted if out is not None else None
    return {
        "threat_model": threat_model(variant, attack.norm, attack.eps, targeted) if attack else None,
        "attack_norm": attack.norm if attack else None,
        "attack_eps": attack.eps if attack else None,
        "perturbation_l2": norms.get("l2") if attack else None,
        "perturbation_linf": norms.get("linf") if attack else None,
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


def defended(job: Job | None, sigma: float, spec: AuditSpec, base: str) -> dict[str, Any]:
    r = result_of(job) if job is not None else None
    return {
        "sigma": sigma,
        "noise_space": spec.defense.noise_space,
        "answer": (r.answer if r else None) or "",
        "abstained": r.abstained if r else None,
        "consensus_share": r.consensus.share if r else None,
        "samples_spent": r.samples_spent if r else 0,
        "job_id": str(job.id) if job else None,
        "samples_url": f"{base}/v1/jobs/{job.id}/samples" if job else None,
    } | certificate_of(r)


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
    files = render(audit_info(audit, spec), rows, summary)
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
        "dataset": spec.dataset.model_dump(mode="json"),
        "attacks": [a.model_dump(mode="json") for a in spec.attacks],
        "sigmas": spec.defense.sigmas,
        "noise_space": spec.defense.noise_space,
        "num_samples": spec.defense.num_samples,
        "certify": spec.defense.certify,
        "certify_n0": spec.defense.certify_n0 if spec.defense.certify else None,
        "alpha": spec.defense.alpha,
        "judge": spec.judge or "by item kind",
        "universal": audit.universal,
    }
