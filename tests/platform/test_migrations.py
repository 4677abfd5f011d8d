"""The schema exists only through Alembic: migrations build it on a real PostgreSQL, match the
models exactly, enforce the service's uniqueness rules and downgrade cleanly."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.exc import IntegrityError

from shared.db import get_engine, migrate, session_scope
from shared.models import Base, Job, Media, SampleRow, Tenant

TABLES = {"tenants", "api_keys", "media", "jobs", "samples", "webhook_endpoints", "deliveries"}


def test_migrations_create_exactly_the_models(database):
    engine = get_engine(database)
    assert set(inspect(engine).get_table_names()) >= TABLES
    with engine.connect() as con:
        assert compare_metadata(MigrationContext.configure(con), Base.metadata) == []


def _job(tenant, media, key):
    return Job(
        tenant_id=tenant.id,
        media_id=media.id,
        status="queued",
        model="m",
        prompt="p",
        params={},
        request_hash="h",
        idempotency_key=key,
    )


def test_idempotency_keys_are_unique_per_tenant(database):
    with session_scope(database) as s:
        a, b = Tenant(name="a"), Tenant(name="b")
        s.add_all([a, b])
        s.flush()
        ma = Media(
            tenant_id=a.id, sha256="0" * 64, content_type="image/png", modality="image", size_bytes=1, object_key="k"
        )
        mb = Media(
            tenant_id=b.id, sha256="0" * 64, content_type="image/png", modality="image", size_bytes=1, object_key="k2"
        )
        s.add_all([ma, mb])
        s.flush()
        s.add_all([_job(a, ma, "k1"), _job(b, mb, "k1")])  # same key, other tenant: fine
        ids = (a.id, ma.id)
    with pytest.raises(IntegrityError), session_scope(database) as s:
        s.add(
            Job(
                tenant_id=ids[0],
                media_id=ids[1],
                status="queued",
                model="m",
                prompt="p",
                params={},
                request_hash="h",
                idempotency_key="k1",
            )
        )


def test_one_sample_row_per_job_round_index(database):
    with session_scope(database) as s:
        t = Tenant(name="t")
        s.add(t)
        s.flush()
        m = Media(
            tenant_id=t.id, sha256="1" * 64, content_type="image/png", modality="image", size_bytes=1, object_key="k"
        )
        s.add(m)
        s.flush()
        job = _job(t, m, None)
        s.add(job)
        s.flush()
        job_id = job.id

    def sample():
        return SampleRow(
            job_id=job_id,
            round=0,
            index=3,
            seed=7,
            sigma=0.1,
            noise_space="normalized",
            is_clean=False,
            text="x",
            num_tokens=1,
            generation_ms=1.0,
        )

    with session_scope(database) as s:
        s.add(sample())
    with pytest.raises(IntegrityError), session_scope(database) as s:
        s.add(sample())


def test_downgrade_removes_everything(database):
    migrate(database, "base")
    assert not TABLES & set(inspect(get_engine(database)).get_table_names())
    migrate(database)
    assert set(inspect(get_engine(database)).get_table_names()) >= TABLES


def test_0010_adds_jobs_generated_on_and_its_downgrade_drops_it(database):
    from alembic import command
    from alembic.config import Config

    from shared.db import ROOT

    def job_columns():
        return {c["name"] for c in inspect(get_engine(database)).get_columns("jobs")}

    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["url"] = database
    assert "generated_on" in job_columns()
    command.downgrade(config, "0009")
    assert "generated_on" not in job_columns() and "claimed_by" in job_columns()
    migrate(database)
    assert "generated_on" in job_columns()
