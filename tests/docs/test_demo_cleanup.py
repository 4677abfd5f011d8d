"""``smoothguard demo`` leaves no temporary data folder behind, however it ends, and a stack no beat
schedule files in the temporary folder."""

import argparse
from pathlib import Path

import pytest

from shared.tools import commands


def test_the_demo_removes_its_temporary_folder(monkeypatch):
    roots: list[Path] = []

    def fail_after_writing(stack, *args, **kwargs):
        roots.append(stack.root)
        (stack.root / "postgres").mkdir(parents=True)
        (stack.root / "postgres" / "data").write_text("…")
        raise RuntimeError("the API exited")

    monkeypatch.setattr(commands, "start_all", fail_after_writing)
    flags = {"images": None, "clips": None, "steps": None, "stop_loss": None, "num_samples": None, "full": False}
    with pytest.raises(RuntimeError):
        commands.demo(argparse.Namespace(data_dir=None, out=Path("unused"), **flags))
    assert roots and not roots[0].exists()


def test_the_demo_keeps_a_data_folder_it_was_given(monkeypatch, tmp_path):
    def fail(stack, *args, **kwargs):
        raise RuntimeError("the API exited")

    monkeypatch.setattr(commands, "start_all", fail)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "keep").write_text("mine")
    flags = {"images": None, "clips": None, "steps": None, "stop_loss": None, "num_samples": None, "full": False}
    with pytest.raises(RuntimeError):
        commands.demo(argparse.Namespace(data_dir=tmp_path / "data", out=tmp_path / "out", **flags))
    assert (tmp_path / "data" / "keep").read_text() == "mine"  # a folder the user named is never removed


def test_a_stack_removes_the_beat_schedule_of_its_own_broker(tmp_path):
    from types import SimpleNamespace

    from shared.tools.launcher import Stack, beat_schedule_path

    stack = Stack(tmp_path, environ={})
    stack.redis = SimpleNamespace(url=f"redis://127.0.0.1:1/{tmp_path.name}")  # type: ignore[assignment]
    schedule = Path(beat_schedule_path(stack.redis.url))
    files = [schedule, Path(f"{schedule}.db"), Path(f"{schedule}.dat")]
    for file in files:
        file.write_text("")
    stack.stop()
    assert not any(file.exists() for file in files)
