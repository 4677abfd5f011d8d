"""The OpenAPI contract clients are generated from (security scheme, operation ids, typed fields,
documented headers, webhooks), Idempotency-Keys on audits, datasets and webhook endpoints (and
their expiry), Retry-After while work runs, and a bounded schemathesis run over the whole API
against the real stack."""

import io
import json
import re
import uuid
import zipfile
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from api.main import create_app
from shared.config import DEMO_IMAGE, Settings
from shared.db import session_scope
from shared.jobs.intake import forget_expired_keys
from shared.models import IdempotencyKey
from tests.helpers import assert_typed_exactly, auth, post_job


@pytest.fixture(scope="module")
def document():
    return create_app(Settings()).openapi()


def operations(document):
    return [(path, method, op) for path, item in document["paths"].items() for method, op in item.items()]


def test_bearer_auth_is_a_security_scheme_not_a_header_parameter(document):
    assert document["components"]["securitySchemes"]["apiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "sg_…",
        "description": "an API key (`smoothguard keys create`)",
    }
    for path, method, op in operations(document):
        assert all(p["name"].lower() != "authorization" for p in op.get("parameters", [])), (path, method)
    assert document["paths"]["/v1/jobs"]["post"]["security"] == [{"apiKey": []}]
    assert document["paths"]["/v1/admin/keys"]["get"]["security"] == [{"adminToken": []}]
    assert "security" not in document["paths"]["/healthz"]["get"]


def test_operation_ids_are_readable_and_unique(document):
    ids = [op["operationId"] for _, _, op in operations(document)]
    assert len(ids) == len(set(ids)) and all(re.fullmatch(r"[a-z]+(_[a-z]+)*", i) for i in ids), ids
    assert {"submit_job", "read_job", "submit_audit", "upload_dataset", "create_webhook_endpoint"} <= set(ids)


def test_fields_clients_read_are_typed(document):
    schemas = document["components"]["schemas"]
    job = schemas["JobPublic"]["properties"]
    assert job["status"]["enum"] == ["queued", "running", "succeeded", "abstained", "failed", "cancelled"]
    assert job["params"]["$ref"].endswith("/SmoothConfig")
    assert "#/components/schemas/Consensus" in json.dumps(job["consensus"])
    assert "#/components/schemas/Timings" in json.dumps(job["timings"])
    generated_on = schemas["GeneratedOn"]["properties"]
    assert "#/components/schemas/GeneratedOn" in json.dumps(job["generated_on"])
    assert set(generated_on) == {"device", "dtype", "revision", "torch", "transformers", "host"}
    assert all(field["description"] for field in generated_on.values())
    audit = schemas["AuditPublic"]["properties"]
    assert audit["spec"]["$ref"].endswith("/AuditSpec") and "AuditSummary" in json.dumps(audit["summary"])
    assert schemas["Problem"]["properties"]["errors"]


def component_refs(node) -> set[str]:
    if isinstance(node, dict):
        own = {node["$ref"].rsplit("/", 1)[-1]} if "$ref" in node else set()
        return own.union(*(component_refs(v) for v in node.values()))
    return set().union(*(component_refs(v) for v in node)) if isinstance(node, list) else set()


def free_dicts(node, path) -> list[str]:
    """Object schemas that say nothing of their fields or values (``additionalProperties: true`` only)."""
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in free_dicts(v, f"{path}/{i}")]
    if not isinstance(node, dict):
        return []
    free = node.get("type") == "object" and "properties" not in node and node.get("additionalProperties", True) is True
    return [path] * free + [p for k, v in node.items() for p in free_dicts(v, f"{path}/{k}")]


def test_audit_and_robust_model_tables_are_named_components_not_free_dicts(document):
    schemas = document["components"]["schemas"]
    for name, field, component in [
        ("AuditPublic", "universal", "UniversalStats"),
        ("RobustModelPublic", "record", "TrainingRecord"),
        ("AuditSummary", "certification", "Certification"),
        ("AuditSummary", "groups", "GroupStats"),
        ("AuditSummary", "headline", "HeadlineRow"),
    ]:
        assert component_refs(schemas[name]["properties"][field]) == {component}, (name, field)
        assert schemas[component]["properties"] and "description" in schemas[name]["properties"][field]
    reachable, todo = set(), ["AuditPublic", "RobustModelPublic"]
    while todo:
        if (name := todo.pop()) not in reachable:
            reachable.add(name)
            todo += component_refs(schemas[name])
    assert [p for name in sorted(reachable) for p in free_dicts(schemas[name], name)] == []
    headline = schemas["HeadlineRow"]["properties"]
    assert {"type": "string", "enum": ["met", "missed", "inconclusive"]} in headline["goal"]["anyOf"]
    interval = {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}
    assert headline["asr_ci"]["anyOf"][0]["additionalProperties"]["anyOf"][0] == interval  # per attack: [low, high]


