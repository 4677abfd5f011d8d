"""The API's resources: ``sg.jobs``, ``sg.media``, ``sg.audits``, ``sg.datasets``, ``sg.webhooks``."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

from pydantic import BaseModel, TypeAdapter

from smoothguard_client.backoff import Backoff
from smoothguard_client.errors import SmoothGuardError
from smoothguard_client.models import (
    Audit,
    Dataset,
    Delivery,
    Job,
    Media,
    Page,
    Sample,
    WebhookEndpoint,
    WebhookEvent,
)

if TYPE_CHECKING:
    from smoothguard_client.client import SmoothGuard

Id = UUID | str
FileInput = str | Path | bytes | tuple[str, bytes]
ReportFormat = Literal["html", "json", "csv", "jsonl"]
# how often to look: a job often ends in well under a second, an audit takes minutes to hours
JOB_POLL = Backoff(initial=0.05, factor=1.5, maximum=2.0, jitter=0.2)
AUDIT_POLL = Backoff(initial=1.0, factor=1.5, maximum=15.0, jitter=0.2)
DATASET_POLL = Backoff(initial=0.25, factor=1.5, maximum=5.0, jitter=0.2)


class DatasetInvalid(SmoothGuardError):
    """The server checked the uploaded archive and refused it; ``dataset.error`` says why."""

    def __init__(self, dataset: Dataset):
        super().__init__(f"dataset {dataset.id} is {dataset.status}: {dataset.error}")
        self.dataset = dataset


def file_part(file: FileInput, default_name: str = "upload") -> tuple[str, bytes]:
    """A multipart file as ``(name, bytes)``: read now, so that a retry sends the same bytes."""
    if isinstance(file, tuple):
        return file
    if isinstance(file, bytes):
        return default_name, file
    path = Path(file)
    return path.name, path.read_bytes()


def form_value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def plain(body: Mapping[str, Any] | BaseModel) -> Any:
    return body.model_dump(mode="json", exclude_none=True) if isinstance(body, BaseModel) else dict(body)


class Resource:
    def __init__(self, api: SmoothGuard):
        self.api = api


class Jobs(Resource):
    """Defense jobs: one input, one prompt, the smoothed answer with its consensus."""

    def submit(
        self,
        file: FileInput | None = None,
        *,
        prompt: str,
        media_id: Id | None = None,
        idempotency_key: str | None = None,
        **options: Any,
    ) -> Job:
        """Queue a job for ``file`` (multipart) or an uploaded ``media_id`` (JSON); ``options`` are the
        defense's fields (``num_samples``, ``sigma``, ``seed``, ``model``, ``callback_url``, …)."""
        if (file is None) == (media_id is None):
            raise ValueError("give either file or media_id")
        fields = {k: v for k, v in options.items() if v is not None}
        if file is not None:
            data = {"prompt": prompt} | {k: form_value(v) for k, v in fields.items()}
            return self.api.create("/v1/jobs", Job, idempotency_key, files={"file": file_part(file)}, data=data)
        body = {"prompt": prompt, "media_id": str(media_id), **fields}
        return self.api.create("/v1/jobs", Job, idempotency_key, json=body)

    def get(self, job_id: Id) -> Job:
        return self.api.get(f"/v1/jobs/{job_id}", Job)

    def list(self, *, status: str | None = None, limit: int = 50, cursor: str | None = None) -> Page[Job]:
        params = {k: v for k, v in {"status": status, "limit": limit, "cursor": cursor}.items() if v is not None}
        return self.api.get("/v1/jobs", Page[Job], params=params)

    def samples(self, job_id: Id) -> builtins.list[Sample]:
        """Every candidate answer, in index order, with its cluster and whether it was selected."""
        return TypeAdapter(builtins.list[Sample]).validate_python(
            self.api.request("GET", f"/v1/jobs/{job_id}/samples").json()
        )

    def cancel(self, job_id: Id) -> Job:
        return self.api.send("POST", f"/v1/jobs/{job_id}/cancel", Job)

    def deliveries(self, job_id: Id) -> builtins.list[Delivery]:
        return _list(self.api, f"/v1/jobs/{job_id}/deliveries", Delivery)

    def redeliver_webhook(self, job_id: Id) -> Job:
        return self.api.send("POST", f"/v1/jobs/{job_id}/webhook/redeliver", Job)

    def wait(
        self,
        job_id: Id,
        *,
        timeout: float | None = None,
        backoff: Backoff = JOB_POLL,
        on_update: Callable[[Job], None] | None = None,
    ) -> Job:
        """The job once it finished (succeeded, abstained, failed or cancelled)."""
        return self.api.poll(
            f"/v1/jobs/{job_id}", Job, lambda j: j.finished, timeout=timeout, backoff=backoff, on_update=on_update
        )


class MediaFiles(Resource):
    """Media uploaded once and named by ``media_id`` in jobs."""

    def upload(self, file: FileInput) -> Media:
        """The same bytes give the same media (a retry is harmless)."""
        return self.api.send("POST", "/v1/media", Media, idempotent=True, files={"file": file_part(file)})

    def get(self, media_id: Id) -> Media:
        return self.api.get(f"/v1/media/{media_id}", Media)


