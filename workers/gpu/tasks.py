"""GPU worker: a job's round (ONE batched generate over its candidates), an audit's attacks, a
chunk of items at a time (batched), and robustify runs. The steps are ``shared.jobs.steps``,
``shared.audits.steps`` and ``shared.robust_models.steps``."""

from __future__ import annotations

from shared.audits import steps as audit_steps
from shared.config import get_settings
from shared.jobs import steps as job_steps
from shared.pipeline import Step
from shared.robust_models import steps as robust_model_steps
from workers.celery_app import send, task


@task(Step.SAMPLE_ROUND)
def sample_round(job_id: str, round_index: int) -> None:
    send(job_steps.sample_round(get_settings(), job_id, round_index))


@task(Step.ATTACK_UNIVERSAL)
def attack_universal(audit_id: str) -> None:
    send(audit_steps.attack_universal(get_settings(), audit_id))


@task(Step.ATTACK_CHUNK)
def attack_chunk(audit_id: str, chunk: int) -> None:
    send(audit_steps.attack_chunk(get_settings(), audit_id, chunk))


@task(Step.ROBUSTIFY)
def robustify(model_id: str) -> None:
    send(robust_model_steps.robustify(get_settings(), model_id))
