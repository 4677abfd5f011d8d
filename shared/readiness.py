"""Is this host's worker ready to serve? A worker on a GPU lane checks its device and loads its
model before it consumes anything, a CPU worker its embedder (``prepare``: a worker that cannot
serve exits without taking a message); every worker then writes its readiness file (``ready_file``) and
touches it with each heartbeat, and removes it when it stops. ``smoothguard healthcheck`` reads
only that file (``check``): no torch, no database, well under a second."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from shared.config import Settings

EXIT_CANNOT_SERVE = 3  # a worker whose device or model failed at start exits with this


class CannotServe(RuntimeError):
    """The worker's device is not there or its model does not load."""


def ready_path(settings: Settings) -> Path:
    return Path(settings.ready_file or Path(tempfile.gettempdir()) / "smoothguard-worker.ready")


def mark_ready(settings: Settings, queues: str) -> None:
    """Write (or refresh) the readiness file: which queues this process serves, with which model."""
    path = ready_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"pid": os.getpid(), "queues": queues, "model": settings.model, "at": time.time()}
    scratch = path.with_name(f".{path.name}.{os.getpid()}")
    scratch.write_text(json.dumps(body))
    scratch.replace(path)  # a reader never sees half a file


def unmark_ready(settings: Settings) -> None:
    ready_path(settings).unlink(missing_ok=True)


def check(settings: Settings, now: float | None = None) -> tuple[bool, str]:
    """Ready when the file exists and was refreshed within ``worker_timeout_s``; why, in words."""
    path = ready_path(settings)
    try:
        body = json.loads(path.read_text())
    except (OSError, ValueError):
        return False, f"not ready: no readiness file at {path} (the worker is starting, failed, or stopped)"
    age = (time.time() if now is None else now) - float(body.get("at", 0))
    if age > settings.worker_timeout_s:
        return False, f"not ready: the worker's last heartbeat was {age:.0f} s ago ({path})"
    return True, f"ready: pid {body.get('pid')} serves {body.get('queues')} with {body.get('model')} ({age:.0f} s ago)"


def prepare(settings: Settings, queues: set[str]) -> None:
    """What the queues' tasks need, loaded now (and kept for them): on a GPU lane the device the
    settings name and the default model on it, on ``cpu`` the embedder; ``CannotServe`` otherwise."""
    from shared.backends.registry import load_embedder, load_generator
    from shared.pipeline import GPU_LANES, QueueName

    if queues & GPU_LANES:
        check_device(settings.device)
        try:
            load_generator(settings=settings)
        except Exception as exc:
            raise CannotServe(f"model {settings.model} does not load on {settings.device}: {exc}") from exc
    if QueueName.CPU in queues:
        try:
            load_embedder(settings=settings)
        except Exception as exc:
            raise CannotServe(f"embedder {settings.embedder} does not load on {settings.device}: {exc}") from exc


def check_device(device: str) -> None:
    """``cuda``/``cuda:N``/``mps`` asked for and there (``auto`` and ``cpu`` always are)."""
    import torch

    kind = device.split(":", 1)[0]
    if kind == "cuda":
        index = torch.device(device).index or 0
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            found = torch.cuda.device_count() if torch.cuda.is_available() else 0
            raise CannotServe(f"device {device} was asked for, but {found} CUDA device(s) are visible")
    elif kind == "mps" and not torch.backends.mps.is_available():
        raise CannotServe("device mps was asked for, but MPS is not available")