def test_a_summary_of_every_table_is_typed_exactly_by_the_response_model():
    """The report's summary (certificates, POPE scores, categories: every table filled) validates
    against ``AuditSummary`` with no field undeclared and dumps back unchanged."""
    from api.schemas import AuditSummary
    from shared.reports.summary import summarize
    from tests.reports.rows import realistic_rows

    summary = summarize(realistic_rows())
    assert summary["certification"]["coverage"] and summary["pope"] and summary["categories"]
    assert_typed_exactly(AuditSummary, summary)
    summary["headline"][1]["clean_m"] = summary["headline"][1].pop("clean_n")  # as a model that misspelt it sees it
    with pytest.raises(ValidationError, match="clean_n"):
        assert_typed_exactly(AuditSummary, summary)
    summary["headline"][1]["clean_n"] = 1
    with pytest.raises(AssertionError, match=r"\.headline\[1\]\.clean_m"):  # carried along, but undeclared
        assert_typed_exactly(AuditSummary, summary)


# what summaries stored before the intervals, the interval verdict and the cost table (issue 14) lack
ADDED_SINCE = {"accuracy_ci", "asr_ci", "committed_asr_ci", "clean_accuracy_ci", "abstain_rate_ci", "over_refusal_ci"}


def test_a_summary_stored_by_an_earlier_version_still_validates():
    """An audit finished before the intervals existed is still served (no 500 on its GET)."""
    from api.schemas import AuditSummary
    from shared.reports.summary import summarize
    from tests.reports.rows import realistic_rows

    summary = summarize(realistic_rows())
    del summary["cost"]
    for table in ("groups", "headline", "categories"):
        for row in summary[table]:
            for name in ADDED_SINCE | {"goal"}:
                row.pop(name, None)
    parsed = AuditSummary.model_validate(summary)
    assert parsed.cost == [] and parsed.headline[1].goal is None and parsed.groups[0].asr_ci is None


def test_the_record_sigma_kinds_are_the_libraries():
    from typing import get_args

    from api.schemas import SigmaKind
    from shared.robustify.inputs import SigmaKind as LibrarySigmaKind

    assert get_args(SigmaKind) == get_args(LibrarySigmaKind)


def test_response_headers_are_documented(document):
    submit = document["paths"]["/v1/jobs"]["post"]["responses"]["202"]["headers"]
    assert set(submit) == {"Location", "Retry-After", "Idempotent-Replayed"}
    assert "Retry-After" in document["paths"]["/v1/audits/{audit_id}"]["get"]["responses"]["200"]["headers"]
    for path in ("/v1/jobs", "/v1/audits", "/v1/datasets", "/v1/webhooks"):
        params = document["paths"][path]["post"]["parameters"]
        assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in params), path


