"""GPU workers in production shape, with real PostgreSQL, Redis, S3 and worker processes on the
bundled demo model: a worker that cannot serve (no CUDA, a corrupt checkpoint) exits taking nothing; an audit's hundreds of defense jobs
never hold an interactive job back by more than a round (the ``gpu`` lane goes first); two GPU
workers share a burst with no candidate generated twice, one of them stopped mid-burst (a
rolling update) handing its round back at once.

Who generated what is read from the database itself: a trigger records every write of a sample's
text with the writing connection's ``application_name`` (each worker's database URL names it) —
a round generated twice would write its samples twice (the rows are upserted)."""

import os
import signal
import statistics
import time
import uuid
from collections import Counter

import psycopg
import pytest
import redis
from sqlalchemy import func, select

from shared.config import DEMO_IMAGE, DEMO_MODEL
from shared.db import session_scope
from shared.jobs.store import create_job, now
from shared.media.store import save_media
from shared.models import Job
from shared.pipeline import QueueName, after_submit
from shared.readiness import EXIT_CANNOT_SERVE
from shared.smoothing import SmoothConfig
from shared.tenants import create_tenant
from tests.helpers import audit_item

pytestmark = pytest.mark.slow
SMALL = SmoothConfig(
    num_samples=3, max_new_tokens=4, sigma=0.0, seed=1
)  # 4 candidates (3 noisy + the clean one) in one round
AUDIT_ROUNDS = SmoothConfig(num_samples=3, max_new_tokens=8, sigma=0.0, seed=1)
INTERACTIVE = SmoothConfig(
    num_samples=3, max_new_tokens=6, sigma=0.0, seed=1
)  # its own generate: no audit round takes it along
ONE_THREAD = {"SMOOTHGUARD_TORCH_THREADS": "1"}

RECORD_WRITES = """
create table sample_writes (job_id uuid, round int, index int, writer text);
create function record_sample_write() returns trigger language plpgsql as $$
begin
  insert into sample_writes values (new.job_id, new.round, new.index, current_setting('application_name'));
  return new;
end $$;
create trigger sample_writes after insert or update of text on samples
  for each row execute function record_sample_write();
"""


def as_writer(database: str, name: str) -> dict[str, str]:
    """A worker's environment whose database connections are named ``name``."""
    return {"SMOOTHGUARD_DATABASE_URL": f"{database}?application_name={name}", **ONE_THREAD}


def record_writes(database):
    with psycopg.connect(database, autocommit=True) as con:
        con.execute(RECORD_WRITES)


def writes(database) -> list[tuple[str, int, int, str]]:
    with psycopg.connect(database) as con:
        return [(str(j), r, i, w) for j, r, i, w in con.execute("select * from sample_writes")]


def new_jobs(database, store, count, config=SMALL, *, audit=False, prompt="What colour is the circle?"):
    """``count`` dispatched jobs of one new tenant on one image (an audit's defense jobs with
    ``audit``), and their first rounds' messages as the dispatcher sends them."""
    with session_scope(database) as s:
        tenant = create_tenant(s, name=f"t{uuid.uuid4().hex[:6]}")
        media = save_media(
            s, store, tenant_id=tenant.id, data=DEMO_IMAGE.read_bytes(), content_type="image/png", modality="image"
        )
        item = audit_item(s, tenant.id, media.id) if audit else None
        jobs = []
        for n in range(count):
            job = create_job(s, media=media, prompt=prompt, model=str(DEMO_MODEL), config=config)
            job.dispatched_at = now()
            if item is not None:
                job.audit_item_id, job.audit_ref = item.id, f"v{n}@0.5"
            jobs.append(job)
        s.flush()
        return [str(j.id) for j in jobs], [m for j in jobs for m in after_submit(j)]


def finished(database, ids) -> list[Job]:
    with session_scope(database) as s:
        return list(s.scalars(select(Job).where(Job.id.in_([uuid.UUID(i) for i in ids]), Job.finished_at.is_not(None))))


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


def claims_of(database, pid) -> int:
    """Rounds the worker process ``pid`` holds now (claims name the host, pid and a nonce)."""
    with session_scope(database) as s:
        return s.scalar(select(func.count(Job.id)).where(Job.claimed_by.like(f"%:{pid}:%"))) or 0


def wait_all(database, ids, timeout=90):
    def all_done():
        done = finished(database, ids)
        return done if len(done) == len(ids) else None

    return wait_until(all_done, timeout, "the jobs")


def test_a_gpu_worker_that_cannot_serve_exits_without_taking_a_message(database, store, spawn_worker, queue, tmp_path):
    corrupt = tmp_path / "corrupt-model"
    corrupt.mkdir()
    (corrupt / "config.json").write_text('{"model_type": "llava", "text_config": ')  # a truncated checkpoint
    ids, messages = new_jobs(database, store, 1)
    queue.send(messages)
    no_cuda = spawn_worker(("gpu",), SMOOTHGUARD_DEVICE="cuda", **ONE_THREAD)
    broken = spawn_worker(("gpu",), SMOOTHGUARD_MODEL=str(corrupt), **ONE_THREAD)
    assert no_cuda.wait(60) == EXIT_CANNOT_SERVE and broken.wait(60) == EXIT_CANNOT_SERVE
    client = redis.Redis.from_url(queue.app.conf.broker_url)
    assert client.llen("gpu") == 1 and client.hlen("unacked") == 0  # the round is still waiting, untaken
    assert finished(database, ids) == []  # (a good worker serves it: the tests below)


