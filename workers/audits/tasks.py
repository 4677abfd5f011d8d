"""Audit steps on the ``audits`` queue (CPU): load the set and fan out, follow progress, judge and
write the report. The attacks run on the GPU queue, the defense as ordinary jobs."""

from __future__ import annotations

from shared.audits import datasets, steps
from shared.config import get_settings
from shared.pipeline import Step
from workers.celery_app import send, task


@task(Step.PREPARE)
def prepare(audit_id: str) -> None:
    send(steps.prepare(get_settings(), audit_id))


@task(Step.ITEM_DONE)
def item_done(item_id: str) -> None:
    send(steps.item_done(get_settings(), item_id))


@task(Step.PROGRESS)
def progress(audit_id: str) -> None:
    send(steps.progress(get_settings(), audit_id))


@task(Step.REPORT)
def report(audit_id: str) -> None:
    send(steps.report(get_settings(), audit_id))


@task(Step.CHECK_DATASET)
def check_dataset(dataset_id: str) -> None:
    send(datasets.check_dataset(get_settings(), dataset_id))
