"""Where a model's image path lives: the modules distillation trains (vision tower + multimodal
projector) and the projected image features the language model reads.

Supported layouts are the LLaVA family, whose ``get_image_features(pixel_values, …)`` runs the
vision tower and the projector and nothing else. Any other ``model_type`` is refused by name
(``UnsupportedLayout``) rather than trained on a guess.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from shared.smoothing.types import DISTILLABLE_MODEL_TYPES

# model_type → the base model's attributes that make up the image path (tower, then projector)
SUPPORTED_LAYOUTS: dict[str, tuple[str, ...]] = dict.fromkeys(
    DISTILLABLE_MODEL_TYPES, ("vision_tower", "multi_modal_projector")
)


class UnsupportedLayout(ValueError):
    """The model's image path is not one robustify knows how to distil."""


@dataclass(frozen=True)
class VisionPath:
    """The image path of one supported model: ``module_names`` on its base model (``model.model``
    for a ``…ForConditionalGeneration``, else the model itself)."""

    model_type: str
    module_names: tuple[str, ...]

    @classmethod
    def of(cls, model: nn.Module) -> VisionPath:
        """The path of ``model``; raises ``UnsupportedLayout`` naming its type otherwise."""
        config = getattr(model, "config", None)
        model_type = getattr(config, "model_type", None)
        kind = f"{type(model).__name__} (model_type {model_type!r})"
        if model_type not in SUPPORTED_LAYOUTS:
            raise UnsupportedLayout(
                f"robustify cannot distil {kind}: supported model types are {sorted(SUPPORTED_LAYOUTS)}"
            )
        names = SUPPORTED_LAYOUTS[model_type]
        base = _base(model)
        missing = [n for n in names if not isinstance(getattr(base, n, None), nn.Module)]
        if missing or not callable(getattr(model, "get_image_features", None)):
            raise UnsupportedLayout(f"robustify cannot distil {kind}: no get_image_features or no {missing}")
        return cls(str(model_type), names)

    def modules(self, model: nn.Module) -> list[nn.Module]:
        """The vision tower and the projector of ``model`` (this path's layout)."""
        base = _base(model)
        return [getattr(base, name) for name in self.module_names]

    def parameters(self, model: nn.Module) -> list[nn.Parameter]:
        """The parameters distillation trains: the tower's and the projector's, nothing else."""
        return [p for module in self.modules(model) for p in module.parameters()]

    def features(self, model: nn.Module, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The projected image features ``[tokens, D]`` (every image's tokens, in batch order;
        ``D`` the language model's hidden size) for the image processor's ``inputs``."""
        out = model.get_image_features(**inputs)  # type: ignore[operator]
        pooled = getattr(out, "pooler_output", out)
        if isinstance(pooled, list | tuple):
            return torch.cat([f.reshape(-1, f.shape[-1]) for f in pooled])
        return pooled.reshape(-1, pooled.shape[-1])


def _base(model: nn.Module) -> nn.Module:
    inner = getattr(model, "model", None)
    return inner if isinstance(inner, nn.Module) else model
