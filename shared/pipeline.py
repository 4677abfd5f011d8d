"""What runs next: every task step by name, and the rules that say which messages follow a submit,
a round, a vote, a finish, a cancel, and what the sweeper re-sends.

The rules are pure: they read the rows (or facts) they are given and return ``Message`` values; the
caller sends them once its transaction has committed (a committed job is never left unsent, and a
message never names a row that is not there yet). Routes send through ``app.state.queue``, tasks
through the worker's sender; neither decides the order itself. No Celery here: a message is a step
and JSON-able arguments (ids, round and chunk numbers), never tensors, images or answers.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from shared.models import Audit, DatasetArchive, Job, RobustModel, WebhookEvent


class QueueName(StrEnum):
    """The broker's queues: ``gpu`` interactive work (rounds of jobs not from an audit, robustify),
    ``gpu-audits`` an audit's GPU work (its defense jobs' rounds, its attacks), ``cpu`` votes and
    the sweeper, ``webhooks`` deliveries, ``audits`` an audit's bookkeeping and report. A GPU worker
    consumes ``gpu`` and ``gpu-audits`` and always takes from ``gpu`` first: an audit delays an
    interactive job by at most the round (or attack chunk) the worker is busy with."""

    GPU = "gpu"
    GPU_AUDITS = "gpu-audits"
    CPU = "cpu"
    WEBHOOKS = "webhooks"
    AUDITS = "audits"


class Step(StrEnum):
    """Every task, named ``<queue>.<task>`` so that a name alone says where it runs."""

    SAMPLE_ROUND = "gpu.sample_round"
    ATTACK_UNIVERSAL = "gpu.attack_universal"
    ATTACK_CHUNK = "gpu.attack_chunk"
    ROBUSTIFY = "gpu.robustify"
    AGGREGATE = "cpu.aggregate"
    SWEEP = "cpu.sweep"
    DISPATCH = "cpu.dispatch"
    DELIVER = "webhooks.deliver"
    DELIVER_AUDIT = "webhooks.deliver_audit"
    DELIVER_DUE = "webhooks.deliver_due"
    PREPARE = "audits.prepare"
    ITEM_DONE = "audits.item_done"
    PROGRESS = "audits.progress"
    REPORT = "audits.report"
    CHECK_DATASET = "audits.check_dataset"

    @property
    def queue(self) -> QueueName:
        """Where the step's messages go unless a message names its lane (an audit job's round)."""
        if self in AUDIT_WORK:
            return QueueName.GPU_AUDITS
        return QueueName(self.value.split(".", 1)[0])


AUDIT_WORK = frozenset({Step.ATTACK_UNIVERSAL, Step.ATTACK_CHUNK})  # GPU steps only audits send
GPU_LANES = frozenset({QueueName.GPU, QueueName.GPU_AUDITS})  # what a GPU worker consumes, gpu first


@dataclass(frozen=True)
class Message:
    """One task to send now: its step and JSON-able arguments (nothing waits in the broker: a
    delayed message held past Redis's visibility timeout is handed out again)."""

    step: Step
    args: tuple[str | int, ...] = ()
    lane: QueueName | None = None  # the queue, when not the step's own (an audit job's round: gpu-audits)

    @property
    def queue(self) -> QueueName:
        return self.lane or self.step.queue


class Sender(Protocol):
    """Whatever puts messages on the queues (the Celery app in production)."""

    def send(self, messages: Iterable[Message]) -> None: ...


def after_submit(job: Job) -> list[Message]:
    """A job's first round: sent by the dispatcher (``shared.jobs.dispatch``) when its tenant has a free slot."""
    return [next_round(job, 0)]


def next_round(job: Job, round_index: int) -> Message:
    """Round ``round_index`` of a job, on its lane."""
    return round_again(job.id, round_index, audit=job.audit_item_id is not None)


def dispatch(tenant_id: uuid.UUID | None = None) -> Message:
    """Send the waiting jobs of a tenant (of every tenant: None) that its free slots allow."""
    return Message(Step.DISPATCH, (str(tenant_id),) if tenant_id is not None else ())


def round_again(job_id: uuid.UUID, round_index: int, *, audit: bool) -> Message:
    """A round (of an audit's defense job: ``audit``) on its lane — also one claimed as another
    round's company but not generated (its input could not be read from the object store)."""
    return Message(Step.SAMPLE_ROUND, (str(job_id), round_index), QueueName.GPU_AUDITS if audit else None)


def after_round(job: Job) -> list[Message]:
    """A round's samples are stored: vote on them."""
    return [Message(Step.AGGREGATE, (str(job.id),))]


def after_vote(job: Job) -> list[Message]:
    """Undecided with budget left: the next round; otherwise the job finished."""
    if job.finished_at is None:
        return [next_round(job, job.rounds_done)]
    return after_job_finished(job)


def after_job_finished(job: Job) -> list[Message]:
    """However a job ended (result, failure, cancel): an audit's defense job moves its item on;
    any other job with a callback gets its webhook."""
    freed = [dispatch(job.tenant_id)] if job.dispatched_at is not None else []  # its slot is free
    if job.audit_item_id is not None:
        return [Message(Step.ITEM_DONE, (str(job.audit_item_id),)), *freed]
    return ([webhook(job, 1)] if job.callback_url else []) + freed


def after_cancel(job: Job) -> list[Message]:
    """A job nothing had run yet ends at the cancel and notifies now; a running one ends (and
    notifies) at its next step."""
    return after_job_finished(job) if job.finished_at is not None else []


def webhook(subject: Job | Audit, attempt: int = 0) -> Message:
    """Attempt ``attempt`` of a job's or an audit's webhook (1: the first, claimed at the finish;
    0: a redelivery, which starts a new series). Retries are the beat's (``due_webhooks``)."""
    step = Step.DELIVER_AUDIT if isinstance(subject, Audit) else Step.DELIVER
    return Message(step, (str(subject.id), attempt))


def due_webhooks(events: list[WebhookEvent]) -> list[Message]:
    """The attempts the beat's ``deliver_due`` claimed: each event's claimed attempt."""
    return [
        Message(Step.DELIVER_AUDIT, (str(e.audit_id), e.attempts))
        if e.audit_id
        else Message(Step.DELIVER, (str(e.job_id), e.attempts))
        for e in events
    ]


def after_audit_submit(audit: Audit) -> list[Message]:
    return [Message(Step.PREPARE, (str(audit.id),))]


def after_prepare(audit: Audit, *, universal: bool, chunks: list[int]) -> list[Message]:
    """The universal image comes before every chunk (each chunk's items are answered on it)."""
    if universal:
        return [Message(Step.ATTACK_UNIVERSAL, (str(audit.id),))]
    return attack_chunks(audit, chunks)


def attack_chunks(audit: Audit, chunks: list[int]) -> list[Message]:
    """The chunks just dispatched (the audit's concurrency bound chose them)."""
    return [Message(Step.ATTACK_CHUNK, (str(audit.id), chunk)) for chunk in chunks]


def after_chunk(audit: Audit, new_jobs: list[uuid.UUID]) -> list[Message]:
    """A chunk is attacked: its new defense jobs are dispatched as the tenant's slots allow, and a
    progress check follows (an item whose jobs all exist already may be done)."""
    return ([dispatch(audit.tenant_id)] if new_jobs else []) + [Message(Step.PROGRESS, (str(audit.id),))]


def after_progress(audit: Audit, chunks: list[int]) -> list[Message]:
    """Free slots get the next chunks; once every item is done the audit is ``reporting``."""
    report = [Message(Step.REPORT, (str(audit.id),))] if audit.status == "reporting" else []
    return attack_chunks(audit, chunks) + report


def after_audit_finished(audit: Audit) -> list[Message]:
    return [webhook(audit, 1)] if audit.callback_url else []


def after_audit_cancel(audit: Audit) -> list[Message]:
    """Nothing: the caller who cancelled has the answer, and the item_done of defense jobs the
    cancel ended would find the audit finished."""
    return []


def resume_job(job: Job) -> list[Message]:
    """The sweeper's message for an unfinished job nobody touched for a while (its message was
    lost): the vote on rounds not voted on yet, else the next round."""
    if job.aggregated_rounds < job.rounds_done:
        return [Message(Step.AGGREGATE, (str(job.id),))]
    return [next_round(job, job.rounds_done)]


def resume_audit(audit: Audit, lost_chunks: list[int], *, awaits_universal: bool = False) -> list[Message]:
    """The sweeper's messages for a stale audit: prepare it, make its universal image (no chunk
    may run before it), write its report, or re-send its dispatched but unattacked chunks and a
    progress check."""
    if audit.status == "queued":
        return [Message(Step.PREPARE, (str(audit.id),))]
    if audit.status == "reporting":
        return [Message(Step.REPORT, (str(audit.id),))]
    if awaits_universal:
        return [Message(Step.ATTACK_UNIVERSAL, (str(audit.id),))]
    return attack_chunks(audit, lost_chunks) + [Message(Step.PROGRESS, (str(audit.id),))]


def after_robustify_submit(row: RobustModel) -> list[Message]:
    return [Message(Step.ROBUSTIFY, (str(row.id),))]


def resume_robust_model(row: RobustModel) -> list[Message]:
    """The sweeper's message for a run nobody touched for a while: train it (again, from the start;
    a claim supersedes any attempt still running)."""
    return [Message(Step.ROBUSTIFY, (str(row.id),))]


def after_dataset_upload(row: DatasetArchive) -> list[Message]:
    """A new upload is checked by a worker (unpacked under the caps, loaded); a known one is not."""
    return [Message(Step.CHECK_DATASET, (str(row.id),))] if row.status == "validating" else []


def resume_dataset(row: DatasetArchive) -> list[Message]:
    """The sweeper's message for an upload still ``validating`` that nobody touched for a while."""
    return [Message(Step.CHECK_DATASET, (str(row.id),))]
