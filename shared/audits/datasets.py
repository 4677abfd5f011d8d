"""An audit's benchmark set: uploaded archives in the object store, loaded into items."""

from __future__ import annotations

import tempfile
from pathlib import Path

from shared.audits.spec import AuditSpec
from shared.benchmarks.items import Dataset, DatasetError
from shared.benchmarks.loaders import extract_archive, load_dataset, synthetic
from shared.errors import Invalid
from shared.storage import ObjectStore


def dataset_key(tenant_id: str, sha256: str) -> str:
    return f"datasets/{tenant_id}/{sha256}"


def check_archive(fmt: str, data: bytes, max_bytes: int) -> int:
    """An uploaded archive's item count, found by loading it; ``Invalid`` if it isn't a set of that format."""
    if len(data) > max_bytes:
        raise Invalid(f"the archive is over {max_bytes} bytes")
    if fmt == "shapes":
        raise Invalid("format: the shapes set is generated, not uploaded")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            return len(load_dataset(fmt, extract_archive(data, Path(tmp))).items)
    except DatasetError as exc:
        raise Invalid(str(exc)) from exc


def load_set(spec: AuditSpec, store: ObjectStore, tenant_id: str, workdir: Path) -> Dataset:
    """The audit's items: the synthetic set made here, or an uploaded archive unpacked here."""
    d = spec.dataset
    if d.format == "shapes":
        dataset = synthetic(d.seed, d.count, workdir)
    else:
        assert d.archive is not None
        root = extract_archive(store.get(dataset_key(tenant_id, d.archive)), workdir)
        dataset = load_dataset(d.format, root, **d.options)  # type: ignore[arg-type]
    if spec.limit is not None:
        dataset.items = dataset.items[: spec.limit]
    if not dataset.items:
        raise ValueError(f"the {d.format} set has no items")
    return dataset
