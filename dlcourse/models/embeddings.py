"""Sinusoidal embeddings: how a network is told the timestep (and, in a DiT, the position).

A network cannot use the raw number t well; it is given a vector of sines and
cosines of t at geometrically spaced frequencies (Vaswani et al. 2017, sec. 3.5),
as DDPM does for its timestep (Ho et al. 2020, appendix B).

Frequency convention (the one of guided-diffusion and most later code): for
``half = dim // 2`` and ``i = 0 .. half-1``

    freq_i = max_period ** (-i / half)        # from 1 down to (almost) 1 / max_period
    emb(t) = [sin(t freq_0), ..., sin(t freq_{half-1}), cos(t freq_0), ..., cos(t freq_{half-1})]

i.e. Vaswani's ``10000^(-2i/d)``, with the sines in the first half and the cosines
in the second rather than interleaved (a fixed permutation, which the next linear
layer absorbs). An odd ``dim`` gets one zero column at the end. With the default
``max_period = 10000`` the periods span 2 pi to 2 pi * 10^4, which suits integer t in
0..999; for a continuous time in [0, 1] pass ``1000 * t`` (as SD3 does).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..validation import check_positive, check_tensor


def timestep_embedding(t, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of timesteps.

    Args:
        t: (B,) int or float timesteps (a Python number or 0-d tensor gives B = 1).
        dim: embedding width.
        max_period: the longest period is ``2 pi max_period``.

    Returns:
        (B, dim) float32 on ``t``'s device: sines in the first ``dim // 2``
        columns, cosines in the next ``dim // 2``, a zero column if ``dim`` is odd.
    """
    check_positive("dim", dim, integer=True)
    check_positive("max_period", max_period)
    t = torch.as_tensor(t)
    check_tensor("t", t, ndim=(0, 1))
    t = t.reshape(-1).float()                                         # () or (B,) -> (B,)
    half = dim // 2
    i = torch.arange(half, dtype=torch.float32, device=t.device)
    freqs = torch.exp(-math.log(max_period) * i / half)               # (half,)
    args = t[:, None] * freqs[None, :]                                # (B, 1) * (1, half) -> (B, half)
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)        # (B, 2 * half)
    if dim % 2:
        emb = torch.cat([emb, emb.new_zeros(emb.shape[0], 1)], dim=1)  # (B, dim)
    return emb


def sincos_2d(height: int, width: int, dim: int, max_period: float = 10000.0,
              device=None) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embedding of a grid of patches (as in ViT-MAE and DiT).

    Half of the channels embed the row, half the column, each with
    ``timestep_embedding``.

    Returns:
        (height * width, dim), row-major (the order of ``x.flatten(2)``).
    """
    if dim % 4:
        raise ValueError(f"dim: expected a multiple of 4 for a 2-D sine-cosine embedding, got {dim}")
    rows = torch.arange(height, device=device).repeat_interleave(width)  # (H*W,) 0,0,..,1,1,..
    cols = torch.arange(width, device=device).repeat(height)             # (H*W,) 0,1,..,0,1,..
    return torch.cat([timestep_embedding(rows, dim // 2, max_period),
                      timestep_embedding(cols, dim // 2, max_period)], dim=1)


class TimeEmbedding(nn.Module):
    """t -> sinusoidal features -> MLP: the vector the blocks are conditioned on.

    Args:
        freq_dim: width of the sinusoidal features.
        dim: output width.
    """

    def __init__(self, freq_dim: int, dim: int):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """t: (B,) -> (B, dim)."""
        return self.mlp(timestep_embedding(t, self.freq_dim))