class Audits(Resource):
    """Robustness audits: a benchmark set, attacks, a σ sweep of the defense, a report."""

    def submit(self, spec: Mapping[str, Any] | BaseModel, *, idempotency_key: str | None = None) -> Audit:
        """Queue an audit: ``spec`` is the ``POST /v1/audits`` body (dataset, attacks, defense, …)."""
        return self.api.create("/v1/audits", Audit, idempotency_key, json=plain(spec))

    def get(self, audit_id: Id) -> Audit:
        return self.api.get(f"/v1/audits/{audit_id}", Audit)

    def list(self, *, limit: int = 20, cursor: str | None = None) -> Page[Audit]:
        params = {"limit": limit} | ({"cursor": cursor} if cursor else {})
        return self.api.get("/v1/audits", Page[Audit], params=params)

    def cancel(self, audit_id: Id) -> Audit:
        return self.api.send("POST", f"/v1/audits/{audit_id}/cancel", Audit)

    def report(self, audit_id: Id, format: ReportFormat = "html") -> bytes:
        """A finished audit's report file: the self-contained HTML, the JSON, or the items' CSV."""
        return self.api.request("GET", f"/v1/audits/{audit_id}/report", params={"format": format}).content

    def download_report(self, audit_id: Id, dest: str | Path, format: ReportFormat | None = None) -> Path:
        """Save the report at ``dest``; the format is the file's suffix unless given."""
        dest = Path(dest)
        fmt = format or dest.suffix.lstrip(".")
        if fmt not in ("html", "json", "csv", "jsonl"):
            raise ValueError(f"a report is html, json, csv or jsonl, not {fmt!r}")
        dest.write_bytes(self.report(audit_id, fmt))  # type: ignore[arg-type]
        return dest

    def deliveries(self, audit_id: Id) -> builtins.list[Delivery]:
        return _list(self.api, f"/v1/audits/{audit_id}/deliveries", Delivery)

    def wait(
        self,
        audit_id: Id,
        *,
        timeout: float | None = None,
        backoff: Backoff = AUDIT_POLL,
        on_update: Callable[[Audit], None] | None = None,
    ) -> Audit:
        """The audit once it finished; ``on_update`` sees every look (progress bars)."""
        return self.api.poll(
            f"/v1/audits/{audit_id}", Audit, lambda a: a.finished, timeout=timeout, backoff=backoff, on_update=on_update
        )


class Datasets(Resource):
    """Benchmark archives (POPE, LLaVA-Bench in-the-wild, MM-SafetyBench layouts) that audits read."""

    def upload(
        self,
        file: FileInput,
        format: str,
        *,
        wait: bool = True,
        timeout: float | None = None,
        idempotency_key: str | None = None,
    ) -> Dataset:
        """Upload a zip or tar; with ``wait`` the ``ready`` dataset (``DatasetInvalid`` with the
        server's reason when its check fails). Its ``sha256`` is an audit's ``dataset.archive``."""
        files = {"file": file_part(file, "dataset.zip")}
        dataset = self.api.create("/v1/datasets", Dataset, idempotency_key, files=files, data={"format": format})
        if wait:
            dataset = self.wait(dataset.id, timeout=timeout)
        if dataset.status == "invalid":
            raise DatasetInvalid(dataset)
        return dataset

    def get(self, dataset_id: Id) -> Dataset:
        return self.api.get(f"/v1/datasets/{dataset_id}", Dataset)

    def list(self, *, limit: int = 20, cursor: str | None = None) -> Page[Dataset]:
        params = {"limit": limit} | ({"cursor": cursor} if cursor else {})
        return self.api.get("/v1/datasets", Page[Dataset], params=params)

    def wait(self, dataset_id: Id, *, timeout: float | None = None, backoff: Backoff = DATASET_POLL) -> Dataset:
        return self.api.poll(
            f"/v1/datasets/{dataset_id}", Dataset, lambda d: d.finished, timeout=timeout, backoff=backoff
        )


class Webhooks(Resource):
    """Webhook endpoints (``callback_url`` of jobs and audits) and the events sent to them."""

    def create(self, url: str, *, idempotency_key: str | None = None) -> WebhookEndpoint:
        """Register ``url``; the returned ``secret`` (``whsec_…``) is shown only now: keep it for
        ``verify_webhook``."""
        return self.api.create("/v1/webhooks", WebhookEndpoint, idempotency_key, json={"url": url})

    def list(self) -> builtins.list[WebhookEndpoint]:
        return _list(self.api, "/v1/webhooks", WebhookEndpoint)

    def rotate_secret(self, endpoint_id: Id) -> WebhookEndpoint:
        """A new secret; for a while deliveries are signed with the old one too."""
        return self.api.send("POST", f"/v1/webhooks/{endpoint_id}/rotate-secret", WebhookEndpoint)

    def enable(self, endpoint_id: Id) -> WebhookEndpoint:
        return self.api.send("POST", f"/v1/webhooks/{endpoint_id}/enable", WebhookEndpoint, idempotent=True)

    def delete(self, endpoint_id: Id) -> None:
        self.api.request("DELETE", f"/v1/webhooks/{endpoint_id}")

    def events(self, *, state: str | None = None, limit: int = 100) -> builtins.list[WebhookEvent]:
        """Newest first; ``state="exhausted"``: those whose every attempt failed (redeliver them)."""
        params = {"limit": limit} | ({"state": state} if state else {})
        return _list(self.api, "/v1/webhooks/events", WebhookEvent, params=params)

    def redeliver(self, event_id: Id) -> WebhookEvent:
        return self.api.send("POST", f"/v1/webhooks/events/{event_id}/redeliver", WebhookEvent)


def _list(api: SmoothGuard, path: str, model: type[Any], **kw: Any) -> list[Any]:
    return TypeAdapter(list[model]).validate_python(api.request("GET", path, **kw).json())  # type: ignore[valid-type]
