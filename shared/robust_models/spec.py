"""What a robustify run asks for: the source model, the training images, the noise and the budget.

One definition of the options: the API validates this model, the worker reads it back from
``robust_models.spec``, and ``smoothguard robustify``'s flags take their defaults from it.
No torch here: the API process imports this.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from shared.audits.spec import DatasetSpec, Strict
from shared.smoothing.types import ImageNoiseSpace

MAX_VALIDATION_ITEMS = 1000


class RobustifyOptions(Strict):
    """How to train: the vision tower + projector of a copy of the model learn to give, for an
    image under Gaussian noise of σ ~ σ_max·√U (in ``noise_space`` units), the original's features
    of the clean image; the language model stays frozen. Stops at ``steps`` or after ``minutes``,
    whichever comes first."""

    noise_space: ImageNoiseSpace = Field(
        "pixel", description="where the training noise goes: [0, 1] pixels or normalised pixel_values"
    )
    sigma_max: float | None = Field(
        None, gt=0, le=10, description="σ_max of σ_max·√U; default 0.55 (pixel) or 2.0 (normalized)"
    )
    steps: int | None = Field(None, ge=1, le=1_000_000, description="step cap (default: only the minutes cap)")
    minutes: float = Field(10.0, gt=0, description="wall-clock cap on training")
    lr: float = Field(
        5e-4, gt=0, le=1, description="AdamW learning rate (linear warm-up, cosine decay when steps is set)"
    )
    batch: int = Field(64, ge=1, le=512, description="noisy images per step")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="every random draw (images, σ, noise) follows it")

    def distil_config(self) -> Any:
        """The library's ``DistilConfig`` (imported here: torch loads only where training runs)."""
        from shared.robustify import DistilConfig, SigmaSchedule

        sigma = SigmaSchedule(self.sigma_max) if self.sigma_max is not None else None
        return DistilConfig(self.noise_space, sigma, self.steps, self.minutes, self.lr, self.batch, self.seed)


class RobustifySpec(RobustifyOptions):
    """``POST /v1/robust-models``: the options plus the source model and the training images.
    ``validation_items`` labelled questions (a held-out synthetic set for ``shapes``; for an
    archive, its labelled closed questions, whose images are kept out of training) are answered
    under one noise draw at each of ``validation_sigmas`` before and after training."""

    model: str | None = Field(None, max_length=300, description="a model the deployment serves; default its default")
    dataset: DatasetSpec = Field(default_factory=lambda: DatasetSpec.model_validate({"count": 500}))
    validation_items: int = Field(64, ge=0, le=MAX_VALIDATION_ITEMS)
    validation_sigmas: list[float] = Field(
        default_factory=lambda: [0.25, 0.5],
        min_length=1,
        max_length=4,
        description="σ of the validation, noise_space units",
    )

    @field_validator("validation_sigmas")
    @classmethod
    def _sigmas_in_range(cls, v: list[float]) -> list[float]:
        if any(not 0 <= s <= 10 for s in v):
            raise ValueError("validation_sigmas must be in [0, 10]")
        return v

    @model_validator(mode="after")
    def _labelled_archive_or_shapes(self) -> RobustifySpec:
        if self.dataset.format == "mm-safetybench" and self.validation_items:
            raise ValueError("mm-safetybench has no closed labels to validate on: set validation_items to 0")
        return self
