"""The long-running commands: ``smoothguard api``, ``smoothguard worker …`` and ``smoothguard up``."""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path


def api(args: argparse.Namespace) -> int:
    import uvicorn

    uvicorn.run("api.main:create_app", factory=True, host=args.host, port=args.port, log_level="info")
    return 0


def worker(args: argparse.Namespace) -> int:
    """GPU and CPU queues run in a solo pool (CUDA is not fork-safe; one model per process);
    a webhooks-only worker uses threads (deliveries wait on the network)."""
    from workers.celery_app import app

    schedule = str(Path(tempfile.gettempdir()) / "smoothguard-beat-schedule")
    queues = [q for q in args.queues if q != "beat"]
    if not queues:
        app.start(["beat", "-l", "info", "-s", schedule])
        return 0
    solo = bool({"gpu", "cpu"} & set(queues))
    argv = ["worker", "-Q", ",".join(queues), "-n", f"{'-'.join(queues)}@%h", "-l", "info",
            "--without-heartbeat", "--without-gossip", "--without-mingle"]  # fmt: skip
    argv += ["--pool", "solo"] if solo else ["--pool", "threads", "--concurrency", str(args.concurrency)]
    if args.beat or "beat" in args.queues:
        argv += ["-B", "-s", schedule]
    app.worker_main(argv)
    return 0


def up(args: argparse.Namespace) -> int:
    """Start everything, print how to reach it, stream the logs; Ctrl-C stops it all."""
    from shared.launcher import PROCESSES, Stack, dev_key

    stack = Stack(args.data_dir.resolve())
    lock = threading.Lock()

    def sink(name: str, line: str) -> None:
        with lock:
            print(f"{name:>8} | {line}", flush=True)

    try:
        print(f"starting PostgreSQL, Redis and S3 under {stack.root} …", flush=True)
        stack.start()
        url = f"http://{args.host}:{args.port}"
        key = dev_key(stack.env["SMOOTHGUARD_DATABASE_URL"])
        for name, argv in PROCESSES.items():
            extra = ["--host", args.host, "--port", str(args.port)] if name == "api" else []
            stack.spawn(name, argv + extra, env={"SMOOTHGUARD_PUBLIC_URL": url}, sink=sink)
        print(f"\nSmoothGuard is up: {url} (docs {url}/docs)\ndev API key: {key}\n"
              + "".join(f"  {k}={v}\n" for k, v in stack.env.items() if "SECRET" not in k)
              + f"logs in {stack.root / 'logs'}; Ctrl-C stops everything\n", flush=True)  # fmt: skip
        while not (dead := [n for n, p in stack.children.items() if p.poll() is not None]):
            time.sleep(0.5)
        print(f"smoothguard: {', '.join(dead)} exited; stopping", flush=True)
        return 1
    except KeyboardInterrupt:
        print("\nstopping …", flush=True)
        return 0
    finally:
        stack.stop()
