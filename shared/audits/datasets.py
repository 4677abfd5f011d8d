"""Benchmark archives: an upload is judged at the door only by what is cheap (its format name, its
size, its first bytes), streamed to the object store, and checked by a worker — unpacked under the
deployment's caps and loaded — to ``ready`` with its item count or ``invalid`` with the reason.
Audits read ``ready`` archives only, unpacked under the same caps."""

from __future__ import annotations

import hashlib
import logging
import tempfile
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared import pipeline
from shared.audits.spec import GENERATED_FORMATS, AuditSpec, DatasetSpec
from shared.benchmarks.archives import HEAD_BYTES, Limits, archive_kind
from shared.benchmarks.items import Dataset, DatasetError
from shared.benchmarks.loaders import extract_archive, load_dataset, synthetic, synthetic_tones
from shared.config import Settings
from shared.db import session_scope
from shared.errors import Invalid
from shared.faults import raise_if_transient
from shared.jobs.store import now
from shared.media.checks import check_media
from shared.models import DatasetArchive
from shared.pipeline import Message
from shared.storage import ObjectStore

log = logging.getLogger(__name__)
MAX_CHECK_ATTEMPTS = 3  # checks started for one upload; past this its worker died every time: invalid
_COPY_CHUNK = 2**20


def dataset_key(tenant_id: str, sha256: str) -> str:
    return f"datasets/{tenant_id}/{sha256}"


def dataset_limits(settings: Settings) -> Limits:
    return Limits(
        max_bytes=settings.max_dataset_extracted_bytes,
        max_members=settings.max_dataset_members,
        max_line_bytes=settings.max_dataset_line_bytes,
        max_json_bytes=settings.max_dataset_json_bytes,
    )


def receive_archive(
    session: Session, store: ObjectStore, settings: Settings, tenant_id: uuid.UUID, fmt: str, upload: IO[bytes]
) -> tuple[DatasetArchive, bool]:
    """The tenant's dataset for these bytes in this format, and whether it is new (``validating``;
    the caller sends its check once committed). ``Invalid`` — nothing stored — for the generated
    format, an archive over the size limit, or bytes that are not a zip or tar by their start."""
    if fmt in GENERATED_FORMATS:
        raise Invalid(f"format: the {fmt} set is generated, not uploaded")
    with tempfile.NamedTemporaryFile(prefix="dataset-") as tmp:
        sha, size = _copy_hashing(upload, tmp, settings.max_dataset_bytes)
        if (known := _find(session, tenant_id, sha, fmt)) is not None:
            return known, False
        key = dataset_key(str(tenant_id), sha)
        if not store.exists(key):
            store.put_file(key, tmp.name)
    row = {"tenant_id": tenant_id, "format": fmt, "sha256": sha, "object_key": key, "size_bytes": size}
    stmt = insert(DatasetArchive).values(row | {"id": uuid.uuid4(), "status": "validating", "touched_at": now()})
    created = session.execute(stmt.on_conflict_do_nothing().returning(DatasetArchive.id)).first() is not None
    found = _find(session, tenant_id, sha, fmt)
    assert found is not None
    return found, created


def _copy_hashing(src: IO[bytes], out: IO[bytes], max_bytes: int) -> tuple[str, int]:
    """Copy the upload a chunk at a time: its sha256 and size; ``Invalid`` when it is too large
    or does not start like a zip or tar."""
    digest, size = hashlib.sha256(), 0
    head = src.read(HEAD_BYTES)
    if archive_kind(head) is None:
        raise Invalid("file: not a zip or tar archive (zip, tar, tar.gz, tar.bz2 or tar.xz)")
    chunk = head
    while chunk:
        size += len(chunk)
        if size > max_bytes:
            raise Invalid(f"file: the archive is over {max_bytes} bytes")
        digest.update(chunk)
        out.write(chunk)
        chunk = src.read(_COPY_CHUNK)
    out.flush()
    return digest.hexdigest(), size


def _find(session: Session, tenant_id: uuid.UUID, sha: str, fmt: str) -> DatasetArchive | None:
    query = select(DatasetArchive).where(
        DatasetArchive.tenant_id == tenant_id, DatasetArchive.sha256 == sha, DatasetArchive.format == fmt
    )
    return session.scalar(query)


def ready_archive(session: Session, tenant_id: uuid.UUID, dataset: DatasetSpec) -> DatasetArchive:
    """The ``ready`` upload an audit (or a robustify run) names; ``Invalid`` naming its status otherwise."""
    assert dataset.archive is not None
    row = _find(session, tenant_id, dataset.archive, dataset.format)
    if row is None:
        raise Invalid(
            f"dataset.archive: no {dataset.format} archive {dataset.archive}; upload it with POST /v1/datasets"
        )
    if row.status != "ready":
        reason = f": {row.error}" if row.error else f" (poll GET /v1/datasets/{row.id})"
        raise Invalid(f"dataset.archive: dataset {row.id} is {row.status}, not ready{reason}")
    return row


