"""``smoothguard pull-model`` without the network: its arguments, the hub call it makes (the hub
library's two functions replaced by stand-ins), the offline cache check on a cache laid out here, and
the revision reaching ``from_pretrained`` through the registry."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import pytest
from huggingface_hub import constants

from shared.backends import registry
from shared.config import Settings, get_settings
from shared.tools import pull_model
from shared.tools.cli import build_parser, main

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["pull-model", *argv])


def test_help_needs_no_torch():
    code = "import sys; sys.modules['torch'] = None; from shared.tools.cli import main; main(['pull-model', '--help'])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "SMOOTHGUARD_MODEL_REVISION" in out.stdout


def test_flags_override_the_settings_and_an_unpinned_pull_is_refused():
    assert pull_model.resolve(args(), "org/model", COMMIT) == ("org/model", COMMIT)
    assert pull_model.resolve(args("--model", "org/other", "--revision", "v1"), "org/model", COMMIT) == (
        "org/other",
        "v1",
    )
    with pytest.raises(ValueError, match="SMOOTHGUARD_MODEL_REVISION"):
        pull_model.resolve(args(), "org/model", "")
    assert pull_model.resolve(args("--allow-unpinned"), "org/model", "") == ("org/model", "")


def test_snapshot_arguments_skip_weights_the_workers_never_load():
    with_safetensors = pull_model.snapshot_arguments("org/m", COMMIT, ["config.json", "model.safetensors", "model.bin"])
    assert with_safetensors["repo_id"] == "org/m" and with_safetensors["revision"] == COMMIT
    assert "*.bin" in with_safetensors["ignore_patterns"] and "*.msgpack" in with_safetensors["ignore_patterns"]
    only_bin = pull_model.snapshot_arguments("org/m", "", ["config.json", "pytorch_model.bin"])
    assert "*.bin" not in only_bin["ignore_patterns"] and only_bin["revision"] is None


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A private HF_HOME and cache; the settings pinned to org/model at COMMIT."""
    monkeypatch.setattr(constants, "HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("SMOOTHGUARD_MODEL", "org/model")
    monkeypatch.setenv("SMOOTHGUARD_MODEL_REVISION", COMMIT)
    get_settings.cache_clear()
    yield tmp_path / "hf" / "hub"
    get_settings.cache_clear()


def lay_out_snapshot(cache: Path) -> Path:
    """What a finished download leaves: the snapshot folder of COMMIT with a file in it."""
    snapshot = cache / "models--org--model" / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    return snapshot


def test_pull_downloads_the_pinned_revision_then_the_cache_check_passes(hub, monkeypatch, capsys):
    calls = []

    def fake_snapshot_download(**kwargs):
        calls.append(kwargs)
        return str(lay_out_snapshot(hub))

    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_files", lambda self, repo, revision=None: ["a.safetensors"])
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    assert main(["pull-model"]) == 0
    assert calls == [pull_model.snapshot_arguments("org/model", COMMIT, ["a.safetensors"])]
    assert f"commit {COMMIT}" in capsys.readouterr().out
    monkeypatch.undo()  # the real snapshot_download, offline, for the check
    monkeypatch.setattr(constants, "HF_HOME", str(hub.parent))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    assert main(["pull-model", "--cached", "--model", "org/model", "--revision", COMMIT]) == 0


def test_cache_check_fails_until_a_pull_finished(hub):
    assert main(["pull-model", "--cached"]) == 1  # nothing there
    lay_out_snapshot(hub)
    assert main(["pull-model", "--cached"]) == 1  # files, but no finished pull (it may be half done)
    marker = pull_model.completion_marker("org/model", COMMIT)
    marker.parent.mkdir(parents=True)
    marker.write_text(COMMIT)
    assert main(["pull-model", "--cached"]) == 0


def test_a_local_model_folder_needs_no_pull(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SMOOTHGUARD_MODEL", str(tmp_path))
    get_settings.cache_clear()
    try:
        assert main(["pull-model", "--allow-unpinned"]) == 0
    finally:
        get_settings.cache_clear()
    assert "nothing to pull" in capsys.readouterr().out


def test_the_worker_loads_the_pinned_revision_of_the_default_model_only(monkeypatch):
    loads = []
    monkeypatch.setattr(registry, "_load_generator", lambda *a: loads.append(a))
    settings = Settings(_env_file=None, model="org/model", model_revision=COMMIT, device="cpu")
    registry.load_generator(settings=settings)
    registry.load_generator("org/other", settings=settings)
    assert [(a[1], a[2]) for a in loads] == [("org/model", COMMIT), ("org/other", "")]
