"""The ``smoothguard`` command line."""

from __future__ import annotations

import argparse
import json
import sys
import types
import typing
import warnings
from collections.abc import Iterable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from shared.audits.spec import AUDIO_EPS, AUDIO_SIGMA_SWEEP, SIGMA_SWEEP, DatasetFormat, DefenseSpec
from shared.errors import DomainError
from shared.jobs.options import SingleDefenseOptions
from shared.smoothing.types import Certificate, RefusalVote, SmoothConfig, SmoothResult, noise_space_for
from shared.tools import pull_model, receiver, robustify_cli

if TYPE_CHECKING:
    from shared.tenants import KeyInfo

SHORT_FLAGS = {"num_samples": "-n"}
NEGATED_FLAGS = {"include_clean": "--no-clean"}  # a default-on option is a flag that turns it off
# audit submit: the defense's flags but ``seed`` (``--seed`` is the shapes set's) and ``sigmas`` (a list)
AUDIT_DEFENSE_FLAGS = [name for name in DefenseSpec.model_fields if name not in ("seed", "sigmas")]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smoothguard", description="SmoothGuard: randomized smoothing for MLLMs")
    sub = parser.add_subparsers(dest="command", required=True)
    _defend_parser(sub.add_parser("defend", help="answer one image or audio input through the smoothed model"))
    synth = sub.add_parser(
        "synth", help="write a synthetic set: shapes images or tones clips, with POPE-format questions.jsonl"
    )
    synth.add_argument(
        "--modality",
        choices=["image", "audio"],
        default="image",
        help="image: shapes (two questions per image); audio: 16 kHz WAV beeps (three per clip); default %(default)s",
    )
    synth.add_argument(
        "--seed", type=int, default=0, help="the set's seed: the same seed writes the same set (default %(default)s)"
    )
    synth.add_argument("--count", type=int, default=100, help="number of images or clips (default %(default)s)")
    synth.add_argument("--out", type=Path, required=True, help="folder for the media and questions.jsonl (created)")
    migrate = sub.add_parser("migrate", help="apply the database migrations (SMOOTHGUARD_DATABASE_URL)")
    migrate.add_argument(
        "--wait", type=float, default=60.0, help="seconds to keep retrying while the database cannot be reached"
    )
    sub.add_parser("healthcheck", help="exit 0 when this host's worker is ready (its model loaded, heartbeat fresh)")
    tenants = sub.add_parser("tenants", help="manage tenants").add_subparsers(dest="action", required=True)
    tenants.add_parser("create", help="create a tenant").add_argument("name", help="the tenant's unique name")
    keys = sub.add_parser("keys", help="manage API keys").add_subparsers(dest="action", required=True)
    create_key = keys.add_parser("create", help="create an API key for a tenant (shown once)")
    create_key.add_argument("tenant", help="tenant name")
    create_key.add_argument("--name", default=None, help="a label for the key")
    list_keys = keys.add_parser("list", help="list API keys: prefix, name, tenant, created, revoked, last used")
    list_keys.add_argument("--tenant", default=None, help="only this tenant's keys")
    revoke = keys.add_parser("revoke", help="revoke an API key: refused from the next request on")
    revoke.add_argument("key", metavar="PREFIX|ID", help="the key's shown prefix (sg_…) or its id")
    _service_parsers(sub)
    _audit_parsers(sub)
    robustify_cli.add_parser(sub)
    pull_model.add_parser(sub)
    receiver.add_parser(sub)
    return parser


