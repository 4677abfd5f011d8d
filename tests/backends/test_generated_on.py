"""Where a generator makes its candidates, as recorded on each job (``hf_common.origin_of``): the
device as torch names it — a GPU with its index and name — without a GPU here."""

from types import SimpleNamespace

import torch

from shared.backends import hf_common


def test_a_gpu_is_named_with_its_index_and_model(monkeypatch):
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: f"NVIDIA H100 80GB HBM3 #{index}")
    assert hf_common.device_name(torch.device("cuda")) == "cuda:1 NVIDIA H100 80GB HBM3 #1"  # "auto": the current one
    assert hf_common.device_name(torch.device("cuda:0")) == "cuda:0 NVIDIA H100 80GB HBM3 #0"
    assert hf_common.device_name(torch.device("cpu")) == "cpu"


def test_the_revision_is_the_snapshots_commit_else_the_pin_else_none():
    model = SimpleNamespace(dtype=torch.bfloat16, config=SimpleNamespace(_commit_hash=None))  # what it reads
    cpu = torch.device("cpu")
    assert hf_common.origin_of(model, cpu)["revision"] is None  # a local folder
    assert hf_common.origin_of(model, cpu, "v1.2")["revision"] == "v1.2"
    model.config._commit_hash = "a272c74b"
    origin = hf_common.origin_of(model, cpu, "v1.2")
    assert origin["revision"] == "a272c74b" and origin["dtype"] == "bfloat16" and origin["device"] == "cpu"
