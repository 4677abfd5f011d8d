"""``smoothguard pull-model``: download the model at a pinned revision into the Hugging Face cache, once.

Deployments run it as a one-shot (compose service, Kubernetes Job) before the GPU workers start; the
workers then load the same revision offline. ``huggingface_hub`` reads ``HF_TOKEN`` (gated models) and
``HF_HOME`` (where the cache is) from the environment itself. No torch import.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

# Weights of other frameworks and formats the workers never load (transformers reads safetensors or .bin).
OTHER_FORMATS = ["*.msgpack", "*.h5", "*.ot", "*.tflite", "*.onnx", "*.onnx_data", "*.gguf", "*.pth"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pull-model",
        help="download SMOOTHGUARD_MODEL at SMOOTHGUARD_MODEL_REVISION into the Hugging Face cache (HF_HOME)",
    )
    p.add_argument("--model", default=None, help="hub id (default: SMOOTHGUARD_MODEL)")
    p.add_argument("--revision", default=None, help="commit, tag or branch (default: SMOOTHGUARD_MODEL_REVISION)")
    p.add_argument("--allow-unpinned", action="store_true", help="fetch the default branch when no revision is set")
    p.add_argument(
        "--cached", action="store_true", help="download nothing: exit 0 if the revision is in the cache, else 1"
    )


def ignore_patterns(files: list[str]) -> list[str]:
    """What not to download: other frameworks' weights, and ``.bin`` weights where safetensors exist."""
    patterns = list(OTHER_FORMATS)
    if any(f.endswith(".safetensors") for f in files):
        patterns.append("*.bin")
    return patterns


def snapshot_arguments(model: str, revision: str, files: list[str]) -> dict[str, Any]:
    """The keyword arguments of ``huggingface_hub.snapshot_download`` for ``model`` at ``revision``."""
    return {"repo_id": model, "revision": revision or None, "ignore_patterns": ignore_patterns(files)}


def resolve(args: argparse.Namespace, model: str, revision: str) -> tuple[str, str]:
    """The model and revision to fetch: the flags, else the settings; refuses an unpinned pull
    unless ``--allow-unpinned`` (results drift with the hub's default branch)."""
    model = args.model or model
    revision = args.revision or revision
    if not revision and not args.allow_unpinned:
        raise ValueError(f"no revision for {model}: set SMOOTHGUARD_MODEL_REVISION (or --revision, --allow-unpinned)")
    return model, revision


def run(args: argparse.Namespace) -> int:
    from huggingface_hub import HfApi, snapshot_download

    from shared.config import get_settings

    settings = get_settings()
    model, revision = resolve(args, settings.model, settings.model_revision)
    if Path(model).exists():
        print(f"{model} is a local folder: nothing to pull")
        return 0
    if args.cached:
        return 0 if is_cached(model, revision) else 1
    files = HfApi().list_repo_files(model, revision=revision or None)
    path = Path(str(snapshot_download(**snapshot_arguments(model, revision, files))))
    marker = completion_marker(model, revision)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(path.name + "\n")
    print(f"{model}@{revision or 'default branch'}: commit {path.name} in {path}")
    return 0


def completion_marker(model: str, revision: str) -> Path:
    """The file a finished pull leaves in the cache (a snapshot folder exists from its first file on)."""
    from huggingface_hub import constants

    return Path(constants.HF_HOME) / "smoothguard-pulled" / f"{model}@{revision or 'default'}".replace("/", "--")


def is_cached(model: str, revision: str) -> bool:
    """Whether a pull of ``model`` at ``revision`` finished and its snapshot is in the cache (no network)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        path = Path(str(snapshot_download(model, revision=revision or None, local_files_only=True)))
    except LocalEntryNotFoundError:
        path = None
    if path is None or not completion_marker(model, revision).is_file():
        print(f"{model}@{revision or 'default branch'} is not (completely) in the cache yet")
        return False
    print(f"{model}@{revision or 'default branch'}: commit {path.name} in the cache")
    return True
