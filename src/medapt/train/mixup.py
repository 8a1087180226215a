"""MixUp for training batches (Zhang et al., *mixup*; as BiT's ``train.py`` applies it).

One λ ~ Beta(α, α) per batch and a random pairing of the batch with itself:
``x̃ = λ·x + (1 − λ)·x[perm]``, loss ``λ·L(f(x̃), y) + (1 − λ)·L(f(x̃), y[perm])`` — the same
loss function the phase uses otherwise (class weights, NaN-masked multi-label labels included),
so no soft-target loss is needed. λ and the pairing come from the epoch's own generator, so an
epoch's mixing depends on (seed, phase, epoch) only and resume stays exact.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

__all__ = ["MixUp"]

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class MixUp:
    """``MixUp(alpha)(x, generator, loss_fn) -> (mixed x, batch loss)``; ``alpha`` > 0."""

    def __init__(self, alpha: float):
        if not alpha > 0:
            raise ValueError(f"MixUp needs alpha > 0, got {alpha}")
        self.alpha = float(alpha)

    def draw(self, n: int, generator: torch.Generator) -> tuple[float, torch.Tensor]:
        """λ and the pairing of a batch of ``n``, drawn from ``generator``.

        ``generator`` advances by the same amount whatever ``n`` is, so under DDP every rank draws
        the same λ for a step (each pairs the images of its own share of the batch)."""
        seeds = torch.randint(0, 2**62, (2,), generator=generator).tolist()
        lam = float(np.random.default_rng(seeds[0]).beta(self.alpha, self.alpha))
        return lam, torch.randperm(n, generator=torch.Generator().manual_seed(seeds[1]))

    def __call__(self, x: torch.Tensor, generator: torch.Generator, loss_fn: Loss) -> tuple[torch.Tensor, Loss]:
        lam, perm = self.draw(len(x), generator)
        perm = perm.to(x.device)
        mixed = lam * x + (1.0 - lam) * x[perm]

        def loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return lam * loss_fn(logits, y) + (1.0 - lam) * loss_fn(logits, y[perm.to(y.device)])

        return mixed, loss