def test_webhooks_section_describes_the_payloads(document):
    assert set(document["webhooks"]) == {"job.completed", "audit.completed"}
    body = document["webhooks"]["audit.completed"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["$ref"].endswith("/AuditCompleted")
    assert "HTTPValidationError" not in document["components"]["schemas"]


SPEC = {
    "dataset": {"format": "shapes", "seed": 7, "count": 1},
    "attacks": [{"name": "pgd", "steps": 2}],
    "defense": {"sigmas": [0.1], "num_samples": 2, "max_new_tokens": 4},
}


def test_an_audit_retried_with_its_idempotency_key_is_not_made_twice(client, keys):
    h = auth(keys["alpha"]) | {"Idempotency-Key": "audit-1"}
    first = client.post("/v1/audits", headers=h, json=SPEC)
    again = client.post("/v1/audits", headers=h, json=SPEC)
    assert first.status_code == again.status_code == 202, again.text
    assert again.json()["id"] == first.json()["id"] and again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"] and "Idempotent-Replayed" not in first.headers
    other = client.post("/v1/audits", headers=h, json=SPEC | {"limit": 1})
    assert other.status_code == 422 and "different request body" in other.json()["detail"]
    listed = client.get("/v1/audits", headers=auth(keys["alpha"])).json()["items"]
    assert [a["id"] for a in listed] == [first.json()["id"]]
    running = client.get(first.headers["Location"], headers=auth(keys["alpha"]))
    assert running.headers["Retry-After"] == "5" and running.json()["spec"]["defense"]["sigmas"] == [0.1]


def test_an_expired_idempotency_key_makes_anew(client, keys, settings):
    client.app.state.settings = settings.model_copy(update={"idempotency_key_ttl_s": 0.0})
    h = auth(keys["alpha"]) | {"Idempotency-Key": "again-1"}
    first = client.post("/v1/audits", headers=h, json=SPEC).json()["id"]
    assert client.post("/v1/audits", headers=h, json=SPEC | {"limit": 1}).json()["id"] != first
    files = {"file": ("x.png", DEMO_IMAGE.read_bytes(), "image/png")}
    jobs = [client.post("/v1/jobs", headers=h, files=files, data={"prompt": "Colour?"}) for _ in range(2)]
    assert jobs[0].json()["id"] != jobs[1].json()["id"] and "Idempotent-Replayed" not in jobs[1].headers


def test_the_sweeper_forgets_expired_keys_and_keeps_the_others(client, keys, settings):
    h = auth(keys["alpha"]) | {"Idempotency-Key": "swept-1"}
    client.post("/v1/audits", headers=h, json=SPEC)
    with session_scope(settings.database_url) as s:
        tenant = s.scalar(select(IdempotencyKey.tenant_id).where(IdempotencyKey.key == "swept-1"))
        old = IdempotencyKey(
            tenant_id=tenant, operation="audits", key="old-1", request_hash="h", resource_id=uuid.uuid4()
        )
        old.created_at = datetime.now(UTC) - timedelta(days=2)
        s.add(old)
    assert forget_expired_keys(settings) >= 1  # a day's TTL by default
    with session_scope(settings.database_url) as s:
        left = set(s.scalars(select(IdempotencyKey.key).where(IdempotencyKey.key.in_(["swept-1", "old-1"]))))
    assert left == {"swept-1"}


def archive():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("set/questions.jsonl", "{}\n")
    return buf.getvalue()


def test_dataset_uploads_and_webhook_endpoints_take_an_idempotency_key(client, keys):
    h = auth(keys["alpha"]) | {"Idempotency-Key": "upload-1"}
    files = {"file": ("set.zip", archive(), "application/zip")}
    first = client.post("/v1/datasets", headers=h, files=files, data={"format": "pope"})
    again = client.post("/v1/datasets", headers=h, files=files, data={"format": "pope"})
    assert first.status_code == 202 and first.headers["Retry-After"] and "Idempotent-Replayed" not in first.headers
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    other = client.post("/v1/datasets", headers=h, files=files, data={"format": "llava-bench"})
    assert other.status_code == 422
    wh = auth(keys["alpha"]) | {"Idempotency-Key": "hook-1"}
    made = client.post("/v1/webhooks", headers=wh, json={"url": "http://127.0.0.1:9/hook"})
    replayed = client.post("/v1/webhooks", headers=wh, json={"url": "http://127.0.0.1:9/hook"})
    assert made.status_code == replayed.status_code == 201 and replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.json()["id"] == made.json()["id"] and replayed.json()["secret"] == made.json()["secret"]
    plain = client.post("/v1/webhooks", headers=auth(keys["alpha"]), json={"url": "http://127.0.0.1:9/hook"})
    assert plain.status_code == 409


def test_a_queued_job_says_when_to_poll_and_validation_lists_each_error(client, keys):
    job = post_job(client, keys["alpha"]).json()
    read = client.get(f"/v1/jobs/{job['id']}", headers=auth(keys["alpha"]))
    assert read.headers["Retry-After"] == "1" and read.json()["params"]["sigma"] == 0.1
    bad = client.get("/v1/jobs", headers=auth(keys["alpha"]), params={"limit": 0, "status": "nope"})
    assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
    assert {e["location"] for e in bad.json()["errors"]} == {"query.limit", "query.status"}
    assert bad.json()["instance"] == "/v1/jobs"
    typo = client.get("/v1/jobs", headers=auth(keys["alpha"]), params={"staus": "running"})
    assert typo.status_code == 422 and typo.json()["errors"] == [
        {"location": "query.staus", "detail": "unknown query parameter"}
    ]
