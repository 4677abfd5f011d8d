"""Helpers of the API and job tests."""

import time

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
