"""A robustify request checked before anything is stored: a served image model of a layout
robustify can distil, a training budget within the deployment's cap, an archive that exists."""

from __future__ import annotations

import json
from pathlib import Path

from shared.audits.datasets import dataset_key
from shared.config import Settings
from shared.errors import Invalid
from shared.jobs.intake import check_modality
from shared.robust_models.spec import RobustifySpec
from shared.smoothing.types import DISTILLABLE_MODEL_TYPES
from shared.storage import ObjectStore


def check_robustify(settings: Settings, store: ObjectStore, tenant_id: str, spec: RobustifySpec) -> str:
    """The source model to distil; ``Invalid`` naming what is wrong."""
    known = settings.model_ids()
    model = spec.model or settings.model
    if model not in known:
        raise Invalid(f"unknown model {model!r}; known models: {', '.join(known)}")
    check_modality(model, "image")
    config = Path(model) / "config.json"
    if config.is_file() and (kind := json.loads(config.read_text()).get("model_type")) not in DISTILLABLE_MODEL_TYPES:
        raise Invalid(f"robustify cannot distil model type {kind!r}; supported: {', '.join(DISTILLABLE_MODEL_TYPES)}")
    if spec.minutes > settings.max_robustify_minutes:
        raise Invalid(f"minutes is {spec.minutes:g}; the limit is {settings.max_robustify_minutes:g}")
    if spec.dataset.archive and not store.exists(dataset_key(tenant_id, spec.dataset.archive)):
        raise Invalid(f"dataset.archive: no archive {spec.dataset.archive}; upload it with POST /v1/datasets")
    return model
