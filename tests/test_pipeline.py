"""What follows what (``shared.pipeline``): pure rules over rows built in memory, no database."""

import ast
import uuid
from pathlib import Path

import pytest

from shared import pipeline
from shared.jobs.store import now
from shared.models import Audit, Job, WebhookEvent
from shared.pipeline import Message, QueueName, Step

ROOT = Path(__file__).resolve().parents[1]


def job(**fields):
    return Job(**({"id": uuid.uuid4(), "rounds_done": 0, "aggregated_rounds": 0} | fields))


def audit(**fields):
    return Audit(**({"id": uuid.uuid4(), "status": "running"} | fields))


def test_every_step_runs_on_the_queue_its_name_starts_with_an_audits_attacks_on_the_audit_lane():
    assert {s.queue for s in Step} == set(QueueName)
    assert Step.SAMPLE_ROUND.queue is QueueName.GPU and Step.ITEM_DONE.queue is QueueName.AUDITS
    assert Step.ATTACK_CHUNK.queue is Step.ATTACK_UNIVERSAL.queue is QueueName.GPU_AUDITS
    assert Step.ROBUSTIFY.queue is QueueName.GPU
    assert all(s.value == f"{s.queue.value.split('-')[0]}.{s.name.lower()}" for s in Step)


def test_an_audits_defense_job_runs_its_rounds_on_the_audit_lane_an_interactive_job_on_gpu():
    interactive, defense = job(rounds_done=1, aggregated_rounds=1), job(audit_item_id=uuid.uuid4())
    assert [m.queue for m in pipeline.after_submit(interactive)] == [QueueName.GPU]
    assert [m.queue for m in pipeline.after_vote(interactive)] == [QueueName.GPU]
    assert pipeline.after_submit(defense) == [Message(Step.SAMPLE_ROUND, (str(defense.id), 0), QueueName.GPU_AUDITS)]
    assert [m.queue for m in pipeline.after_vote(defense) + pipeline.resume_job(defense)] == [QueueName.GPU_AUDITS] * 2
    assert pipeline.round_again(defense.id, 2, audit=True).queue is QueueName.GPU_AUDITS
    assert pipeline.round_again(interactive.id, 2, audit=False).queue is QueueName.GPU
    assert {m.queue for m in pipeline.after_prepare(audit(), universal=False, chunks=[0, 1])} == {QueueName.GPU_AUDITS}


def test_a_submitted_job_starts_with_round_zero_and_a_round_is_voted_on():
    j = job()
    assert pipeline.after_submit(j) == [Message(Step.SAMPLE_ROUND, (str(j.id), 0))]
    assert pipeline.after_round(j) == [Message(Step.AGGREGATE, (str(j.id),))]


def test_an_undecided_vote_asks_for_the_next_round():
    j = job(rounds_done=3, aggregated_rounds=3)
    assert pipeline.after_vote(j) == [Message(Step.SAMPLE_ROUND, (str(j.id), 3))]


@pytest.mark.parametrize("status", ["succeeded", "abstained", "failed", "cancelled"])
def test_a_finished_job_sends_its_webhook_or_moves_its_audit_item(status):
    hooked = job(status=status, finished_at=now(), callback_url="https://example.com/hook")
    assert pipeline.after_vote(hooked) == [Message(Step.DELIVER, (str(hooked.id), 1))]  # its first attempt
    item_id = uuid.uuid4()
    defense = job(status=status, finished_at=now(), audit_item_id=item_id)
    assert pipeline.after_job_finished(defense) == [Message(Step.ITEM_DONE, (str(item_id),))]
    assert pipeline.after_job_finished(job(status=status, finished_at=now())) == []  # no callback
    tenant = uuid.uuid4()
    dispatched = job(status=status, finished_at=now(), dispatched_at=now(), tenant_id=tenant)
    assert pipeline.after_job_finished(dispatched) == [Message(Step.DISPATCH, (str(tenant),))]  # its slot is free


def test_a_cancel_notifies_when_it_ended_the_job_and_waits_for_the_next_step_otherwise():
    ended = job(status="cancelled", finished_at=now(), cancel_requested=True, callback_url="https://x/h")
    assert pipeline.after_cancel(ended) == [Message(Step.DELIVER, (str(ended.id), 1))]
    item_id = uuid.uuid4()
    defense = job(status="cancelled", finished_at=now(), cancel_requested=True, audit_item_id=item_id)
    assert pipeline.after_cancel(defense) == [Message(Step.ITEM_DONE, (str(item_id),))]
    running = job(status="running", rounds_done=1, cancel_requested=True, callback_url="https://x/h")
    assert pipeline.after_cancel(running) == []  # its next step ends it, and notifies then