def _audit_parsers(sub: argparse._SubParsersAction) -> None:
    audit = sub.add_parser("audit", help="robustness audits over REST: submit, status, report")
    audit.add_argument("--url", default=None, help="the API (default: SMOOTHGUARD_PUBLIC_URL)")
    audit.add_argument("--key", default=None, help="an API key (default: SMOOTHGUARD_API_KEY)")
    actions = audit.add_subparsers(dest="action", required=True)
    submit = actions.add_parser("submit", help="queue an audit; prints its id (and follows it with --wait)")
    submit.add_argument("--spec", type=Path, default=None, help="a JSON file with the whole POST /v1/audits body")
    submit.add_argument(
        "--dataset",
        default="shapes",
        choices=typing.get_args(DatasetFormat),
        help="the benchmark format (default %(default)s: the synthetic image set, no upload; tones: the synthetic "
        "audio set; audio-jsonl: your clips, the tones layout)",
    )
    submit.add_argument(
        "--archive", default=None, help="a benchmark folder or archive (zip/tar.gz) to upload for the dataset"
    )
    submit.add_argument(
        "--count", type=int, default=12, help="shapes: images (two questions each); tones: clips (three each)"
    )
    submit.add_argument("--seed", type=int, default=0, help="shapes, tones: the set's seed")
    submit.add_argument("--limit", type=int, default=None, help="the first N items")
    submit.add_argument("--attacks", default="pgd,eot", help="comma-separated: pgd, eot, universal (or none)")
    submit.add_argument(
        "--eps",
        type=float,
        default=None,
        help=f"L∞ radius: [0,1] pixels for images (default 16/255), waveform amplitude for audio (default "
        f"{AUDIO_EPS['linf']:g})",
    )
    submit.add_argument("--steps", type=int, default=40, help="attack steps (default %(default)s)")
    submit.add_argument("--stop-loss", type=float, default=None, help="early stop per item (0.69: just successful)")
    sweeps = {
        m: ",".join(f"{s:g}" for s in sweep) for m, sweep in (("images", SIGMA_SWEEP), ("audio", AUDIO_SIGMA_SWEEP))
    }
    submit.add_argument(
        "--sigmas",
        default=None,
        help=f"comma-separated noise levels (default {sweeps['images']} for images, {sweeps['audio']} for audio)",
    )
    add_option_flags(submit, DefenseSpec, AUDIT_DEFENSE_FLAGS)
    submit.add_argument("--judge", default=None, help="match | refusal | similarity | llm:<model>")
    submit.add_argument("--model", default=None, help="the model to audit (default: the deployment's)")
    submit.add_argument("--wait", action="store_true", help="follow the progress, then print the table")
    status = actions.add_parser("status", help="progress (with --wait: a progress bar until it ends) and the table")
    status.add_argument("id", help="the audit's id")
    status.add_argument("--wait", action="store_true", help="follow the progress until it ends")
    status.add_argument("--json", action="store_true", help="print the audit as JSON instead of the progress and table")
    for p in (submit, status):
        _gating_flags(p)
    report = actions.add_parser("report", help="download the report: html, json or csv")
    report.add_argument("id", help="the audit's id")
    report.add_argument(
        "--format", default="html", choices=["html", "json", "csv", "jsonl"], help="default %(default)s"
    )
    report.add_argument("--out", type=Path, default=None, help="default: audit-<id>.<format>")
    cancel = actions.add_parser("cancel", help="stop an audit")
    cancel.add_argument("id", help="the audit's id")
    compare = actions.add_parser("compare", help="two finished audits σ by σ: each rate before → after")
    compare.add_argument("before", help="the earlier audit's id")
    compare.add_argument("after", help="the later audit's id")
    compare.add_argument("--out", type=Path, default=None, help="also write the comparison as an HTML page")


def _gating_flags(p: argparse.ArgumentParser) -> None:
    """CI gating on the finished audit (``shared/tools/audit_gate.py``); exit codes: 0 passed, 1 the
    audit failed or was cancelled, 2 a usage or API error, 3 goal not met, 4 not finished."""
    p.add_argument(
        "--fail-on-goal",
        action="store_true",
        help="exit 3 unless the goal is met at every σ × attack (missed, inconclusive, or no attack to judge)",
    )
    p.add_argument(
        "--allow-inconclusive",
        action="store_true",
        help="with --fail-on-goal: pass a σ × attack whose 95%% intervals cannot decide (too few items)",
    )
    p.add_argument(
        "--junit", type=Path, default=None, metavar="FILE", help="write JUnit XML: a test case per σ × attack"
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="S",
        help="with --wait: stop after S seconds (exit 4; default: none)",
    )


