"""A robust model's steps as the GPU worker runs them: train (``shared.robustify``), upload the
checkpoint, record the result; and the sweep that re-sends runs whose worker was lost.

Training runs outside any lock: the row is claimed (a new attempt) in one short transaction,
progress is written every ``PROGRESS_EVERY_S`` in another — which is also where a cancel or a
newer attempt stops this one — and the result is recorded in a last one. A step that raises
ends the run ``failed`` with the reason.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from shared import pipeline
from shared.audits.datasets import dataset_key, dataset_limits
from shared.benchmarks.items import Dataset
from shared.benchmarks.loaders import extract_archive, load_dataset
from shared.config import Settings
from shared.db import locked_unfinished, session_scope
from shared.faults import raise_if_transient
from shared.jobs.store import now
from shared.liveness import held_elsewhere, live_workers, worker_id
from shared.media.checks import check_media
from shared.models import RobustModel
from shared.pipeline import Message
from shared.robust_models.spec import RobustifySpec
from shared.robust_models.store import (
    claim,
    fail_robust_model,
    file_key,
    is_current,
    lost_robust_models,
    record_progress,
    spec_of,
    succeed,
)
from shared.storage import ObjectStore

log = logging.getLogger(__name__)
PROGRESS_EVERY_S = 2.0
VALIDATION_SEED_OFFSET = 1_000_003  # the shapes validation set: another seed than the training set's


class Stopped(Exception):
    """The run was cancelled, or a newer attempt took it over: this one stops, writing nothing."""


@dataclass
class TrainingData:
    images: Sequence[Any]  # PIL images, opened on access
    validation: tuple[list[Any], list[str], list[str]]  # images, prompts, labels


def robustify(settings: Settings, model_id: str) -> list[Message]:
    """Claim the run, train, upload the checkpoint, record the result (nothing follows)."""
    with locked_unfinished(settings.database_url, RobustModel, model_id) as (session, row):
        if row is None or held_elsewhere(session, settings, row.claimed_by):
            return []  # a duplicate message: a live worker is training it
        attempt, spec, source, tenant = claim(row, worker_id()), spec_of(row), row.source_model, str(row.tenant_id)
    try:
        record, files = train_and_upload(settings, model_id, attempt, spec, source, tenant)
    except Stopped:
        return []
    except Exception as exc:
        raise_if_transient(exc)  # the task wrapper retries; the next attempt trains from the seed
        log.error("robust model %s failed", model_id, exc_info=exc)
        with session_scope(settings.database_url) as session:
            fail_robust_model(session, model_id, f"{type(exc).__name__}: {exc}")
        return []
    with locked_unfinished(settings.database_url, RobustModel, model_id) as (session, row):
        if is_current(row, attempt):
            assert row is not None
            succeed(row, record, files)
            return []
    ObjectStore.from_settings(settings).remove(f["key"] for f in files.values())  # cancelled meanwhile
    return []


def train_and_upload(
    settings: Settings, model_id: str, attempt: int, spec: RobustifySpec, source: str, tenant: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    import torch
    from transformers import AutoModelForImageTextToText

    from shared.backends.hf_common import load_processor
    from shared.backends.registry import prepare_hf
    from shared.backends.torch_device import resolve_device
    from shared.robustify import distil
    from shared.robustify.checkpoint import save_student
    from shared.robustify.evaluate import noisy_accuracy_validator

    store = ObjectStore.from_settings(settings)
    with tempfile.TemporaryDirectory() as tmp:
        data = training_data(spec, store, tenant, settings, Path(tmp) / "data")
        device = resolve_device(settings.device)
        prepare_hf(settings.hf_offline)  # a hub id resolves to the local cache only, as for serving
        model = AutoModelForImageTextToText.from_pretrained(source, dtype=torch.float32)
        model.to(device)  # type: ignore[arg-type]
        processor = load_processor(source)
        validate = None
        if data.validation[0]:
            validate = noisy_accuracy_validator(
                processor, *data.validation, spec.validation_sigmas, noise_space=spec.noise_space, seed=spec.seed
            )
        source_validation = validate(model) if validate else {}
        config = spec.distil_config()
        on_step = progress_writer(settings, model_id, attempt)
        student, record = distil(model, processor, data.images, config, validate=validate, on_step=on_step)
        out = Path(tmp) / "checkpoint"
        save_checkpoint(save_student, student, source, out)
        info = {"source": source, "robust_model": model_id, "spec": spec.model_dump(mode="json")}
        result = record.to_dict() | {"source_validation": source_validation}
        (out / "training_info.json").write_text(json.dumps(info | {"record": result}, indent=2) + "\n")
        check_current(settings, model_id, attempt)
        return result, upload(store, tenant, model_id, out)


def save_checkpoint(save_student: Any, student: Any, source: str, out: Path) -> None:
    """The student's files; the processor files come from the source folder (a hub id is
    resolved to its local snapshot, offline)."""
    src = Path(source)
    if not src.is_dir():
        from huggingface_hub import snapshot_download

        src = Path(snapshot_download(source, local_files_only=True))
    save_student(student, src, out)


def progress_writer(settings: Settings, model_id: str, attempt: int):
    """``on_step``: every ``PROGRESS_EVERY_S``, steps and loss to the row; raises ``Stopped``
    when the run was cancelled or another attempt claimed it."""
    last = [time.monotonic()]

    def on_step(steps: int, loss: float) -> None:
        if time.monotonic() - last[0] < PROGRESS_EVERY_S:
            return
        last[0] = time.monotonic()
        with session_scope(settings.database_url) as session:
            row = session.get(RobustModel, uuid.UUID(model_id), with_for_update=True)
            if not is_current(row, attempt):
                raise Stopped
            assert row is not None
            record_progress(row, steps, loss)

    return on_step


def check_current(settings: Settings, model_id: str, attempt: int) -> None:
    with session_scope(settings.database_url) as session:
        if not is_current(session.get(RobustModel, uuid.UUID(model_id)), attempt):
            raise Stopped


def upload(store: ObjectStore, tenant: str, model_id: str, folder: Path) -> dict[str, Any]:
    """Every file of the checkpoint to ``robust-models/<tenant>/<id>/``: name → key, bytes, sha256."""
    files = {}
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        key = file_key(tenant, model_id, path.name)
        store.put_file(key, str(path))
        files[path.name] = {"key": key, "bytes": path.stat().st_size, "sha256": file_sha256(path)}
    return files


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(2**20):
            h.update(chunk)
    return h.hexdigest()


def training_data(
    spec: RobustifySpec, store: ObjectStore, tenant: str, settings: Settings, workdir: Path
) -> TrainingData:
    """The synthetic set (validation: another seed's questions), or an uploaded archive's images
    (validation: its first labelled closed questions, whose images are kept out of training)."""
    from shared.benchmarks.shapes import RenderedScenes, generate_set, render

    d = spec.dataset
    if d.format == "shapes":
        images = RenderedScenes([scene for scene, _ in generate_set(d.seed, d.count)])
        held_out = generate_set(d.seed + VALIDATION_SEED_OFFSET, -(-spec.validation_items // 2))
        items = [(render(scene), q, a) for scene, pairs in held_out for q, a in pairs][: spec.validation_items]
        return TrainingData(images, _columns(items))
    assert d.archive is not None
    root = extract_archive(store.get(dataset_key(tenant, d.archive)), workdir, dataset_limits(settings))
    return archive_data(load_dataset(d.format, root, **d.options), spec.validation_items, settings)  # type: ignore[arg-type]


def archive_data(dataset: Dataset, validation_items: int, settings: Settings) -> TrainingData:
    from shared.robustify.inputs import ImageFiles

    labelled = [i for i in dataset.items if i.kind in ("yes_no", "closed") and i.label]
    held = labelled[:validation_items]
    held_images = {i.image for i in held}
    train = sorted({i.image for i in dataset.items} - held_images)
    for name in [*train, *held_images]:
        check_media((dataset.root / name).read_bytes(), settings)  # header-first bounds: no decompression bomb trains
    files = ImageFiles([dataset.root / name for name in train])
    opened = ImageFiles([dataset.root / i.image for i in held]) if held else []
    validation = [(opened[k], i.prompt, str(i.label)) for k, i in enumerate(held)]
    return TrainingData(files, _columns(validation))


def _columns(items: list[tuple[Any, str, str]]) -> tuple[list[Any], list[str], list[str]]:
    if not items:
        return [], [], []
    images, prompts, labels = (list(x) for x in zip(*items, strict=True))
    return images, prompts, labels


def sweep_robust_models(settings: Settings) -> list[Message]:
    """Re-send every unfinished run whose worker died, or untouched for ``stale_after_s`` (its message was lost)."""
    older_than = now() - timedelta(seconds=settings.stale_after_s)
    with session_scope(settings.database_url) as session:
        lost = lost_robust_models(session, older_than, live_workers(session, settings))
        return [m for row in lost for m in pipeline.resume_robust_model(row)]
