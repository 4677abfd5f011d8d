import pytest
import torch

from shared.backends.torch_device import resolve_device, resolve_dtype
from shared.config import DEMO_MODEL, Settings


def test_settings_read_smoothguard_environment(monkeypatch):
    monkeypatch.setenv("SMOOTHGUARD_DEVICE", "cpu")
    monkeypatch.setenv("SMOOTHGUARD_MAX_BATCH_SIZE", "7")
    s = Settings()
    assert s.device == "cpu" and s.max_batch_size == 7 and s.model == str(DEMO_MODEL)


def test_auto_device_and_dtype():
    dev = resolve_device("auto")
    assert dev.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16
    assert resolve_dtype("float16", torch.device("cpu")) == torch.float16
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("int3", dev)
