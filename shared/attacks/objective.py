"""The attack objective over a batch of rows, and the PGD loop with best-iterate selection.

A row is one (input, prompt, noise draw) triple: ``item[r]`` says which perturbed input row r
reads. One forward/backward covers all rows, chunked only by the generator's
``max_batch_size``; gradients of the chunks accumulate on the inputs. An item's loss is the
weighted mean over its rows (its draws; for a universal perturbation, also its prompts).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from shared.attacks.config import AttackConfig
from shared.attacks.losses import TargetBatch, row_losses
from shared.attacks.threat import descent_step, project, random_start
from shared.smoothing.noise import candidate_seed, noisy_input
from shared.smoothing.types import CandidateSpec

# (inputs of a chunk's rows [c, ...], add the defense's noise?) -> the model's media tensors
MediaFn = Callable[[torch.Tensor, bool], dict[str, torch.Tensor]]
# (inputs of n rows stacked along dim 0, n) -> the same with the defense's noise on each row
NoiseFn = Callable[[torch.Tensor, int], torch.Tensor]
EOT_STREAM = "eot"  # draws' seeds never coincide with a defense job's candidate seeds


def eot_candidate(config: AttackConfig, draw: int) -> CandidateSpec:
    """EOT draw ``draw`` as a candidate of the smoothed model: the attack's σ and noise space,
    seeded from the attack's seed on its own stream."""
    seed = candidate_seed(config.seed, draw, EOT_STREAM)
    return CandidateSpec(draw, 0, seed, config.sigma, config.noise_space, False)


def defense_noise(config: AttackConfig) -> NoiseFn:
    """The defense's noise for the EOT draws: ``add(x, n)`` splits ``x`` into ``n`` equal blocks
    along dim 0, one candidate's input each (as ``noisy_input`` takes it), and places the next
    draw on each — draws 0, 1, 2, … in call order, so a run is reproducible from its seed."""
    draws = itertools.count()

    def add(x: torch.Tensor, n: int) -> torch.Tensor:
        return torch.cat([noisy_input(block, eot_candidate(config, next(draws))) for block in x.tensor_split(n)])

    return add


@contextlib.contextmanager
def frozen(model: Any) -> Iterator[None]:
    """Eval mode, gradients on, parameters not requiring grad — restored afterwards, so the
    shared generator's later ``generate`` calls see the model as it was."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        with torch.enable_grad():
            yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


@dataclass
class Objective:
    """Cross-entropy of the targets per item, signed so that the attack minimises it."""

    model: Any
    batch: TargetBatch  # R rows, on the model's device
    item: torch.Tensor  # [R] which input row each batch row reads
    weight: torch.Tensor  # [R] the row's share of its item's loss
    media: MediaFn
    chunk: int
    sign: float = 1.0  # +1 targeted (minimise CE), −1 untargeted (maximise CE)
    noisy: bool = False

    def __call__(self, x: torch.Tensor, need_grad: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Signed loss per input row ``[N]`` and its gradient w.r.t. ``x`` (None without ``need_grad``)."""
        x = x.detach().requires_grad_(need_grad)
        total = torch.zeros(x.shape[0], device=x.device)
        for start in range(0, len(self.item), self.chunk):
            rows = torch.arange(start, min(start + self.chunk, len(self.item)), device=x.device)
            with torch.set_grad_enabled(need_grad):
                media = self.media(x[self.item[rows]], self.noisy)
                loss = self.sign * row_losses(self.model, self.batch.rows(rows), media) * self.weight[rows]
                if need_grad:
                    loss.sum().backward()
            total.index_add_(0, self.item[rows], loss.detach())
        return total, x.grad


def objectives(
    model: Any, batch: TargetBatch, media: MediaFn, config: AttackConfig, chunk: int
) -> tuple[Objective, Objective]:
    """The attack's objective — every row ``config.draws`` times, signed, with the defense's
    noise for EOT — and the clean one (plain CE per input). Row r reads input r, or input 0
    for all rows of a universal attack, whose loss is then the mean over its prompts."""
    rows, dev = batch.labels.shape[0], batch.labels.device
    item = torch.zeros(rows, dtype=torch.long, device=dev) if config.universal else torch.arange(rows, device=dev)
    share = 1.0 / torch.bincount(item).float()[item]
    draws = config.draws
    attack = Objective(
        model,
        batch.repeat(draws),
        item.repeat_interleave(draws),
        (share / draws).repeat_interleave(draws),
        media,
        chunk,
        sign=1.0 if config.targeted else -1.0,
        noisy=config.method == "eot",
    )
    return attack, Objective(model, batch, item, share, media, chunk)


def optimize(x0: torch.Tensor, objective: Objective, config: AttackConfig, bounds: tuple[float, float]) -> torch.Tensor:
    """PGD from a (seeded) random start; returns the best iterate per row (lowest signed loss,
    judged by the same forward that computes each step's gradient, plus one at the end). With
    ``config.stop_loss`` a row stops moving at its first iterate past that loss."""
    gen = torch.Generator(device=x0.device).manual_seed(config.seed)
    x = random_start(x0, config, gen, bounds)
    best, best_loss = x.clone(), torch.full((x0.shape[0],), float("inf"), device=x0.device)
    done = torch.zeros(x0.shape[0], dtype=torch.bool, device=x0.device)
    for step in range(config.steps + 1):
        last = step == config.steps
        loss, grad = objective(x, need_grad=not last)
        better = (loss < best_loss) & ~done
        best[better], best_loss[better] = x[better], loss[better]
        if config.stop_loss is not None:
            done |= loss < objective.sign * config.stop_loss
        if last or grad is None or bool(done.all()):
            break
        moved = project(descent_step(x, grad, config), x0, config, bounds)
        x = torch.where(done.reshape(-1, *([1] * (x.dim() - 1))), x, moved)
    return best