def _service_parsers(sub: argparse._SubParsersAction) -> None:
    up = sub.add_parser("up", help="run the whole service here: PostgreSQL, Redis, S3, API and workers (no Docker)")
    up.add_argument(
        "--data-dir",
        type=Path,
        default=Path(".smoothguard"),
        help="where the services keep their data (default %(default)s)",
    )
    up.add_argument(
        "--verbose", action="store_true", help="also stream every process's output here (always in <data-dir>/logs/)"
    )
    api = sub.add_parser("api", help="serve the REST API (uvicorn)")
    for p in (up, api):
        p.add_argument("--host", default="127.0.0.1", help="address the API listens on (default %(default)s)")
        p.add_argument("--port", type=int, default=8000, help="port the API listens on (default %(default)s)")
    api.add_argument("--workers", type=int, default=None, help="API processes (default: one per core, at most 4)")
    demo = sub.add_parser(
        "demo",
        help="the main job: embedded stack, certifying audits over REST of the image demo model and its "
        "noise-trained copy (PGD-L2, EOT-L2, PGD L∞ 16/255; pixel σ sweep), then of the audio demo model "
        "(the same attacks on the waveform; waveform σ sweep)",
    )
    demo.add_argument(
        "--modality",
        choices=("all", "image", "audio"),
        default="all",
        help="which half of the demo runs (default %(default)s: the image audits, then the audio one)",
    )
    demo.add_argument(
        "--full",
        action="store_true",
        help="the README's full table: 12 images, σ 0.12/0.25/0.5, L2 ε 0.25/0.5/1.0, n0=16 (default: 3 images, "
        "σ 0.25/0.5, L2 ε 0.5, n0=8; both n=100, α=0.01)",
    )
    demo.add_argument("--images", type=int, default=None, help="synthetic images (two questions each)")
    demo.add_argument("--clips", type=int, default=None, help="synthetic audio clips (three questions each; default 2)")
    demo.add_argument("--steps", type=int, default=None, help="attack steps (default 40)")
    demo.add_argument("--num-samples", type=int, default=None, help="CERTIFY's estimation draws n per answer")
    demo.add_argument(
        "--stop-loss",
        type=float,
        default=None,
        help="stop attacking an item once its target loss is below this (0.69: just successful)",
    )
    demo.add_argument("--out", type=Path, default=Path("smoothguard-demo"), help="where the report files go")
    demo.add_argument("--data-dir", type=Path, default=None, help="default: a new temporary folder")
    worker = sub.add_parser("worker", help="run a Celery worker on queues, or the sweeper (beat)")
    worker.add_argument(
        "queues",
        nargs="+",
        choices=["gpu", "gpu-audits", "cpu", "audits", "webhooks", "beat"],
        help="queues to consume ('gpu': gpu then gpu-audits, interactive always first; 'gpu-audits' alone: "
        "an audit-only worker); 'beat' alone runs only the periodic sweeper",
    )
    worker.add_argument("--beat", action="store_true", help="also run the sweeper in this process (one per stack)")
    worker.add_argument("--concurrency", type=int, default=8, help="threads for a webhooks-only worker")


def _defend_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", type=Path, help="image or audio file (type sniffed from the content)")
    p.add_argument("--prompt", required=True, help="the question asked about the input")
    add_option_flags(p, SingleDefenseOptions, SingleDefenseOptions.model_fields)
    p.add_argument("--model", default=None, help="HF model id or path (default: the bundled demo model)")
    p.add_argument("--backend", default=None, help="generator backend: hf or hf-audio (default: detected)")
    p.add_argument("--embedder", default=None, help="e.g. sentence-transformers:all-MiniLM-L6-v2, hf-mean:roberta-base")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    where = p.add_argument_group(
        "where it runs",
        "with an API key set (SMOOTHGUARD_API_KEY) and the API (SMOOTHGUARD_PUBLIC_URL) ready, the running "
        "service answers (its warm models: about a second); otherwise this process loads the models (seconds)",
    )
    where.add_argument("--url", default=None, help="always this API (e.g. http://127.0.0.1:8000)")
    where.add_argument("--key", default=None, help="an API key (default: SMOOTHGUARD_API_KEY)")
    where.add_argument("--local", action="store_true", help="always in this process (--backend/--embedder imply it)")


def add_option_flags(parser: argparse.ArgumentParser, model: type[BaseModel], names: Iterable[str]) -> None:
    """One flag per field of ``model`` named in ``names``: ``--field-name``, with the field's type,
    choices, default and description; the bounds are the model's, checked when the parsed
    options are validated."""
    for name in names:
        field = model.model_fields[name]
        help_text = field.description or ""
        if field.annotation is bool:
            negated = bool(field.default)
            flag = NEGATED_FLAGS[name] if negated else "--" + name.replace("_", "-")
            action = "store_false" if negated else "store_true"
            parser.add_argument(flag, dest=name, action=action, help=f"do not {help_text}" if negated else help_text)
            continue
        kind, choices = _flag_type(field.annotation)
        if field.default is not None:
            help_text += " (default %(default)s)"
        flags = [SHORT_FLAGS[name]] if name in SHORT_FLAGS else []
        flags.append("--" + name.replace("_", "-"))
        parser.add_argument(*flags, dest=name, type=kind, choices=choices, default=field.default, help=help_text)


