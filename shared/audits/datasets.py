"""An audit's benchmark set: uploaded archives in the object store, loaded into items."""

from __future__ import annotations

from pathlib import Path

from shared.audits.spec import AuditSpec
from shared.benchmarks.items import Dataset
from shared.benchmarks.loaders import extract_archive, load_dataset, synthetic
from shared.storage import ObjectStore


def dataset_key(tenant_id: str, sha256: str) -> str:
    return f"datasets/{tenant_id}/{sha256}"


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
