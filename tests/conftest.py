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
