import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def llava_path(tmp_path_factory):
    from tests.checkpoints import save_llava

    return str(save_llava(tmp_path_factory.mktemp("tiny-llava")))


@pytest.fixture(scope="session")
def qwen_vl_path(tmp_path_factory):
    from tests.checkpoints import save_qwen25_vl

    return str(save_qwen25_vl(tmp_path_factory.mktemp("tiny-qwen25-vl")))


@pytest.fixture(scope="session")
def qwen_audio_path(tmp_path_factory):
    from tests.checkpoints import save_qwen2_audio

    return str(save_qwen2_audio(tmp_path_factory.mktemp("tiny-qwen2-audio")))


@pytest.fixture(scope="session")
def shapes_image():
    import random

    from shared.benchmarks.shapes import random_scene, render

    return render(random_scene(random.Random(3)))


@pytest.fixture(scope="session")
def llava_next_path(tmp_path_factory):
    from tests.checkpoints import save_llava_next

    return str(save_llava_next(tmp_path_factory.mktemp("tiny-llava-next")))


def pytest_collection_modifyitems(config, items):
    """Tests that start the embedded stack are ``integration`` (``-m "not integration"`` runs the fast
    layer alone); ``gpu`` tests need CUDA and are skipped without it."""
    import torch

    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "stack" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip)


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """PostgreSQL, Redis and S3 for the session, started by ``smoothguard up``'s launcher."""
    from shared.tools.launcher import Stack

    environ = {k: v for k, v in os.environ.items() if not k.startswith("SMOOTHGUARD_")}
    started = Stack(tmp_path_factory.mktemp("stack"), environ=environ).start()
    yield started
    started.stop()


@pytest.fixture(scope="session")
def postgres(stack):
    return stack.postgres


@pytest.fixture(scope="session")
def redis_server(stack):
    return stack.redis


@pytest.fixture(scope="session")
def s3_server(stack):
    return stack.s3


@pytest.fixture()
def store(stack):
    """The object store on the stack's S3 server (a bucket of the tests' own)."""
    from shared.tools.launcher import ensure_bucket

    settings = stack.settings(SMOOTHGUARD_S3_BUCKET="media-test")
    ensure_bucket(settings)
    from shared.storage import ObjectStore

    return ObjectStore.from_settings(settings)


@pytest.fixture()
def empty_database(postgres):
    """A new, empty database on the session's PostgreSQL server."""
    import uuid

    from shared.tools.launcher import create_database

    return create_database(postgres.url, f"t_{uuid.uuid4().hex[:10]}")


@pytest.fixture(scope="session")
def migrated_template(postgres):
    """A database built once by the migrations, which each test's database is copied from."""
    import uuid

    from shared.db import migrate
    from shared.tools.launcher import create_database

    url = create_database(postgres.url, f"template_{uuid.uuid4().hex[:10]}")
    migrate(url)  # (the migrations dispose their engine: nothing stays connected to the template)
    return url.rsplit("/", 1)[1]


@pytest.fixture()
def database(postgres, migrated_template):
    """A new database with the schema, built by the migrations (a copy of the session's migrated
    template: four times faster than migrating each time)."""
    import uuid

    import psycopg

    name = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres.url, autocommit=True) as con:
        con.execute(f'create database "{name}" template "{migrated_template}"')
    return postgres.url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture()
def service_env(stack, database, store):
    """What the API and workers of one test read: the stack, this test's database and bucket."""
    from shared.config import DEMO_MODEL

    return stack.env | {
        "SMOOTHGUARD_DATABASE_URL": database,
        "SMOOTHGUARD_S3_BUCKET": store.bucket,
        "SMOOTHGUARD_DEVICE": "cpu",
        "SMOOTHGUARD_MODEL": str(DEMO_MODEL),
        "SMOOTHGUARD_WEBHOOK_ALLOWLIST": "127.0.0.1,localhost",
        "SMOOTHGUARD_BROKER_VISIBILITY_TIMEOUT_S": "4",
        # workers beat every second and are dead after 3 s of silence; a sweeper (a worker started
        # with --beat) looks every second: a killed worker's work comes back within seconds
        "SMOOTHGUARD_WORKER_HEARTBEAT_S": "1",
        "SMOOTHGUARD_WORKER_TIMEOUT_S": "3",
        "SMOOTHGUARD_SWEEP_INTERVAL_S": "1",
    }


@pytest.fixture()
def spawn_worker(stack, service_env):
    """Start ``smoothguard worker gpu cpu webhooks`` processes (one model each) for this test."""
    import itertools

    import redis

    redis.Redis.from_url(stack.env["SMOOTHGUARD_REDIS_URL"]).flushall()  # no messages of earlier tests
    names, counter = [], itertools.count()

    def start(queues=("gpu", "cpu", "webhooks"), **env):
        name = f"worker-{os.getpid()}-{next(counter)}"
        names.append(name)
        return stack.spawn(name, ["worker", *queues], env=service_env | env)

    yield start
    stack.stop_children(names, timeout=30)
    for name in names:
        print((stack.root / "logs" / f"{name}.log").read_text()[-3000:])


@pytest.fixture()
def worker(spawn_worker):
    return spawn_worker()


@pytest.fixture()
def settings(service_env, monkeypatch):
    """This test's settings, in the environment too (the API reads them there)."""
    for k, v in service_env.items():
        monkeypatch.setenv(k, v)
    from shared.config import get_settings

    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


@pytest.fixture()
def queue(settings):
    """A sender on this test's broker: what the API and the workers send pipeline messages with."""
    from workers.celery_app import CelerySender

    return CelerySender.from_settings(settings)


@pytest.fixture()
def keys(settings):
    from shared.db import session_scope
    from shared.tenants import create_api_key, create_tenant

    out = {}
    with session_scope(settings.database_url) as s:
        for name in ("alpha", "beta"):
            _, out[name] = create_api_key(s, tenant=create_tenant(s, name=name))
    return out


@pytest.fixture()
def client(settings):
    from fastapi.testclient import TestClient

    from api.main import create_app

    return TestClient(create_app(settings))
