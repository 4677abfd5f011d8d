"""A local webhook receiver that verifies Standard Webhooks signatures: the demo's, the tests'
(which script its answers, e.g. 500 then 200), and ``smoothguard receiver``'s, which prints each
delivery and whether its signature verifies (to watch a stack's webhooks without a public host)."""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from shared.webhooks.signing import verify


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    answered: int
    verified: bool | None  # None until a secret is known

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """``with Receiver() as r:`` serves on ``host:port`` (default 127.0.0.1, a free port) at ``r.url``;
    answers ``statuses`` in turn (then 200), checks each request against ``secret`` when set and
    hands it to ``on_receive`` when given."""

    statuses: list[int] = field(default_factory=list)
    secret: str | None = None
    received: list[Received] = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 0
    on_receive: Callable[[Received], None] | None = None
    answered: int = 0  # responses sent (a request is in ``received`` before its answer goes out)

    def __enter__(self) -> Receiver:
        receiver, lock = self, threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                hdrs = {k.lower(): v for k, v in self.headers.items()}
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                received = Received(hdrs, body, status, receiver.check(hdrs, body))
                if receiver.on_receive is not None:
                    receiver.on_receive(received)
                receiver.received.append(received)
                self.send_response(status)
                self.end_headers()
                self.wfile.flush()
                with lock:
                    receiver.answered += 1

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((self.host, self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def check(self, hdrs: dict[str, str], body: bytes) -> bool | None:
        """The signature's verdict (None without a secret); a request missing the headers fails."""
        if not self.secret:
            return None
        try:
            return verify(self.secret, hdrs, body, int(time.time()))
        except (KeyError, ValueError):
            return False

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.server.server_address[1]}/hook"

    def wait(self, count: int, timeout: float = 60.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.received)} of {count} webhook requests after {timeout:.0f}s")
            time.sleep(0.05)
        return self.received


def describe(received: Received) -> str:
    """One line per delivery: its id, event type, signature verdict and data."""
    verdict = {True: "VERIFIED", False: "INVALID", None: "not checked (no --secret)"}[received.verified]
    try:
        payload = received.json
        event, data = payload.get("type", "?"), json.dumps(payload.get("data"))
    except (ValueError, AttributeError):
        event, data = "?", received.body[:200].decode(errors="replace")
    msg_id = received.headers.get("webhook-id", "-")
    return f"{msg_id} {event} signature {verdict}; data: {data}"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "receiver",
        help="receive webhooks locally: print each delivery and whether its signature verifies",
        description="Serves POST http://HOST:PORT/hook. Register that URL (POST /v1/webhooks; the stack "
        "needs SMOOTHGUARD_WEBHOOK_ALLOWLIST to name the host) and pass the secret it returns.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    p.add_argument("--port", type=int, default=9000, help="port to listen on (default %(default)s)")
    p.add_argument("--secret", default=None, help="the endpoint's whsec_… secret: each signature is checked with it")
    p.add_argument(
        "--count", type=int, default=None, help="exit after this many deliveries (default: run until Ctrl-C)"
    )


def run(args: argparse.Namespace) -> int:
    """Serve until ``--count`` deliveries (or Ctrl-C); 1 when a signature did not verify."""

    def show(received: Received) -> None:
        print(describe(received), flush=True)

    with Receiver(secret=args.secret, host=args.host, port=args.port, on_receive=show) as receiver:
        print(f"listening on {receiver.url}; Ctrl-C stops", file=sys.stderr, flush=True)
        try:
            while args.count is None or receiver.answered < args.count:
                time.sleep(0.1)
        except KeyboardInterrupt:
            pass
    return 1 if any(r.verified is False for r in receiver.received) else 0