def check_dataset(settings: Settings, dataset_id: str) -> list[Message]:
    """The worker's check of an upload: ``ready`` with its item count, or ``invalid`` with the
    reason. Faults of the object store or database are retried (re-raised); nothing else escapes."""
    started = _start_check(settings, dataset_id)
    if started is None:
        return []
    key, fmt, attempts = started
    if attempts > MAX_CHECK_ATTEMPTS:
        _record(settings, dataset_id, None, f"the check stopped {MAX_CHECK_ATTEMPTS} times without an answer")
        return []
    try:
        items, error = count_items(ObjectStore.from_settings(settings), settings, key, fmt), None
    except Exception as exc:
        raise_if_transient(exc)
        log.info("dataset %s is invalid", dataset_id, exc_info=not isinstance(exc, DatasetError))
        items, error = None, str(exc) if isinstance(exc, DatasetError) else f"{type(exc).__name__}: {exc}"
    _record(settings, dataset_id, items, error)
    return []


def _start_check(settings: Settings, dataset_id: str) -> tuple[str, str, int] | None:
    with session_scope(settings.database_url) as session:
        row = session.get(DatasetArchive, uuid.UUID(dataset_id), with_for_update=True)
        if row is None or row.status != "validating":
            return None
        row.attempts += 1
        row.touched_at = now()
        return row.object_key, row.format, row.attempts


def _record(settings: Settings, dataset_id: str, items: int | None, error: str | None) -> None:
    with session_scope(settings.database_url) as session:
        row = session.get(DatasetArchive, uuid.UUID(dataset_id), with_for_update=True)
        if row is None or row.status != "validating":
            return
        row.status, row.items, row.error = ("ready", items, None) if error is None else ("invalid", None, error[:2000])
        row.checked_at = now()


def count_items(store: ObjectStore, settings: Settings, key: str, fmt: str) -> int:
    """Unpack and load the archive as its format under the caps, and check the files it names
    (``check_files``)."""
    with tempfile.TemporaryDirectory(prefix="dataset-check-") as tmp:
        workdir = Path(tmp)
        try:
            dataset = load_dataset(fmt, unpack(store, key, workdir, dataset_limits(settings)))
            check_files(dataset, settings)
        except DatasetError as exc:
            raise DatasetError(str(exc).replace(f"{workdir}/set/", "").replace(f"{workdir}/", "")) from exc
        if not dataset.items:
            raise DatasetError(f"the {fmt} set has no items")
        return len(dataset.items)


def check_files(dataset: Dataset, settings: Settings) -> None:
    """Every file the set names is within the upload limit (an audit reads each whole); every
    clip of an audio set decodes as audio within the deployment's bounds (one at a time)."""
    seen: set[str] = set()
    for item in dataset.items:
        if item.media in seen:
            continue
        seen.add(item.media)
        path = dataset.media_path(item)
        if path.stat().st_size > settings.max_upload_bytes:
            raise DatasetError(f"{item.modality} {item.media}: over {settings.max_upload_bytes} bytes (the limit)")
        if item.modality == "audio":
            check_clip(path.read_bytes(), item.media, settings)


def check_clip(data: bytes, name: str, settings: Settings) -> None:
    try:
        checked = check_media(data, settings)
    except Invalid as exc:
        raise DatasetError(f"audio {name}: {exc}") from exc
    if checked.modality != "audio":
        raise DatasetError(f"audio {name}: an image, not an audio clip")


def unpack(store: ObjectStore, key: str, workdir: Path, limits: Limits) -> Path:
    """Download the archive into ``workdir`` a chunk at a time, unpack it there under ``limits``
    (the download is removed after), and return the set's root folder."""
    archive = workdir / "archive"
    with archive.open("wb") as out:
        for chunk in store.stream(key):
            out.write(chunk)
    try:
        return extract_archive(archive, workdir / "set", limits)
    finally:
        archive.unlink()


def sweep_datasets(settings: Settings) -> list[Message]:
    """Re-send the check of every upload still ``validating`` and untouched for ``stale_after_s``."""
    older_than = now() - timedelta(seconds=settings.stale_after_s)
    with session_scope(settings.database_url) as session:
        return [m for row in stale_datasets(session, older_than) for m in pipeline.resume_dataset(row)]


def stale_datasets(session: Session, older_than: datetime) -> list[DatasetArchive]:
    rows = session.scalars(
        select(DatasetArchive)
        .where(DatasetArchive.status == "validating", DatasetArchive.touched_at < older_than)
        .with_for_update(skip_locked=True)
    ).all()
    for row in rows:
        row.touched_at = now()
    return list(rows)


GENERATED_SETS = {"shapes": synthetic, "tones": synthetic_tones}


def load_set(spec: AuditSpec, store: ObjectStore, tenant_id: str, workdir: Path, limits: Limits) -> Dataset:
    """The audit's items: a synthetic set made here, or an uploaded archive unpacked here under
    ``limits`` (the deployment's: :func:`dataset_limits`)."""
    d = spec.dataset
    if d.format in GENERATED_SETS:
        dataset = GENERATED_SETS[d.format](d.seed, d.count, workdir)
    else:
        assert d.archive is not None
        root = unpack(store, dataset_key(tenant_id, d.archive), workdir, limits)
        dataset = load_dataset(d.format, root, **d.options)  # type: ignore[arg-type]
    if spec.limit is not None:
        dataset.items = dataset.items[: spec.limit]
    if not dataset.items:
        raise ValueError(f"the {d.format} set has no items")
    return dataset
