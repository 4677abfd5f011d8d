"""``smoothguard audit submit|status|report|cancel``: the REST API through ``smoothguard_client``.

``submit --wait`` and ``status --wait`` follow the audit with a progress display that suits a
terminal (one line redrawn in place) and a log file alike (a line per 10 % step, on a change of
state and at least once a minute), then print the table and the goal's verdict. With
``--fail-on-goal`` the exit code gates CI (``shared.tools.audit_gate``: 3 when the goal is missed,
inconclusive or not judged); ``--junit FILE`` writes one JUnit test case per σ × attack.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from smoothguard_client import Audit, SmoothGuard, WaitTimeout

from shared.audits.spec import AUDIO_FORMATS, AUDIO_SIGMA_SWEEP, SIGMA_SWEEP
from shared.config import get_settings
from shared.tools import audit_gate
from shared.tools.audit_tables import table
from shared.tools.cli import AUDIT_DEFENSE_FLAGS

NO_KEY = (
    "no API key: pass --key or set SMOOTHGUARD_API_KEY (`smoothguard up` prints a dev key; "
    "`smoothguard keys create TENANT` makes one)"
)


def spec_from_args(args: argparse.Namespace, archive: str | None) -> dict[str, Any]:
    if args.spec is not None:
        return json.loads(args.spec.read_text())
    names = [a.strip() for a in args.attacks.split(",") if a.strip() and a.strip() != "none"]
    dataset: dict[str, Any] = {"format": args.dataset, "seed": args.seed, "count": args.count}
    if archive:
        dataset = {"format": args.dataset, "archive": archive}
    sweep = AUDIO_SIGMA_SWEEP if args.dataset in AUDIO_FORMATS else SIGMA_SWEEP
    eps = {} if args.eps is None else {"eps": args.eps}  # none: the modality's default
    return {
        "dataset": dataset,
        "limit": args.limit,
        "model": args.model,
        "judge": args.judge,
        "attacks": [{"name": n, "steps": args.steps, "stop_loss": args.stop_loss, **eps} for n in names],
        "defense": {
            "sigmas": [float(s) for s in args.sigmas.split(",")] if args.sigmas else list(sweep),
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


def connect(url: str | None, key: str | None) -> SmoothGuard:
    """The client for ``--url``/``--key`` (default: the settings'); a clear error without a key."""
    s = get_settings()
    if not (key or s.api_key or "").strip():
        raise ValueError(NO_KEY)
    return SmoothGuard(url or s.public_url, key or s.api_key)


def run(args: argparse.Namespace) -> int:
    with connect(args.url, args.key) as sg:
        if args.action == "submit":
            return submit(sg, args)
        if args.action == "status":
            return status(sg, args)
        if args.action == "cancel":
            print(sg.audits.cancel(args.id).status)
            return 0
        if args.action == "compare":
            return compare_audits(sg, args)
        out = args.out or Path(f"audit-{args.id}.{args.format}")
        print(sg.audits.download_report(args.id, out, args.format))
        return 0


def compare_audits(sg: SmoothGuard, args: argparse.Namespace) -> int:
    """Two finished audits, σ by σ (``shared.reports.compare``); ``--out``: also as an HTML page."""
    from shared.reports.compare import compare, compare_text
    from shared.reports.render import comparison_page

    audits = [sg.audits.get(args.before), sg.audits.get(args.after)]
    summaries = [a.summary for a in audits if a.summary is not None]
    if len(summaries) < 2:
        missing = next(a for a in audits if a.summary is None)
        print(f"audit {missing.id} has no report ({missing.status}): nothing to compare", file=sys.stderr)
        return audit_gate.EXIT_UNFINISHED
    print(compare_text(compare(*summaries), args.before, args.after))
    if args.out:
        pages = [{"id": i, "summary": s} for i, s in zip((args.before, args.after), summaries, strict=True)]
        args.out.write_text(comparison_page(*pages), encoding="utf-8")
        print(f"comparison: {args.out}", file=sys.stderr)
    return 0


def submit(sg: SmoothGuard, args: argparse.Namespace) -> int:
    archive = None
    if args.archive:
        path = Path(args.archive)
        name = path.name + (".zip" if path.is_dir() else "")
        archive = sg.datasets.upload((name, archive_bytes(path)), args.dataset).sha256
    audit = sg.audits.submit(spec_from_args(args, archive))
    print(audit.id, flush=True)
    if args.wait:
        return finish(sg, str(audit.id), args)
    return gate_unfinished(audit, args) if args.fail_on_goal else 0


def status(sg: SmoothGuard, args: argparse.Namespace) -> int:
    """With --wait: follow it to its end. Else one look: the JSON (--json), or the progress line and,
    once it succeeded, the table — and with the gating options, their verdict."""
    if args.wait:
        return finish(sg, args.id, args)
    audit = sg.audits.get(args.id)
    if args.json:
        print(audit.model_dump_json(indent=2))
    else:
        print(progress_line(audit, datetime.now(UTC)))
    if audit.finished:
        return conclude(audit, args, quiet=args.json)
    return gate_unfinished(audit, args) if args.fail_on_goal else 0


def gate_unfinished(audit: Audit, args: argparse.Namespace) -> int:
    print(f"audit {audit.id} is {audit.status}: its goal is not decided yet (--wait follows it)", file=sys.stderr)
    return audit_gate.EXIT_UNFINISHED


def finish(sg: SmoothGuard, audit_id: str, args: argparse.Namespace) -> int:
    try:
        audit = follow(sg, audit_id, timeout=args.timeout)
    except WaitTimeout as exc:
        last = exc.last.status if exc.last is not None else "unknown"
        print(f"audit {audit_id} still {last} after {args.timeout:g} s; `smoothguard audit status {audit_id} --wait`")
        if args.junit and exc.last is not None:
            audit_gate.write_junit(args.junit, exc.last.model_dump(mode="json"), None)
        return audit_gate.EXIT_UNFINISHED
    return conclude(audit, args)


def conclude(audit: Audit, args: argparse.Namespace, quiet: bool = False) -> int:
    """The finished audit: the table and the goal's verdict, the JUnit file, the exit code."""
    record = audit.model_dump(mode="json")
    if audit.status != "succeeded" or audit.summary is None:
        print(f"audit {audit.id} {audit.status}: {audit.error}")
        if args.junit:
            audit_gate.write_junit(args.junit, record, None)
        return audit_gate.EXIT_AUDIT_FAILED
    gate = audit_gate.judge(audit.summary, allow_inconclusive=args.allow_inconclusive)
    if not quiet:
        print(table(audit.summary, audit.spec["defense"]["noise_space"]))
        print(gate.line())
    if args.junit:
        audit_gate.write_junit(args.junit, record, gate)
        print(f"JUnit: {args.junit} ({len(gate.cases)} σ × attack cases)", file=sys.stderr)
    return audit_gate.EXIT_GOAL if args.fail_on_goal and not gate.passed else audit_gate.EXIT_OK


def follow(sg: SmoothGuard, audit_id: str, *, timeout: float | None = None, out: IO[str] | None = None) -> Audit:
    """Wait for the audit (no limit but ``timeout``; transient errors polled through), drawing progress."""
    progress = Progress(out or sys.stderr)
    try:
        return sg.audits.wait(audit_id, timeout=timeout, on_update=progress.update)
    finally:
        progress.close()


def duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds // 3600} h {round(seconds % 3600 / 60):02d} min"


def eta_s(audit: Audit, now: datetime) -> float | None:
    """Seconds left at the pace of the items finished so far — None until one has (the first
    chunk's attacks and model warm-up say little about the rest: an ETA from them was 12 h for 1 h)."""
    p = audit.progress
    if audit.started_at is None or p.done < 1 or p.done >= p.total:
        return None
    return seconds_since(audit.started_at, now) * (p.total - p.done) / p.done


def seconds_since(then: datetime, now: datetime) -> float:
    """``now - then`` in seconds, ≥ 0 (a timestamp without a zone is UTC, as the API stores them)."""
    return max(0.0, (now - (then if then.tzinfo else then.replace(tzinfo=UTC))).total_seconds())


def progress_line(audit: Audit, now: datetime, width: int = 24) -> str:
    p = audit.progress
    filled = int(round(p.fraction * width))
    elapsed = f"  elapsed {duration(seconds_since(audit.started_at, now))}" if audit.started_at else ""
    left = eta_s(audit, now)
    eta = "" if audit.finished else f"  ETA {'after the first item' if left is None else '~' + duration(left)}"
    return (
        f"[{'#' * filled}{'.' * (width - filled)}] {p.fraction * 100:5.1f}%  items {p.done}/{p.total}"
        f"  attacked {p.attacked}  defense jobs {p.jobs_done}/{p.jobs_total}{elapsed}{eta}  ({audit.status})"
    )


class Progress:
    """A terminal: the line redrawn in place. Anywhere else (a file, a CI log): a line when the state
    changes, per 10 % of the work, at least every ``heartbeat_s`` — tens of lines for a long audit."""

    def __init__(self, out: IO[str], heartbeat_s: float = 60.0, step: float = 0.1):
        self.out, self.heartbeat_s, self.step = out, heartbeat_s, step
        self.tty = out.isatty()
        self.last: tuple[str, int, float] | None = None  # status, 10 % step, when written
        self.drawn = 0

    def update(self, audit: Audit) -> None:
        line, now = progress_line(audit, datetime.now(UTC)), time.monotonic()
        if self.tty:
            self.out.write("\r" + line.ljust(self.drawn))
            self.drawn = len(line)
        else:
            state = (audit.status, int(audit.progress.fraction / self.step))
            if self.last is None or state != self.last[:2] or now - self.last[2] >= self.heartbeat_s:
                self.out.write(line + "\n")
                self.last = (*state, now)
        self.out.flush()

    def close(self) -> None:
        if self.tty and self.drawn:
            self.out.write("\n")
            self.out.flush()
