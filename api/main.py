"""The FastAPI app: routes, RFC 9457 problem+json errors, health. Never imports torch."""

from __future__ import annotations

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from api.routes import jobs
from shared.config import Settings, get_settings
from shared.storage import ObjectStore

PROBLEM = "application/problem+json"


def problem(status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def create_app(settings: Settings | None = None) -> FastAPI:
    app = FastAPI(title="SmoothGuard", version="0.1.0")
    app.state.settings = settings or get_settings()
    app.state.store = ObjectStore.from_settings(app.state.settings)
    app.include_router(jobs.router)

    @app.exception_handler(HTTPException)
    async def http_problem(request: Request, exc: HTTPException) -> JSONResponse:
        titles = {401: "Unauthorized", 404: "Not Found", 409: "Conflict", 422: "Unprocessable Content"}
        return problem(exc.status_code, titles.get(exc.status_code, "Error"), str(exc.detail),
                       headers=getattr(exc, "headers", None))  # fmt: skip

    @app.exception_handler(RequestValidationError)
    async def validation_problem(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return problem(422, "Unprocessable Content", detail)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
