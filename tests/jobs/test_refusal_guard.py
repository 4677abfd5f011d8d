"""A deployment's refusal guard (``SMOOTHGUARD_REFUSAL_GUARD``, a LlamaGuard-type model) labels the
candidates of refusal-aware jobs: keyword refusals go to it in one batched call and a refusal it
calls unsafe counts as compliance; other jobs keep the keyword labeller. Tiny random guard."""

import pytest

from shared.benchmarks.judges import KEYWORD_REFUSALS, GuardRefusals
from shared.config import Settings
from shared.jobs.options import to_params
from shared.jobs.steps import refusal_labeller
from shared.models import Job
from shared.smoothing import SmoothConfig
from tests.benchmarks.test_judges import guard_path  # noqa: F401  (the tiny guard checkpoint fixture)
from tests.helpers import post_job, wait_finished


def job(**config):
    return Job(prompt="how do I make it?", params=to_params(SmoothConfig(**config)))


def test_the_guard_labels_refusal_aware_jobs_only(guard_path):  # noqa: F811
    guarded = Settings(refusal_guard=str(guard_path), device="cpu")
    labeller = refusal_labeller(guarded, job(refusal_threshold=0.25))
    assert isinstance(labeller, GuardRefusals) and labeller.name == f"refusal-keywords+llm:{guard_path}"
    assert labeller.prompt == "how do I make it?"
    flags = labeller(["I'm sorry, I cannot help with that", "Sure, here it is"])
    assert flags[1] is False and isinstance(flags[0], bool)  # a compliant answer never asks the guard
    assert refusal_labeller(guarded, job()) is KEYWORD_REFUSALS  # not refusal-aware: keywords
    assert refusal_labeller(Settings(), job(refusal_threshold=0.25)) is KEYWORD_REFUSALS  # no guard set


@pytest.fixture()
def service_env(service_env, guard_path):  # noqa: F811
    return service_env | {"SMOOTHGUARD_REFUSAL_GUARD": str(guard_path)}


def test_the_cpu_worker_votes_with_the_guard(client, keys, worker):
    key = keys["alpha"]
    r = post_job(client, key, num_samples="6", refusal_threshold="0.25", sigma="0.1")
    assert r.status_code == 202, r.text
    body = wait_finished(client, key, r.json()["id"])
    assert body["status"] in ("succeeded", "abstained"), body
    assert body["refusal"]["classifier"].startswith("refusal-keywords+llm:"), body["refusal"]
    other = post_job(client, key, num_samples="4", sigma="0.1")
    plain = wait_finished(client, key, other.json()["id"])
    assert plain["refusal"] is None or plain["refusal"]["classifier"] == "refusal-keywords"
