"""The threat model as tensor operations: random start, a PGD step, projection onto the ε-ball
and the valid range, and quantisation to 8-bit pixels that stays inside the ball.

Tensors are ``[N, ...]``: one perturbed input per row; norms are per row over all other dims.
"""

from __future__ import annotations

import torch

from shared.attacks.config import AttackConfig


def _per_row(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.reshape(-1, *([1] * (like.dim() - 1)))


def l2_norms(d: torch.Tensor) -> torch.Tensor:
    return d.flatten(1).norm(dim=1)


def random_start(
    x0: torch.Tensor, config: AttackConfig, gen: torch.Generator, bounds: tuple[float, float]
) -> torch.Tensor:
    """``x0`` plus a uniform draw from the ε-ball (L∞: per element; L2: uniform radius, random
    direction), clipped to ``bounds``; ``x0`` itself without ``random_start``."""
    if not config.random_start:
        return x0.clone()
    if config.norm == "linf":
        u = torch.rand(x0.shape, generator=gen, device=x0.device, dtype=x0.dtype)
        delta = (2 * u - 1) * config.eps
    else:
        g = torch.randn(x0.shape, generator=gen, device=x0.device, dtype=x0.dtype)
        r = torch.rand(x0.shape[0], generator=gen, device=x0.device, dtype=x0.dtype) * config.eps
        delta = g * _per_row(r / l2_norms(g).clamp(min=1e-12), g)
    return (x0 + delta).clamp(*bounds)


def descent_step(x: torch.Tensor, grad: torch.Tensor, config: AttackConfig) -> torch.Tensor:
    """One step downhill: L∞ the sign of the gradient, L2 the gradient scaled to length α."""
    if config.norm == "linf":
        return x - config.alpha * grad.sign()
    return x - config.alpha * grad / _per_row(l2_norms(grad).clamp(min=1e-12), grad)


def project(x: torch.Tensor, x0: torch.Tensor, config: AttackConfig, bounds: tuple[float, float]) -> torch.Tensor:
    """The nearest point to ``x`` in the ε-ball around ``x0`` (L∞ exactly; L2 by radial scaling),
    then clipped to ``bounds`` (which keeps it in the ball, as ``x0`` is inside ``bounds``)."""
    d = x - x0
    if config.norm == "linf":
        d = d.clamp(-config.eps, config.eps)
    else:
        d = d * _per_row((config.eps / l2_norms(d).clamp(min=1e-12)).clamp(max=1.0), d)
    return (x0 + d).clamp(*bounds)


def quantize(x: torch.Tensor, x0: torch.Tensor, config: AttackConfig) -> torch.Tensor:
    """``x`` on the 1/255 grid of 8-bit images, still inside the ε-ball around ``x0`` (itself on
    the grid): rounded, then the L∞ bound rounded down; a row whose rounded L2 norm exceeds ε
    is truncated towards ``x0`` instead (never longer than before)."""
    base = (x0 * 255).round()
    d = (x - x0) * 255
    q = d.round()
    if config.norm == "linf":
        bound = float(torch.floor(torch.tensor(config.eps * 255 + 1e-6)))
        q = q.clamp(-bound, bound)
    else:
        too_long = l2_norms(q) > config.eps * 255
        q = torch.where(_per_row(too_long, q), d.trunc(), q)
    return (base + q).clamp(0, 255) / 255


def perturbation_norms(x: torch.Tensor, x0: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per row: L∞ and L2 norms of ``x − x0``."""
    d = (x - x0).flatten(1)
    return d.abs().amax(dim=1).tolist(), d.norm(dim=1).tolist()
