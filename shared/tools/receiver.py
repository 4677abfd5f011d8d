"""A local webhook receiver that verifies Standard Webhooks signatures: the demo's, and the
tests' (which script its answers, e.g. 500 then 200)."""

from __future__ import annotations

import json
import threading
import time
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
    """``with Receiver() as r:`` serves on 127.0.0.1 at ``r.url``; answers ``statuses`` in turn
    (then 200), checks each request against ``secret`` when set."""

    statuses: list[int] = field(default_factory=list)
    secret: str | None = None
    received: list[Received] = field(default_factory=list)

    def __enter__(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                hdrs = {k.lower(): v for k, v in self.headers.items()}
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                ok = verify(receiver.secret, hdrs, body, int(time.time())) if receiver.secret else None
                receiver.received.append(Received(hdrs, body, status, ok))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait(self, count: int, timeout: float = 60.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.received)} of {count} webhook requests after {timeout:.0f}s")
            time.sleep(0.05)
        return self.received
