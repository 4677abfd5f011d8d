"""Production start-up: settings that refuse development secrets, ``smoothguard healthcheck``
(one file read, no model library), ``smoothguard migrate`` waiting for a database that is not
reachable yet, and how ``smoothguard worker gpu`` consumes the two GPU lanes."""

import argparse
import json
import re
import socket
import subprocess
import sys
import threading
import time
from urllib.parse import urlsplit

import pytest
from pydantic import ValidationError

from shared.config import Settings
from shared.tools.commands import celery_arguments, wait_for_database, worker_queues
from shared.tools.servers import free_port

STRONG = {
    "environment": "production",
    "database_url": "postgresql://smoothguard:k3pt-0ut-0f-git@postgres:5432/smoothguard",
    "s3_access_key": "smoothguard-app",
    "s3_secret_key": "a-long-random-secret",
}


def test_production_refuses_the_development_and_weak_secrets():
    assert Settings(**STRONG).weak_secrets() == []
    assert Settings().environment == "local" and len(Settings().weak_secrets()) == 2  # local: allowed, not hidden
    for weak in (
        {"database_url": "postgresql://postgres@127.0.0.1:5432/smoothguard"},  # no password (the default URL)
        {"database_url": "postgresql://smoothguard:postgres@db/smoothguard"},
        {"database_url": "postgresql://smoothguard:short@db/smoothguard"},
        {"s3_access_key": "smoothguard-dev"},
        {"s3_secret_key": "smoothguard-dev-secret"},
        {"s3_access_key": "minioadmin", "s3_secret_key": "minioadmin"},
        {"admin_token": "admin"},
    ):
        with pytest.raises(ValidationError, match="production refuses"):
            Settings(**(STRONG | weak))
    assert Settings(**(STRONG | {"admin_token": "t" * 32})).admin_token  # a long token is fine
    with pytest.raises(ValidationError, match="local or production"):
        Settings(environment="prod")


HEALTHCHECK = """
import sys, time
start = time.perf_counter()
from shared.tools.cli import main
code = main(["healthcheck"])
heavy = sorted(m for m in ("torch", "transformers", "celery", "sqlalchemy", "redis") if m in sys.modules)
print(code, round(time.perf_counter() - start, 2), heavy)
"""


def healthcheck(ready_file) -> tuple[int, float, str]:
    env = {"SMOOTHGUARD_READY_FILE": str(ready_file), "SMOOTHGUARD_WORKER_TIMEOUT_S": "30", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", HEALTHCHECK], env=env, capture_output=True, text=True, timeout=60)
    code, seconds, heavy = out.stdout.strip().splitlines()[-1].split(" ", 2)
    return int(code), float(seconds), heavy + " " + out.stderr.strip()


def test_healthcheck_reads_the_readiness_file_and_loads_no_model_library(tmp_path):
    from shared.readiness import mark_ready

    ready_file = tmp_path / "worker.ready"
    code, seconds, said = healthcheck(ready_file)
    assert code == 1 and "no readiness file" in said and said.startswith("[]")
    mark_ready(Settings(ready_file=str(ready_file)), "gpu,gpu-audits")
    code, seconds, said = healthcheck(ready_file)
    assert code == 0 and said.startswith("[]")  # no torch, Celery, SQLAlchemy or Redis client imported
    print(f"healthcheck: {seconds:.2f} s in the process (imports included)")
    assert seconds < 3
    body = json.loads(ready_file.read_text())
    ready_file.write_text(json.dumps(body | {"at": time.time() - 60}))  # the worker stopped beating a minute ago
    code, _, said = healthcheck(ready_file)
    assert code == 1 and re.search(r"last heartbeat was 6\d s ago", said), said  # 60 s, + a loaded machine's delay


def test_migrate_waits_for_a_database_that_comes_up_late(empty_database, capfd):
    port, real = free_port(), urlsplit(empty_database)
    late = real._replace(netloc=real.netloc.replace(f":{real.port}", f":{port}")).geturl()
    with pytest.raises(Exception, match="connect|refused"):
        wait_for_database(late, wait_s=1.0, interval_s=0.3)  # nothing listens: the last error, after the wait
    assert "not reachable yet" in capfd.readouterr().err

    threading.Timer(1.5, forward, args=(port, real.port)).start()  # the server comes up in 1.5 s
    start = time.monotonic()
    wait_for_database(late, wait_s=30, interval_s=0.3)
    assert 1.4 < time.monotonic() - start < 10 and "retrying" in capfd.readouterr().err


def forward(port: int, target: int) -> None:
    """A TCP forwarder on ``port`` to ``target`` on loopback (a server that starts late)."""
    listener = socket.create_server(("127.0.0.1", port))

    def pipe(a: socket.socket, b: socket.socket) -> None:
        with a, b:
            while data := a.recv(65536):
                b.sendall(data)

    def serve() -> None:
        while True:
            client, _ = listener.accept()
            upstream = socket.create_connection(("127.0.0.1", target))
            threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()


def test_a_gpu_worker_consumes_both_lanes_interactive_first():
    assert worker_queues(["gpu"]) == ["gpu", "gpu-audits"]
    assert worker_queues(["gpu", "cpu", "webhooks"]) == ["gpu", "gpu-audits", "cpu", "webhooks"]
    assert worker_queues(["gpu-audits"]) == ["gpu-audits"]  # an audit-only worker
    argv = celery_arguments(argparse.Namespace(queues=["gpu"], beat=False, concurrency=8))
    assert argv[argv.index("-Q") + 1] == "gpu,gpu-audits" and argv[argv.index("--pool") + 1] == "solo"
    from workers.celery_app import make_app

    options = make_app(Settings()).conf.broker_transport_options
    assert options["queue_order_strategy"] == "priority"  # BRPOP gpu gpu-audits …: the first non-empty list wins
