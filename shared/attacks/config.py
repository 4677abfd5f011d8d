"""One attack request: PGD or EOT-PGD, its threat model (norm, ε) and its optimiser settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from shared.smoothing.types import NOISE_SPACES, NoiseSpace, SmoothConfig

AttackMethod = Literal["pgd", "eot"]
AttackNorm = Literal["linf", "l2"]
METHODS: tuple[str, ...] = ("pgd", "eot")
NORMS: tuple[str, ...] = ("linf", "l2")
DEFENSE = SmoothConfig()  # EOT's σ and noise space default to the defense's


@dataclass(frozen=True)
class AttackConfig:
    """Projected gradient descent on the input, optionally through the defense's noise (EOT).

    Units: ``eps`` and ``step_size`` are in [0, 1] pixel units for images (16/255 is 16 grey
    levels) and in raw waveform amplitude for audio. ``sigma`` is the defense's σ in the units
    of ``noise_space``; EOT draws that noise with the defense's own placement
    (``shared.smoothing.noise.noisy_input``), each draw from its own seed.

    ``targeted``: make the model say ``targets`` (minimise their cross-entropy); otherwise push
    it away from ``targets`` (the clean answers; maximise their cross-entropy). With
    ``target_eos`` the target is a complete answer, so end-of-sequence is forced after it too.
    ``universal``: one perturbation for all prompts (loss over all of them).
    ``stop_loss``: stop an item at its first iterate whose target CE is below it (targeted) or
    above it (untargeted) — a just-successful, low-confidence example instead of the
    strongest one found in ``steps`` (None: run every step and keep the best iterate).
    """

    method: AttackMethod = "pgd"
    norm: AttackNorm = "linf"
    eps: float = 16 / 255
    step_size: float | None = None
    steps: int = 40
    random_start: bool = True
    seed: int = 0
    targeted: bool = True
    eot_samples: int = 8
    sigma: float = DEFENSE.sigma
    noise_space: NoiseSpace = DEFENSE.noise_space
    universal: bool = False
    target_eos: bool = True
    stop_loss: float | None = None

    def __post_init__(self) -> None:
        _check(self.method in METHODS, f"method must be one of {METHODS}, got {self.method!r}")
        _check(self.norm in NORMS, f"norm must be one of {NORMS}, got {self.norm!r}")
        _check(self.eps > 0, f"eps must be > 0, got {self.eps}")
        _check(self.norm == "l2" or self.eps <= 1, f"an L-inf eps must be <= 1 (pixel units), got {self.eps}")
        _check(self.steps >= 1, f"steps must be >= 1, got {self.steps}")
        _check(self.step_size is None or self.step_size > 0, f"step_size must be > 0, got {self.step_size}")
        _check(self.eot_samples >= 1, f"eot_samples must be >= 1, got {self.eot_samples}")
        _check(self.sigma >= 0, f"sigma must be >= 0, got {self.sigma}")
        _check(self.stop_loss is None or self.stop_loss > 0, f"stop_loss must be > 0, got {self.stop_loss}")
        _check(self.noise_space in NOISE_SPACES, f"noise_space must be one of {NOISE_SPACES}, got {self.noise_space!r}")

    @property
    def alpha(self) -> float:
        """The step size: ``step_size`` or 2.5·ε/steps (Madry et al.'s rule of thumb)."""
        return self.step_size if self.step_size is not None else 2.5 * self.eps / self.steps

    @property
    def draws(self) -> int:
        """Noise draws per item and step: ``eot_samples`` for EOT, 1 (no noise) for PGD."""
        return self.eot_samples if self.method == "eot" else 1


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)
