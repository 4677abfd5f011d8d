"""`smoothguard up`: the whole service on one machine, no Docker — and the same launcher the
integration tests start their services and workers with.

Services: PostgreSQL, Redis and an S3 server from Python packages (``shared.tools.servers``), on loopback,
data under one folder — unless ``SMOOTHGUARD_DATABASE_URL`` / ``_REDIS_URL`` / ``_S3_ENDPOINT``
are set, in which case those services are used. Then: migrations, the bucket, and the processes
(API, GPU/CPU/webhook workers) as children whose output is streamed with a prefix.

Threads: the GPU and CPU workers both run torch, and torch (OpenMP, MKL, OpenBLAS) takes every core
by default — two such processes busy at once oversubscribe the machine. Each gets its share of the
cores instead (``SMOOTHGUARD_TORCH_THREADS``, unless set), which ``smoothguard worker`` turns into
the thread variables those libraries read when they load (``thread_environment``).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TypeVar

from shared.config import Settings
from shared.tools.servers import EmbeddedPostgres, EmbeddedRedis, EmbeddedS3, stop_process

T = TypeVar("T", EmbeddedPostgres, EmbeddedRedis, EmbeddedS3)
DEV_S3_KEY, DEV_S3_SECRET = "smoothguard-dev", "smoothguard-dev-secret"
PROCESSES = {  # name → smoothguard arguments (see `smoothguard api|worker --help`)
    "api": ["api"],
    "gpu": ["worker", "gpu"],
    "cpu": ["worker", "cpu", "audits", "--beat"],  # the sweeper runs beside the CPU worker (one beat per stack)
    "webhooks": ["worker", "webhooks"],
}
TORCH_PROCESSES = ("gpu", "cpu")  # the processes of PROCESSES that run torch: they share the cores out
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")  # read once, when a library loads


class Stack:
    """Services first (``start``), then processes (``spawn``); ``stop`` ends both, children first."""

    def __init__(self, root: Path, environ: dict[str, str] | None = None):
        self.root = root
        self.environ = dict(os.environ if environ is None else environ)
        self.servers: list[EmbeddedPostgres | EmbeddedRedis | EmbeddedS3] = []
        self.postgres: EmbeddedPostgres | None = None  # the embedded servers, where started
        self.redis: EmbeddedRedis | None = None
        self.s3: EmbeddedS3 | None = None
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.env: dict[str, str] = {}

    def start(self, database: str = "smoothguard") -> Stack:
        """Start what is not given, point ``env`` at it, create the database and bucket, migrate."""
        from shared.db import migrate

        self.root.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in self.environ.items() if k.startswith("SMOOTHGUARD_")}
        if "SMOOTHGUARD_DATABASE_URL" not in env:
            self.postgres = self._serve(EmbeddedPostgres(self.root))
            env["SMOOTHGUARD_DATABASE_URL"] = create_database(self.postgres.url, database)
        if "SMOOTHGUARD_REDIS_URL" not in env:
            self.redis = self._serve(EmbeddedRedis(self.root))
            env["SMOOTHGUARD_REDIS_URL"] = self.redis.url
        if "SMOOTHGUARD_S3_ENDPOINT" not in env:
            self.s3 = self._serve(EmbeddedS3(self.root, DEV_S3_KEY, DEV_S3_SECRET))
            env |= {
                "SMOOTHGUARD_S3_ENDPOINT": self.s3.endpoint,
                "SMOOTHGUARD_S3_ACCESS_KEY": DEV_S3_KEY,
                "SMOOTHGUARD_S3_SECRET_KEY": DEV_S3_SECRET,
                "SMOOTHGUARD_S3_SECURE": "false",
            }
        self.env = env
        migrate(env["SMOOTHGUARD_DATABASE_URL"])
        ensure_bucket(self.settings())
        return self

    def _serve(self, server: T) -> T:
        self.servers.append(server)
        server.start()
        return server

    def settings(self, **overrides: str) -> Settings:
        """The settings the children will read (``env`` + ``overrides``, as environment variables)."""
        env = self.env | overrides
        fields = {
            name: env[f"SMOOTHGUARD_{name.upper()}"]
            for name in Settings.model_fields
            if f"SMOOTHGUARD_{name.upper()}" in env
        }
        return Settings(**fields)  # type: ignore[arg-type]

    def spawn(
        self,
        name: str,
        args: list[str],
        env: dict[str, str] | None = None,
        sink: Callable[[str, str], None] | None = None,
    ) -> subprocess.Popen[bytes]:
        """``smoothguard <args>`` as a child; its output goes to ``<root>/logs/<name>.log`` and,
        line by line, to ``sink(name, line)`` when given."""
        logs = self.root / "logs"
        logs.mkdir(exist_ok=True)
        proc = subprocess.Popen(
            [sys.executable, "-m", "shared.tools.cli", *args],
            env=self.child_environment(name, env or {}),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parent.parent,
        )
        assert proc.stdout is not None
        threading.Thread(target=_pump, args=(name, proc.stdout, logs / f"{name}.log", sink), daemon=True).start()
        self.children[name] = proc
        return proc

    def child_environment(self, name: str, env: dict[str, str]) -> dict[str, str]:
        """A child's environment: ours, the services', ``env``; a torch process (``TORCH_PROCESSES``)
        gets its share of the cores unless ``SMOOTHGUARD_TORCH_THREADS`` is set (positive) already;
        each of ``PROCESSES``' workers its own metrics port (``metrics_port``); every child its own
        readiness file under the stack's folder (``smoothguard healthcheck`` reads one worker's)."""
        child_env = self.environ | self.env | env | {"PYTHONUNBUFFERED": "1"}
        child_env.setdefault("SMOOTHGUARD_READY_FILE", str(self.root / "run" / f"{name}.ready"))
        if name in TORCH_PROCESSES and int(child_env.get("SMOOTHGUARD_TORCH_THREADS") or 0) <= 0:
            child_env["SMOOTHGUARD_TORCH_THREADS"] = str(thread_share())
        if port := metrics_port(name, int(child_env.get("SMOOTHGUARD_METRICS_PORT") or 0)):
            child_env["SMOOTHGUARD_METRICS_PORT"] = str(port)
        return child_env

    def stop_children(self, names: list[str] | None = None, timeout: float = 20.0) -> None:
        """SIGTERM to all (or ``names``) at once, then wait; SIGKILL what outlives ``timeout``."""
        procs = [self.children.pop(n) for n in (names or list(self.children)) if n in self.children]
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            stop_process(proc, timeout)

    def stop(self) -> None:
        self.stop_children()
        if self.redis is not None:  # the beat's schedule files of a broker only this stack used
            schedule = Path(beat_schedule_path(self.redis.url))
            for file in schedule.parent.glob(schedule.name + "*"):
                file.unlink(missing_ok=True)
        for server in reversed(self.servers):
            server.stop()
        self.servers.clear()


def beat_schedule_path(redis_url: str) -> str:
    """The beat's schedule file (and its siblings: ``<path>*``), one per broker: two stacks on one
    machine never share it."""
    digest = hashlib.sha256(redis_url.encode()).hexdigest()[:16]
    return str(Path(tempfile.gettempdir()) / f"smoothguard-beat-{digest}")


def metrics_port(name: str, base: int) -> int:
    """Where ``PROCESSES``' worker ``name`` serves its metrics when the stack is asked for them from
    ``base`` on: the GPU worker on ``base``, the CPU worker on ``base + 1``, … (0: none; any other
    process keeps ``base``)."""
    workers = [n for n in PROCESSES if n != "api"]
    return base + workers.index(name) if base > 0 and name in workers else base


def thread_share(cores: int | None = None) -> int:
    """Threads for each of the stack's torch processes: the cores shared out between them, at least one."""
    return max(1, (cores or usable_cores()) // len(TORCH_PROCESSES))


def usable_cores() -> int:
    """The cores this process may run on (its affinity, where the system has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def thread_environment(threads: int) -> dict[str, str]:
    """The variables that make torch and BLAS use ``threads`` threads (read when they load); none for 0."""
    return {name: str(threads) for name in THREAD_VARIABLES} if threads > 0 else {}


def _pump(name: str, stream: IO[bytes], log: Path, sink: Callable[[str, str], None] | None) -> None:
    with log.open("ab") as out:
        for raw in iter(stream.readline, b""):
            out.write(raw)
            out.flush()
            if sink is not None:
                sink(name, raw.decode(errors="replace").rstrip())


def create_database(server_url: str, name: str) -> str:
    """``name`` on the server at ``server_url`` (created if missing); its URL."""
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as con:
        if con.execute("select 1 from pg_database where datname = %s", (name,)).fetchone() is None:
            con.execute(f'create database "{name}"')
    return server_url.rsplit("/", 1)[0] + f"/{name}"


def ensure_bucket(settings: Settings, timeout: float = 30.0) -> None:
    """Create the bucket, waiting for a just-started S3 server (its port opens before its filer)."""
    from minio.error import S3Error

    from shared.storage import ObjectStore

    store, deadline = ObjectStore.from_settings(settings), time.monotonic() + timeout
    while True:
        try:
            store.ensure_bucket()
            return
        except (S3Error, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def dev_key(database_url: str, tenant: str = "dev") -> str:
    """A new API key for the ``dev`` tenant (created on first use)."""
    from shared.db import session_scope
    from shared.tenants import create_api_key, create_tenant, get_tenant

    with session_scope(database_url) as session:
        try:
            row = get_tenant(session, name=tenant)
        except ValueError:
            row = create_tenant(session, name=tenant)
        return create_api_key(session, tenant=row, name="smoothguard up")[1]
