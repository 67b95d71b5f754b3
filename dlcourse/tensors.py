"""Small torch helpers every floor of the package shares: broadcasting, seeded noise, eval mode.

    expand_like(values, x)           (B,) or () -> broadcastable against x (B, ...)
    noise_like(x, generator)         N(0, I) shaped like x, on x's device
    seeded_noise(shape, seed, ...)   N(0, I) drawn on the CPU from a seed: the same numbers on every device
    eval_mode(model)                 a context manager: eval() inside, the old mode restored after
    to_device(cond, device)          a tensor, a dict of tensors (or None) moved to device
"""

from __future__ import annotations

import contextlib

import torch


def expand_like(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape per-sample values (B,) or () to broadcast against ``x`` (B, ...), on ``x``'s device and dtype."""
    values = values.to(device=x.device, dtype=x.dtype)
    if values.ndim == 0:
        return values
    return values.reshape(values.shape + (1,) * (x.ndim - values.ndim))


def noise_like(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard normal noise shaped like ``x``, drawn on the generator's device, returned on ``x``'s."""
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)


def seeded_noise(shape, seed: int, *, device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal noise of ``shape`` from ``torch.Generator().manual_seed(seed)``, moved to ``device``.

    Drawn on the CPU, so a seed gives the same numbers whatever the device (a CUDA generator
    would draw others).
    """
    x = torch.randn(tuple(shape), generator=torch.Generator().manual_seed(seed), dtype=dtype)
    return x if device is None else x.to(device)


def to_device(value, device):
    """``value`` moved to ``device``: a tensor, a dict whose tensor values move (a model's ``cond``), or
    anything else (None, a list of prompts) unchanged."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in value.items()}
    return value


@contextlib.contextmanager
def eval_mode(model):
    """Put ``model`` in eval mode (no dropout) for the duration, then restore its mode."""
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    try:
        yield model
    finally:
        if was_training:
            model.train()