def test_an_interactive_job_overtakes_an_audit_of_200_defense_jobs(database, store, spawn_worker, queue):
    """(With the audit's rounds on the ``gpu`` queue too, the same interactive job waited for the
    whole audit: 5.8 s, ten rounds, on the machine this was written on.)"""
    audit_ids, audit_messages = new_jobs(database, store, 200, AUDIT_ROUNDS, audit=True)
    assert {m.queue for m in audit_messages} == {QueueName.GPU_AUDITS}
    gpu = spawn_worker(("gpu",), SMOOTHGUARD_MAX_BATCH_SIZE="64", **ONE_THREAD)  # 16 jobs' rounds per generate
    spawn_worker(("cpu",), **ONE_THREAD)
    queue.send(audit_messages)
    wait_until(lambda: len(finished(database, audit_ids)) >= 48, 60, "three of the audit's rounds")
    rounds = audit_round_times(database, audit_ids)
    one_round = statistics.median(b - a for a, b in zip(rounds, rounds[1:], strict=False))  # a round, this worker

    interactive, messages = new_jobs(database, store, 1, INTERACTIVE, prompt="What colour is the square?")
    submitted = time.monotonic()
    queue.send(messages)
    (job,) = wait_all(database, interactive, timeout=60)
    latency = time.monotonic() - submitted
    audit_left = len(audit_ids) - len(finished(database, audit_ids))
    generated = (job.generated_at - job.created_at).total_seconds()
    print(
        f"one round {one_round:.2f} s (median of {len(rounds) - 1}); interactive job generated {generated:.2f} s, "
        f"finished {latency:.2f} s after its submit; {audit_left} audit jobs still unfinished"
    )
    assert job.status in ("succeeded", "abstained") and audit_left > 64  # the audit had rounds to go
    # counted in rounds, not seconds (a loaded machine stretches both alike): between its submit and
    # its own round, at most the audit's round in progress and one already taken from the queue
    created, own = job.created_at.timestamp(), job.generated_at.timestamp()
    between = [t for t in audit_round_times(database, audit_ids) if created < t < own - 0.02]
    print(f"audit rounds recorded between the interactive submit and its round: {len(between)}")
    assert len(between) <= 2
    assert gpu.poll() is None


def audit_round_times(database, ids) -> list[float]:
    """When each of the audit's rounds so far was recorded: its jobs' ``generated_at``, one
    transaction's (microseconds apart) taken as one round."""
    with session_scope(database) as s:
        query = select(Job.generated_at).where(Job.id.in_([uuid.UUID(i) for i in ids]), Job.generated_at.is_not(None))
        times = sorted(t.timestamp() for t in s.scalars(query))
    return [b for a, b in zip([0.0, *times], times, strict=False) if b - a > 0.02]


def test_two_gpu_workers_share_a_burst_and_a_stopped_one_hands_its_round_back(
    database, store, stack, spawn_worker, queue
):
    record_writes(database)
    common = {"SMOOTHGUARD_MAX_BATCH_SIZE": "16", "SMOOTHGUARD_SHUTDOWN_GRACE_S": "0"}  # hand back at once
    first = spawn_worker(("gpu",), **as_writer(database, "gpu-a"), **common)
    second = spawn_worker(("gpu",), **as_writer(database, "gpu-b"), **common)
    spawn_worker(("cpu",), **ONE_THREAD)
    ids, messages = new_jobs(database, store, 48)
    queue.send(messages)
    wait_until(lambda: {w for *_, w in writes(database)} == {"gpu-a", "gpu-b"}, 60, "both workers to generate")
    workers = {first: 0, second: 1}  # (spawn_worker's numbers in the log names)
    holder = wait_until(lambda: next((w for w in workers if claims_of(database, w.pid)), None), 30, "a claimed round")
    stopped_at = time.monotonic()
    holder.send_signal(signal.SIGTERM)  # a rolling update, mid-round
    assert holder.wait(30) == 0
    print(f"the stopped worker exited {time.monotonic() - stopped_at:.2f} s after SIGTERM")
    holder_log = stack.root / "logs" / f"worker-{os.getpid()}-{workers[holder]}.log"
    assert "task handed back" in holder_log.read_text()
    jobs = wait_all(database, ids, timeout=60)  # no sweeper runs here: nothing waits for liveness or the broker

    assert {j.status for j in jobs} <= {"succeeded", "abstained"}  # (4 candidates: mostly too few to decide)
    per_sample = Counter((j, r, i) for j, r, i, _ in writes(database))
    assert len(per_sample) == 48 * 4 and set(per_sample.values()) == {1}  # each candidate generated once
    per_worker = Counter(w for *_, w in writes(database))
    print(f"candidates per worker: {dict(per_worker)}")
    assert per_worker["gpu-a"] > 0 and per_worker["gpu-b"] > 0
    assert next(w for w in workers if w is not holder).poll() is None  # the other one served on
