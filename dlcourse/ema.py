"""Exponential moving average (EMA) of a model's weights.

Samples from diffusion models are usually drawn with an average of the weights
over the last few thousand steps rather than the last weights, which jitter with
every mini-batch (Ho et al. 2020 use decay 0.9999; Song & Ermon 2020, sec. 3.4).
After each optimiser step

    ema = d * ema + (1 - d) * param,    d = min(decay, (1 + n) / (10 + n))

where n counts the updates so far. The warm-up ``(1 + n) / (10 + n)`` (as in
TensorFlow's ExponentialMovingAverage) keeps a short run from averaging in the
random initial weights: with decay 0.999 the initial weights would otherwise
still weigh 0.999^1000 = 37% after 1000 steps.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """A frozen copy of ``model`` whose weights follow the model's as a moving average.

    Args:
        model: the model being trained.
        decay: the long-run decay ``d`` in [0, 1).
        warmup: use ``min(decay, (1 + n) / (10 + n))`` rather than ``decay``.

    Example:
        >>> ema = EMA(model, decay=0.999)
        >>> ...; optimiser.step(); ema.update(model)
        >>> ema.model(x_t, t)        # sample with the averaged weights
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay: expected a value in [0, 1), got {decay}")
        self.decay = decay
        self.warmup = warmup
        self.num_updates = 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    def current_decay(self) -> float:
        """The ``d`` the next update will use."""
        if not self.warmup:
            return self.decay
        n = self.num_updates
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """``ema = d * ema + (1 - d) * param`` for every parameter; buffers are copied."""
        d = self.current_decay()
        ema_params = list(self.model.parameters())
        params = [p.detach() for p in model.parameters()]
        # ema + (1 - d) (p - ema) for every parameter at once; the same as
        # `for e, p in zip(ema_params, params): e.lerp_(p, 1 - d)`, in one call.
        torch._foreach_lerp_(ema_params, params, 1.0 - d)
        for ema_b, b in zip(self.model.buffers(), model.buffers()):
            ema_b.copy_(b)
        self.num_updates += 1
