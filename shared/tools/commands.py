"""The service commands: ``smoothguard api``, ``smoothguard worker …``, ``smoothguard up``, and for
deployments ``smoothguard migrate`` (waits for the database) and ``smoothguard healthcheck``."""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from shared.tools.launcher import (
    PROCESSES,
    Stack,
    beat_schedule_path,
    dev_key,
    thread_environment,
    usable_cores,
)

GPU_LANES = ["gpu", "gpu-audits"]  # `worker gpu` consumes both, interactive first (see workers.celery_app)
# each API process has its own database pool (up to 15 connections): more processes than this on a
# big machine (or in a container that sees all the host's cores) are asked for with --workers
MAX_DEFAULT_API_WORKERS = 4


def api(args: argparse.Namespace) -> int:
    """uvicorn with ``--workers`` processes (default: one per core, at most ``MAX_DEFAULT_API_WORKERS``)
    on one socket. With more than one, their request metrics are kept in a folder of this run that
    every process writes (``prometheus_client``'s multiprocess mode), so any of them answers
    ``/metrics`` for all."""
    import uvicorn

    from shared.config import get_settings

    workers = args.workers or min(usable_cores(), MAX_DEFAULT_API_WORKERS)
    if workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="smoothguard-metrics-")
        atexit.register(shutil.rmtree, os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
    # JSON logs: uvicorn leaves logging alone, each process's create_app sets it up (shared.observability.logs)
    log_config = None if get_settings().log_format == "json" else uvicorn.config.LOGGING_CONFIG
    uvicorn.run(
        "api.main:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=workers,
        log_level="info",
        log_config=log_config,
    )
    return 0


def worker(args: argparse.Namespace) -> int:
    """Becomes ``python -m workers <celery arguments>`` (the worker process imports Celery and the
    tasks; this command line imports neither). GPU and CPU queues run in a solo pool (CUDA is not
    fork-safe; one model per process); a webhooks-only worker uses threads (deliveries wait on the
    network). ``torch_threads`` (when set) goes into the thread variables torch and BLAS read as
    they load."""
    from shared.config import get_settings

    os.environ.update(thread_environment(get_settings().torch_threads))
    os.execv(sys.executable, [sys.executable, "-m", "workers", *celery_arguments(args)])
    return 0  # not reached: the process is the worker now


def celery_arguments(args: argparse.Namespace) -> list[str]:
    from shared.config import get_settings

    schedule = beat_schedule_path(get_settings().redis_url)
    queues = worker_queues(args.queues)
    if not queues:
        return ["beat", "-l", "info", "-s", schedule]
    solo = bool({*GPU_LANES, "cpu", "audits"} & set(queues))
    argv = ["worker", "-Q", ",".join(queues), "-n", f"{'-'.join(queues)}@%h", "-l", "info"]
    # task events (-E) and heartbeats on: Flower or a Celery exporter sees tasks and workers; gossip and
    # mingle off (workers talking to each other: O(workers²) broker traffic, slower starts; nothing uses them)
    argv += ["-E", "--without-gossip", "--without-mingle"]
    argv += ["--pool", "solo"] if solo else ["--pool", "threads", "--concurrency", str(args.concurrency)]
    if args.beat or "beat" in args.queues:
        argv += ["-B", "-s", schedule]
    return argv


def worker_queues(names: list[str]) -> list[str]:
    """The queues in consuming order: ``gpu`` stands for both GPU lanes, ``gpu`` first."""
    expanded = [lane for name in names if name != "beat" for lane in (GPU_LANES if name == "gpu" else [name])]
    return list(dict.fromkeys(expanded))


def healthcheck(args: argparse.Namespace) -> int:
    """0 when this host's (container's) worker is ready — its model loaded, its heartbeat fresh
    (``shared.readiness``); 1 otherwise. Reads one file: no torch, no database, no broker."""
    from shared.config import get_settings
    from shared.readiness import check

    ready, why = check(get_settings())
    print(why, file=sys.stdout if ready else sys.stderr)
    return 0 if ready else 1


def migrate(args: argparse.Namespace) -> int:
    """The migrations, once the database answers: while it cannot be reached (a fresh volume still
    initialising, the server not started yet) it is tried again every second for ``--wait`` seconds."""
    from shared.config import get_settings
    from shared.db import migrate as upgrade

    url = get_settings().database_url
    wait_for_database(url, args.wait)
    upgrade(url)
    print("database migrated to head")
    return 0


def wait_for_database(url: str, wait_s: float, interval_s: float = 1.0) -> None:
    """Return once a connection opens; after ``wait_s`` seconds, the last error (``OperationalError``)."""
    import sqlalchemy
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.pool import NullPool

    from shared.db import sqlalchemy_url

    engine = sqlalchemy.create_engine(sqlalchemy_url(url), poolclass=NullPool, connect_args={"connect_timeout": 3})
    deadline = time.monotonic() + wait_s
    try:
        while True:
            try:
                with engine.connect():
                    return
            except OperationalError as exc:
                if time.monotonic() >= deadline:
                    raise
                reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
                left = deadline - time.monotonic()
                print(f"the database is not reachable yet ({reason}); retrying for {left:.0f} s more", file=sys.stderr)
                time.sleep(interval_s)
    finally:
        engine.dispose()


def start_all(stack: Stack, host: str, port: int, sink: Callable[[str, str], None] | None = None, **env: str) -> str:
    """Services, migrations and bucket, then the API and the three workers; the API's URL once it is ready."""
    stack.start()
    url = f"http://{host}:{port}"
    for name, argv in PROCESSES.items():
        extra = ["--host", host, "--port", str(port)] if name == "api" else []
        stack.spawn(name, argv + extra, env={"SMOOTHGUARD_PUBLIC_URL": url} | env, sink=sink)
    wait_ready(url, stack)
    return url


def wait_ready(url: str, stack: Stack, timeout: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if dead := [n for n, p in stack.children.items() if p.poll() is not None]:
            raise RuntimeError(f"{', '.join(dead)} exited; see {stack.root / 'logs'}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"the API at {url} was not ready after {timeout:.0f}s")


def stop_on_signals() -> None:
    """Ctrl-C, SIGTERM and SIGHUP all stop the stack cleanly — SIGINT too when the shell started us
    with it ignored (``… &`` in a script), where Ctrl-C alone would leave orphans."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)


def up(args: argparse.Namespace) -> int:
    """Start everything, then print how to reach it (URL, dev API key, services) as the last thing on
    the screen; the processes' output goes to ``<data-dir>/logs/`` (and here too with ``--verbose``).
    Ctrl-C, SIGTERM or SIGHUP stops it all."""
    stop_on_signals()
    stack = Stack(args.data_dir.resolve())
    lock = threading.Lock()

    def sink(name: str, line: str) -> None:
        with lock:
            print(f"{name:>8} | {line}", flush=True)

    try:
        print(f"starting PostgreSQL, Redis and S3 under {stack.root}, then the API and workers …", flush=True)
        started = time.time()
        url = start_all(stack, args.host, args.port, sink if args.verbose else None)
        print(f"the API is ready at {url}; waiting for the workers to load their models …", flush=True)
        wait_workers_ready(stack, started)
        key = dev_key(stack.env["SMOOTHGUARD_DATABASE_URL"])
        print(up_banner(stack, url, key, args.verbose), flush=True)
        while not (dead := [n for n, p in stack.children.items() if p.poll() is not None]):
            time.sleep(0.5)
        print(f"smoothguard: {', '.join(dead)} exited; stopping. The end of its log:", flush=True)
        print(log_tail(stack.root / "logs" / f"{dead[0]}.log"), flush=True)
        return 1
    except KeyboardInterrupt:
        print("\nstopping …", flush=True)
        return 0
    finally:
        stack.stop()


def wait_workers_ready(stack: Stack, since: float) -> None:
    """Until every worker has loaded its model and written its readiness file (after ``since``: not
    a stale one of an earlier run), so that a job sent now starts at once; no time limit (a large
    model loads for minutes), but a worker that exits ends the wait."""
    files = [Path(stack.child_environment(n, {})["SMOOTHGUARD_READY_FILE"]) for n in stack.children if n != "api"]
    while not all(f.exists() and f.stat().st_mtime >= since for f in files):
        if dead := [n for n, p in stack.children.items() if p.poll() is not None]:
            raise RuntimeError(f"{', '.join(dead)} exited; see {stack.root / 'logs'}")
        time.sleep(0.2)


def up_banner(stack: Stack, url: str, key: str, verbose: bool) -> str:
    """What ``up`` prints once ready: the API, its docs, the dev key, the services, where the logs are."""
    logs = stack.root / "logs"
    settings = "".join(f"    {k}={v}\n" for k, v in stack.env.items() if "SECRET" not in k)
    streamed = "streamed above too" if verbose else "--verbose streams them here"
    return (
        f"\n{'=' * 72}\nSmoothGuard is up: {url} (docs {url}/docs)\n"
        f"  dev API key: {key}\n"
        f"  for the CLI: export SMOOTHGUARD_PUBLIC_URL={url} SMOOTHGUARD_API_KEY={key}\n"
        f"  settings of its processes:\n{settings}"
        f"  logs: {logs}/{{{','.join(stack.children)}}}.log ({streamed})\n"
        f"Ctrl-C stops everything\n{'=' * 72}"
    )


def log_tail(log: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a process's log ("" when it wrote none)."""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""


def demo(args: argparse.Namespace) -> int:
    """The README's main job: the embedded stack (accepting the robust and the audio demo models
    too), one certifying audit per demo model over REST (L2 and L∞ attacks; a pixel-σ sweep for
    the image models, a waveform-σ sweep for the audio one), their reports and signed webhooks."""
    from shared.config import DEMO_AUDIO_MODEL
    from shared.tools.demo import ROBUST_DEMO_MODEL, AudioPlan, DemoPlan, run_demo
    from shared.tools.servers import free_port

    overrides = {
        k: v
        for k, v in {
            "images": args.images,
            "steps": args.steps,
            "stop_loss": args.stop_loss,
            "num_samples": args.num_samples,
        }.items()
        if v is not None
    }
    plan = DemoPlan.full(**overrides) if args.full else DemoPlan.fast(**overrides)
    audio = {"clips": args.clips} if args.clips is not None else {}
    audio |= {k: v for k, v in overrides.items() if k != "images"}
    root = Path(tempfile.mkdtemp(prefix="smoothguard-demo-")) if args.data_dir is None else args.data_dir.resolve()
    stack = Stack(root)
    try:
        kept = "" if args.data_dir else " (a temporary folder, removed at the end)"
        print(
            f"starting PostgreSQL, Redis, S3, the API and the GPU/CPU/webhook workers under {root}{kept} …", flush=True
        )
        known = f"{ROBUST_DEMO_MODEL},{DEMO_AUDIO_MODEL}"
        env = {"SMOOTHGUARD_WEBHOOK_ALLOWLIST": "127.0.0.1", "SMOOTHGUARD_KNOWN_MODELS": known}
        url = start_all(stack, "127.0.0.1", free_port(), None, **env)
        key = dev_key(stack.env["SMOOTHGUARD_DATABASE_URL"])
        return run_demo(url, key, plan=plan, out=args.out, audio=AudioPlan(**audio), modality=args.modality)
    finally:
        print("stopping the stack …", flush=True)
        stack.stop()
        if args.data_dir is None:  # the demo's own temporary folder: nothing in it outlives the run
            shutil.rmtree(root, ignore_errors=True)