def test_due_webhook_attempts_are_sent_by_number_and_a_redelivery_starts_a_series():
    j, a = job(), audit()
    due = [WebhookEvent(job_id=j.id, attempts=3), WebhookEvent(audit_id=a.id, attempts=2)]
    assert pipeline.due_webhooks(due) == [
        Message(Step.DELIVER, (str(j.id), 3)),
        Message(Step.DELIVER_AUDIT, (str(a.id), 2)),
    ]
    assert pipeline.webhook(j) == Message(Step.DELIVER, (str(j.id), 0))


def test_an_audit_is_prepared_then_attacked_universal_first():
    a = audit(status="queued")
    aid = str(a.id)
    assert pipeline.after_audit_submit(a) == [Message(Step.PREPARE, (aid,))]
    assert pipeline.after_prepare(a, universal=True, chunks=[]) == [Message(Step.ATTACK_UNIVERSAL, (aid,))]
    chunks = [Message(Step.ATTACK_CHUNK, (aid, 0)), Message(Step.ATTACK_CHUNK, (aid, 1))]
    assert pipeline.after_prepare(a, universal=False, chunks=[0, 1]) == chunks
    assert pipeline.attack_chunks(a, [0, 1]) == chunks


def test_an_attacked_chunk_dispatches_its_defense_jobs_then_checks_progress():
    a, jobs = audit(tenant_id=uuid.uuid4()), [uuid.uuid4(), uuid.uuid4()]
    assert pipeline.after_chunk(a, jobs) == [
        Message(Step.DISPATCH, (str(a.tenant_id),)),
        Message(Step.PROGRESS, (str(a.id),)),
    ]
    assert pipeline.after_chunk(a, []) == [Message(Step.PROGRESS, (str(a.id),))]


def test_progress_sends_the_next_chunks_and_the_report_once_every_item_is_done():
    running = audit()
    assert pipeline.after_progress(running, [2]) == [Message(Step.ATTACK_CHUNK, (str(running.id), 2))]
    done = audit(status="reporting")
    assert pipeline.after_progress(done, []) == [Message(Step.REPORT, (str(done.id),))]


def test_a_finished_audit_sends_its_webhook_and_a_cancelled_one_nothing():
    hooked = audit(status="succeeded", finished_at=now(), callback_url="https://x/h")
    assert pipeline.after_audit_finished(hooked) == [Message(Step.DELIVER_AUDIT, (str(hooked.id), 1))]
    assert pipeline.after_audit_finished(audit(status="failed", finished_at=now())) == []
    assert pipeline.after_audit_cancel(audit(status="cancelled", finished_at=now(), callback_url="https://x/h")) == []


def test_the_sweeper_resumes_each_job_and_audit_where_it_stopped():
    unvoted, waiting = job(rounds_done=2, aggregated_rounds=1), job(rounds_done=2, aggregated_rounds=2)
    assert pipeline.resume_job(unvoted) == [Message(Step.AGGREGATE, (str(unvoted.id),))]
    assert pipeline.resume_job(waiting) == [Message(Step.SAMPLE_ROUND, (str(waiting.id), 2))]
    queued, reporting, running = audit(status="queued"), audit(status="reporting"), audit()
    assert pipeline.resume_audit(queued, []) == [Message(Step.PREPARE, (str(queued.id),))]
    assert pipeline.resume_audit(reporting, []) == [Message(Step.REPORT, (str(reporting.id),))]
    assert pipeline.resume_audit(running, [1]) == [
        Message(Step.ATTACK_CHUNK, (str(running.id), 1)),
        Message(Step.PROGRESS, (str(running.id),)),
    ]
    # a universal attack longer than the stale bound: its image again, never chunks before it
    assert pipeline.resume_audit(running, [1], awaits_universal=True) == [
        Message(Step.ATTACK_UNIVERSAL, (str(running.id),))
    ]


def test_no_task_name_is_spelled_outside_the_pipeline():
    """Routes, tasks and the sweeper name steps by ``Step``; a literal elsewhere would be a second
    place that says what runs next."""
    names = {s.value for s in Step}
    found = []
    for path in [*ROOT.glob("shared/**/*.py"), *ROOT.glob("api/**/*.py"), *ROOT.glob("workers/**/*.py")]:
        if path == ROOT / "shared" / "pipeline.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in names:
                found.append(f"{path.relative_to(ROOT)}: {node.value}")
    assert found == []
