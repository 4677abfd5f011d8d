"""Request bodies are bounded while they arrive: a declared ``Content-Length`` over the route's
limit is refused with 413 before a byte is read, and a body without one (chunked) is cut off at
the limit — a 1 GiB upload is never spooled to disk to be refused afterwards."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import problem
from shared.config import Settings

MULTIPART_SLACK = 2**20  # form fields and part headers around the file


def limit_for(settings: Settings) -> Callable[[str], int]:
    """Dataset archives may be up to ``max_dataset_bytes``; every other body ``max_upload_bytes``."""

    def limit(path: str) -> int:
        size = settings.max_dataset_bytes if path.startswith("/v1/datasets") else settings.max_upload_bytes
        return size + MULTIPART_SLACK

    return limit


class BodyLimit:
    def __init__(self, app: ASGIApp, limit: Callable[[str], int]):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            detail = f"the request body is over {limit} bytes" if declared.isdigit() else "invalid Content-Length"
            await problem(413 if declared.isdigit() else 400, detail, instance=scope["path"])(scope, receive, send)
            return
        seen = 0

        async def bounded() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(413, f"the request body is over {limit} bytes")
            return message

        await self.app(scope, bounded, send)
