"""A robustify request checked before anything is stored: a served image model of a layout
robustify can distil, a training budget within the deployment's cap, an uploaded archive a worker found ready."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from sqlalchemy.orm import Session

from shared.audits.datasets import ready_archive
from shared.config import Settings
from shared.errors import Invalid
from shared.jobs.intake import check_modality
from shared.robust_models.spec import RobustifySpec
from shared.smoothing.types import DISTILLABLE_MODEL_TYPES


def check_robustify(settings: Settings, session: Session, tenant_id: uuid.UUID, spec: RobustifySpec) -> str:
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
    if spec.dataset.archive:
        ready_archive(session, tenant_id, spec.dataset)  # uploaded and checked by a worker
    return model
