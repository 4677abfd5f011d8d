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
    """``gpu`` tests need CUDA; everything else runs on the CPU."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def postgres(tmp_path_factory):
    """A real PostgreSQL server for the session, started by the same launcher users run."""
    from shared.stack import EmbeddedPostgres

    server = EmbeddedPostgres(tmp_path_factory.mktemp("stack")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3 server (SeaweedFS) that enforces these credentials."""
    from shared.stack import EmbeddedS3

    server = EmbeddedS3(tmp_path_factory.mktemp("s3"), "test-key", "test-secret-123").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    from shared.stack import EmbeddedRedis

    server = EmbeddedRedis(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture()
def store(s3_server):
    """The object store on the S3 server, bucket created once the server answers."""
    import time

    from minio.error import S3Error

    from shared.storage import ObjectStore

    store = ObjectStore(s3_server.endpoint, "test-key", "test-secret-123", "media-test")
    deadline = time.monotonic() + 20
    while True:  # the S3 port opens before the filer behind it is ready
        try:
            store.ensure_bucket()
            return store
        except (S3Error, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture()
def empty_database(postgres):
    """A new, empty database on the session's PostgreSQL server."""
    import uuid

    import psycopg

    name = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres.url, autocommit=True) as con:
        con.execute(f"create database {name}")
    return postgres.url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture()
def database(empty_database):
    """A new database with the schema, built by the migrations."""
    from shared.db import migrate

    migrate(empty_database)
    return empty_database


@pytest.fixture()
def worker(database, redis_server, s3_server, store, tmp_path):
    """A Celery worker process on the gpu and cpu queues, configured for these services."""
    import os
    import subprocess
    import sys

    env = os.environ | {
        "SMOOTHGUARD_DATABASE_URL": database, "SMOOTHGUARD_REDIS_URL": redis_server.url,
        "SMOOTHGUARD_S3_ENDPOINT": s3_server.endpoint, "SMOOTHGUARD_S3_ACCESS_KEY": "test-key",
        "SMOOTHGUARD_S3_SECRET_KEY": "test-secret-123", "SMOOTHGUARD_S3_BUCKET": store.bucket,
        "SMOOTHGUARD_DEVICE": "cpu",
    }  # fmt: skip
    log = (tmp_path / "worker.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "-Q", "gpu,cpu",
                             "--pool", "solo", "-l", "info"], env=env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    yield proc
    proc.terminate()
    proc.wait(30)
    print((tmp_path / "worker.log").read_text()[-3000:])
