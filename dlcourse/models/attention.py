"""Multi-head attention, self and cross, shared by the U-Net and the DiT.

Self-attention lets every position look at every other (Vaswani et al. 2017);
cross-attention takes queries from the image and keys and values from a second
sequence, the *context* (text tokens), which is how Stable Diffusion lets a
caption steer every region of the image (Rombach et al. 2022, sec. 3.3).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Multi-head scaled dot-product attention.

    Args:
        dim: width of the queries' sequence (and of the output).
        heads: number of heads; must divide ``dim``.
        context_dim: width of the context for cross-attention; None for self-attention.
        zero_init: start the output projection at zero, so ``x + attn(x)`` is
            the identity at initialisation.
    """

    def __init__(self, dim: int, heads: int = 4, context_dim: int | None = None, zero_init: bool = False):
        super().__init__()
        if dim % heads:
            raise ValueError(f"heads: expected a divisor of dim={dim}, got {heads}")
        self.heads = heads
        self.to_q = nn.Linear(dim, dim)
        self.to_kv = nn.Linear(context_dim or dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        if zero_init:
            nn.init.zeros_(self.proj.weight)
            nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, return_weights: bool = False):
        """Attend from ``x`` to ``context`` (to ``x`` itself when None).

        Args:
            x: (B, N, dim) queries' sequence.
            context: (B, L, context_dim) or None.
            mask: (B, L) bool, True where a context token may be attended to.
            return_weights: also return the attention weights. They are computed by the
                formula, ``softmax(q k^T / sqrt(d))``; without them PyTorch's fused
                ``scaled_dot_product_attention`` computes the same output faster.

        Returns:
            (B, N, dim); with ``return_weights``, also the weights (B, heads, N, L).
        """
        B, N, D = x.shape
        context = x if context is None else context
        L = context.shape[1]
        hd = D // self.heads
        q = self.to_q(x).view(B, N, self.heads, hd).transpose(1, 2)      # (B, N, D) -> (B, heads, N, hd)
        kv = self.to_kv(context).view(B, L, 2, self.heads, hd)          # (B, L, 2D) -> (B, L, 2, heads, hd)
        k, v = kv.permute(2, 0, 3, 1, 4)                                 # -> 2 x (B, heads, L, hd)
        if mask is not None:
            mask = mask[:, None, None, :]                                # (B, L) -> (B, 1, 1, L)
        if return_weights:
            scores = q @ k.transpose(-2, -1) / math.sqrt(hd)             # (B, heads, N, L)
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))        # padding gets weight 0
            weights = scores.softmax(dim=-1)
            out = weights @ v                                            # (B, heads, N, hd)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)    # (B, heads, N, hd)
        out = self.proj(out.transpose(1, 2).reshape(B, N, D))            # -> (B, N, heads * hd) -> (B, N, D)
        return (out, weights) if return_weights else out
