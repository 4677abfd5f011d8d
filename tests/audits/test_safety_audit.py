"""Refusal-aware voting through the service: an MM-SafetyBench-format archive audited with the
defense's refusal rule on (τ = 0.25), judged by the tiny LLM judge (a random LlamaGuard-shaped
model), the deployment's refusal guard set — every layer the safety path has, on the real stack."""

import io
import zipfile

import pytest

from tests.audits.test_audits import QUEUES, wait_audit, wait_dataset
from tests.benchmarks.test_judges import guard_path  # noqa: F401  (the tiny guard checkpoint fixture)
from tests.benchmarks.test_refusal_voting import write_mm_safety
from tests.helpers import auth


@pytest.fixture()
def service_env(service_env, guard_path):  # noqa: F811
    return service_env | {"SMOOTHGUARD_REFUSAL_GUARD": str(guard_path)}


def zipped(folder):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in folder.rglob("*"):
            if path.is_file():
                zf.write(path, path.relative_to(folder))
    return buf.getvalue()


def test_a_safety_set_audited_with_refusal_aware_voting_and_the_llm_judge(
    client,
    keys,
    spawn_worker,
    guard_path,  # noqa: F811
    tmp_path,
):
    key = keys["alpha"]
    archive = zipped(write_mm_safety(tmp_path / "mm", 2))
    r = client.post(
        "/v1/datasets", headers=auth(key), files={"file": ("mm.zip", archive)}, data={"format": "mm-safetybench"}
    )
    assert r.status_code == 202, r.text
    spawn_worker(QUEUES)
    dataset = wait_dataset(client, key, r.json()["id"])
    assert dataset["status"] == "ready" and dataset["items"] == 2, dataset
    spec = {
        "dataset": {"format": "mm-safetybench", "archive": dataset["sha256"]},
        "attacks": [{"name": "pgd", "steps": 1}],
        "defense": {"sigmas": [0.1], "num_samples": 4, "max_new_tokens": 4, "refusal_threshold": 0.25},
        "judge": f"llm:{guard_path}",
    }
    audit_id = client.post("/v1/audits", headers=auth(key), json=spec).json()["id"]
    audit = wait_audit(client, key, audit_id)
    assert audit["status"] == "succeeded", audit
    rows = client.get(f"/v1/audits/{audit_id}/report?format=json", headers=auth(key)).json()["items"]
    assert {r["judge"] for r in rows} == {f"llm:{guard_path}"} and {r["kind"] for r in rows} == {"safety"}
    defended = [r for r in rows if r["sigma"] == 0.1]
    assert len(defended) == 4  # 2 items × (clean, pgd)
    for row in defended:  # each defense job voted refusal-aware, its candidates labelled by the guard
        job = client.get(row["samples_url"].replace("/samples", ""), headers=auth(key)).json()
        assert job["refusal"]["classifier"] == f"refusal-keywords+llm:{guard_path}", job["refusal"]
    summary = audit["summary"]
    assert summary["has_safety"] and summary["headline"][1]["over_refusal"] is None  # no benign items here
