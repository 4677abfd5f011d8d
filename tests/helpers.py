"""Helpers of the API and job tests."""

import time

from pydantic import BaseModel

from shared.config import DEMO_IMAGE, DEMO_MODEL
from shared.models import Audit, AuditItem


def auth(key):
    return {"Authorization": f"Bearer {key}"}


def post_job(client, key, data=None, **form):
    files = {"file": ("x.png", data if data is not None else DEMO_IMAGE.read_bytes(), "image/png")}
    return client.post(
        "/v1/jobs", headers=auth(key), files=files, data={"prompt": "What colour is the circle?", **form}
    )


def wait_finished(client, key, job_id, timeout=180):
    deadline = time.monotonic() + timeout
    while (body := client.get(f"/v1/jobs/{job_id}", headers=auth(key)).json())["finished_at"] is None:
        assert time.monotonic() < deadline, body
        time.sleep(0.2)
    return body


def audit_item(s, tenant_id, media_id) -> AuditItem:
    """One item of a new running audit (for jobs that are an audit's defense jobs)."""
    audit = Audit(tenant_id=tenant_id, status="running", model=str(DEMO_MODEL), spec={})
    s.add(audit)
    s.flush()
    item = AuditItem(
        audit_id=audit.id, index=0, chunk=0, key="k", category="c", kind="open", prompt="p", media_id=media_id
    )
    s.add(item)
    s.flush()
    return item


def undeclared(value, path="") -> list[str]:
    """Where a validated response carries a field only as an extra (not declared by its model)."""
    if isinstance(value, BaseModel):
        extra = [f"{path}.{k}" for k in value.model_extra or {}]
        return extra + [
            p for name in type(value).model_fields for p in undeclared(getattr(value, name), f"{path}.{name}")
        ]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in undeclared(v, f"{path}.{k}")]
    if isinstance(value, list | tuple):
        return [p for i, v in enumerate(value) for p in undeclared(v, f"{path}[{i}]")]
    return []


def assert_typed_exactly(model: type[BaseModel], data) -> None:
    """``data`` (what the server returns) validates against ``model`` with every field declared, so a
    misspelt or missing field in the model fails, and dumps back unchanged."""
    parsed = model.model_validate(data)
    assert undeclared(parsed) == [], undeclared(parsed)
    assert parsed.model_dump(mode="json") == data
