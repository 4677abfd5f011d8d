"""``smoothguard audit submit|status|report|cancel``: the REST client on the command line."""

from __future__ import annotations

import argparse
import io
import json
import zipfile
from pathlib import Path
from typing import Any

from shared.config import get_settings
from shared.tools.audit_client import check, client, download, follow, submit, table, upload_dataset
from shared.tools.cli import AUDIT_DEFENSE_FLAGS


def spec_from_args(args: argparse.Namespace, archive: str | None) -> dict[str, Any]:
    if args.spec is not None:
        return json.loads(args.spec.read_text())
    names = [a.strip() for a in args.attacks.split(",") if a.strip() and a.strip() != "none"]
    dataset: dict[str, Any] = {"format": args.dataset, "seed": args.seed, "count": args.count}
    if archive:
        dataset = {"format": args.dataset, "archive": archive}
    return {
        "dataset": dataset,
        "limit": args.limit,
        "model": args.model,
        "judge": args.judge,
        "attacks": [{"name": n, "eps": args.eps, "steps": args.steps, "stop_loss": args.stop_loss} for n in names],
        "defense": {
            "sigmas": [float(s) for s in args.sigmas.split(",")],
            **{name: getattr(args, name) for name in AUDIT_DEFENSE_FLAGS},
        },
    }


def archive_bytes(path: Path) -> bytes:
    """The archive's bytes, or a folder zipped (its files under the folder's name)."""
    if not path.is_dir():
        return path.read_bytes()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            zf.write(f, Path(path.name) / f.relative_to(path))
    return buf.getvalue()


def run(args: argparse.Namespace) -> int:
    s = get_settings()
    api = client(args.url or s.public_url, args.key or s.api_key)
    if args.action == "submit":
        archive = None
        if args.archive:
            path = Path(args.archive)
            name = path.name + (".zip" if path.is_dir() else "")
            archive = upload_dataset(api, name, archive_bytes(path), args.dataset)["sha256"]
        audit = submit(api, spec_from_args(args, archive))
        print(audit["id"], flush=True)
        return finish(api, audit["id"]) if args.wait else 0
    if args.action == "status":
        if args.wait:
            return finish(api, args.id)
        audit = check(api.get(f"/v1/audits/{args.id}")).json()
        print(json.dumps({k: audit[k] for k in ("id", "status", "progress", "error")}, indent=2))
        return 0
    if args.action == "cancel":
        print(check(api.post(f"/v1/audits/{args.id}/cancel")).json()["status"])
        return 0
    out = args.out or Path(f"audit-{args.id}.{args.format}")
    print(download(api, args.id, args.format, out))
    return 0


def finish(api: Any, audit_id: str) -> int:
    audit = follow(api, audit_id)
    if audit["status"] != "succeeded":
        print(f"audit {audit_id} {audit['status']}: {audit.get('error')}")
        return 1
    print(table(audit["summary"], audit["spec"]["defense"]["noise_space"]))
    return 0