def _flag_type(annotation: Any) -> tuple[type, tuple[str, ...] | None]:
    """argparse's type and choices for a field's type; ``X | None`` is ``X`` (None: the default).
    A list is one comma-separated string the model parses."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        (annotation,) = (a for a in typing.get_args(annotation) if a is not type(None))
    if typing.get_origin(annotation) is typing.Literal:
        return str, typing.get_args(annotation)
    if typing.get_origin(annotation) is list:
        return str, None
    return annotation, None


def config_from_args(args: argparse.Namespace, modality: str) -> SmoothConfig:
    """The core's config from ``defend``'s flags, checked against the options' bounds (``ValueError``)."""
    options = SingleDefenseOptions.model_validate(
        {name: getattr(args, name) for name in SingleDefenseOptions.model_fields}
    )
    return options.config(noise_space_for(modality, options.noise_space))


def defend(args: argparse.Namespace) -> SmoothResult:
    """Through the running service when one is there (``shared.tools.remote_defend``), else here."""
    from shared.config import get_settings
    from shared.tools.remote_defend import choose_api, defend_remote

    api = choose_api(args, get_settings())
    return defend_local(args) if api is None else defend_remote(args, *api)


def defend_local(args: argparse.Namespace) -> SmoothResult:
    """The models loaded in this process (torch and all: most of the command's time)."""
    from shared.backends.registry import load_embedder, load_generator
    from shared.benchmarks.judges import KEYWORD_REFUSALS
    from shared.config import get_settings
    from shared.media.decode import load_media
    from shared.smoothing import SmoothGuard

    modality, media = load_media(args.file)
    config = config_from_args(args, modality)
    generator = load_generator(args.model, args.backend, settings=get_settings())
    limit_torch_threads(get_settings().torch_threads)
    if generator.modality != modality:
        raise ValueError(f"{args.file} is {modality}, but model {generator.name} takes {generator.modality}")
    embedder = load_embedder(args.embedder, settings=get_settings())
    return SmoothGuard(generator, embedder, config, refusals=KEYWORD_REFUSALS).run(media, args.prompt)


def limit_torch_threads(threads: int) -> None:
    """``torch_threads`` for this process too, when set (0: torch's default, every core)."""
    if threads > 0:
        import torch

        torch.set_num_threads(threads)


def format_result(r: SmoothResult) -> str:
    c = r.consensus
    lines = [
        f"answer: {r.answer}",
        f"abstained: {'yes' if r.abstained else 'no'} (majority {c.count}/{c.total} noisy samples, share {c.share:.2f}, "
        f"Clopper-Pearson lower bound {c.lower_bound:.3f} at alpha={c.alpha:g})",
    ]
    if r.answer_label is not None:
        radius = f"{c.certified_radius:.4f} (L2, {c.radius_space} space)" if c.certified_radius else "none"
        lines.append(f"answer label: {r.answer_label}; certified radius: {radius}")
    if c.certificate is not None:
        lines.append(format_certificate(c.certificate))
    if r.refusal is not None and (r.refusal.count or r.refusal.threshold is not None):
        lines.append(format_refusal(r.refusal))
    lines.append("clusters:")
    for cl in r.clusters:
        mark = " <- selected" if cl.cluster == _winner(r) else ""
        lines.append(f"  #{cl.cluster}: {cl.size} candidates ({cl.noisy_size} noisy){mark}: {cl.text[:70]!r}")
    t = r.timings
    lines.append(
        f"samples spent: {r.samples_spent} in {r.rounds} round(s), stop: {r.stop_reason}; "
        f"time: generation {t.generation_ms:.0f} ms, embedding {t.embedding_ms:.0f} ms, "
        f"clustering {t.clustering_ms:.0f} ms"
    )
    return "\n".join(lines)


def format_certificate(cert: Certificate) -> str:
    """One line: the CERTIFY selection, the estimate, the radius and the most n draws can certify."""
    best = f"{cert.max_radius:.4f}" if cert.max_radius is not None else "none (n too small for alpha)"
    return (
        f"certificate: {cert.label or 'no class'} chosen by {cert.selection_count}/{cert.n0} selection draws; "
        f"{cert.count}/{cert.drawn} of {cert.n} estimation draws, p_lower {cert.p_lower:.4f} at alpha={cert.alpha:g}; "
        f"max radius at n={cert.n}: {best}"
    )


def format_refusal(v: RefusalVote) -> str:
    """One line: refusals among the noisy samples, their lower bound, the decision and the radius."""
    line = (
        f"refusals: {v.count}/{v.total} noisy samples, share {v.share:.2f}, "
        f"lower bound {v.lower_bound:.3f} at alpha={v.alpha:g}; refused: {'yes' if v.refused else 'no'}"
    )
    if v.threshold is not None:
        radius = f"{v.certified_radius:.4f} (L2, {v.radius_space} space)" if v.certified_radius else "none"
        line += f" (tau {v.threshold:g}); refusal radius: {radius}"
    return line


def _winner(r: SmoothResult) -> int | None:
    return next((s.cluster for s in r.samples if s.selected), None)


def format_keys(keys: list[KeyInfo]) -> str:
    """One line per key, under a header; times in UTC to the minute."""

    def when(t: datetime | None) -> str:
        return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if t else "-"

    head = ["id", "prefix", "name", "tenant", "created", "revoked", "last used"]
    rows = [head] + [
        [str(k.id), k.prefix, k.name or "-", k.tenant, when(k.created_at), when(k.revoked_at), when(k.last_used_at)]
        for k in keys
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    rows.insert(1, ["-" * w for w in widths])
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def admin(args: argparse.Namespace) -> str:
    """``tenants create``, ``keys create|list|revoke`` against the configured database."""
    from shared.config import get_settings
    from shared.db import session_scope
    from shared.tenants import create_api_key, create_tenant, get_tenant, list_api_keys, revoke_api_key

    with session_scope(get_settings().database_url) as session:
        if args.command == "tenants":
            tenant = create_tenant(session, name=args.name)
            return f"tenant {tenant.name} created: {tenant.id}"
        if args.action == "list":
            keys = list_api_keys(session, tenant=args.tenant)
            return format_keys(keys) if keys else "no API keys"
        if args.action == "revoke":
            info = revoke_api_key(session, args.key)
            return f"API key {info.prefix} ({info.id}) of {info.tenant}: revoked since {info.revoked_at:%Y-%m-%d %H:%M:%S%z}"
        row, key = create_api_key(session, tenant=get_tenant(session, name=args.tenant), name=args.name)
        return f"API key for {args.tenant} (shown once, stored hashed; prefix {row.prefix}):\n{key}"


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")  # platformdirs, on machines without a session
    args = build_parser().parse_args(argv)
    try:
        if args.command == "synth":
            return synth(args)
        if args.command in ("tenants", "keys"):
            print(admin(args))
            return 0
        if args.command == "audit":
            from shared.tools.audit_cli import run

            return run(args)
        if args.command == "receiver":
            return receiver.run(args)
        if args.command == "pull-model":
            return pull_model.run(args)
        if args.command == "robustify":
            from shared.tools import robustify_cli

            return robustify_cli.run(args)
        if args.command in ("up", "api", "worker", "demo", "migrate", "healthcheck"):
            from shared.tools import commands as services

            return int(getattr(services, args.command)(args))
        result = defend(args)
    except Exception as exc:
        if not isinstance(exc, user_errors()):
            raise
        print(f"smoothguard: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(asdict(result), indent=2) if args.json else format_result(result))
    return 0


def synth(args: argparse.Namespace) -> int:
    from shared.benchmarks import shapes, tones

    if args.modality == "audio":
        written, media = len(tones.write_set(args.out, args.seed, args.count)), "clips"
    else:
        written, media = len(shapes.write_set(args.seed, args.count, args.out)), "images"
    print(f"wrote {args.count} {media} and {written} questions to {args.out / 'questions.jsonl'}")
    return 0


def user_errors() -> tuple[type[BaseException], ...]:
    """What the command reports in one line (exit 2), not as a traceback: bad input (ValueError;
    DomainError, refused by the domain), a service not there (OSError, RuntimeError, and the
    database's and HTTP client's errors — those of the libraries imported: the command line loads
    neither unless a command needs it)."""
    errors: list[type[BaseException]] = [ValueError, DomainError, OSError, RuntimeError]
    for module, name in (("sqlalchemy.exc", "SQLAlchemyError"), ("httpx", "HTTPError")):
        if module in sys.modules:
            errors.append(getattr(sys.modules[module], name))
    return tuple(errors)


if __name__ == "__main__":
    sys.exit(main())
