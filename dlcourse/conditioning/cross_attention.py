"""Cross-attention: image tokens ask, text tokens answer (Rombach et al. 2022, sec. 3.3).

Every image position i forms a query q_i, every text token j a key k_j and a value v_j;
the position reads a mix of the values weighted by how well its query matches each key:

    A = softmax(Q K^T / sqrt(d))  over the text tokens,      out = A V

(Vaswani et al. 2017, eq. 1). Padding tokens are masked out of the softmax, so a caption's
length does not change what its words say. A row of ``A`` is where one image position looks
in the caption; a column, reshaped to H x W, is where one word lands in the image: the
attention maps of ``attention_maps``.

    block = SpatialCrossAttention(channels=64, context_dim=64, heads=4)
    h = block(h, text_tokens, mask)                 # (B, 64, H, W), the identity at initialisation

A row of the mask with no real token (no text at all) attends to nothing: its weights are
all zero and it adds nothing, so the block passes its input through unchanged rather than
producing NaN (a softmax over nothing is 0/0). The tokenizer never makes such a row: the
empty prompt has its own token, ``<empty>``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..validation import check_int, check_tensor


def check_mask(name: str, mask, batch: int, length: int) -> torch.Tensor:
    """Check a key padding mask: a (batch, length) bool tensor, True at real tokens."""
    check_tensor(name, mask, shape=(batch, length))
    if mask.dtype != torch.bool:
        raise TypeError(f"{name}: expected dtype torch.bool (True at a real token, False at padding), "
                        f"got {mask.dtype}")
    return mask


def cross_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled dot-product attention with a key padding mask (Vaswani et al. 2017, eq. 1).

    Args:
        q: (B, heads, Nq, d) queries (or (B, Nq, d) for one head).
        k: (B, heads, L, d) keys, one per text token.
        v: (B, heads, L, dv) values.
        mask: (B, L) bool, True at real tokens; None when every token is real.

    Returns:
        out: (B, heads, Nq, dv).
        weights: (B, heads, Nq, L), each row summing to 1 over the real tokens (to 0 when a
            row of ``mask`` has no True entry).
    """
    check_tensor("q", q, ndim=(3, 4), floating=True)
    check_tensor("k", k, shape=(*q.shape[:-2], None, q.shape[-1]), floating=True)
    check_tensor("v", v, shape=(*k.shape[:-1], None), floating=True)
    B, L = q.shape[0], k.shape[-2]
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])           # (B, heads, Nq, L)
    if mask is None:
        weights = scores.softmax(dim=-1)                                # over the text tokens
        return weights @ v, weights
    keep = check_mask("mask", mask, B, L).view(B, *(1,) * (q.ndim - 2), L)  # (B, L) -> (B, 1, 1, L)
    scores = scores.masked_fill(~keep, torch.finfo(scores.dtype).min)   # padding: weight exp(-huge) = 0
    weights = scores.softmax(dim=-1) * keep                             # a row with no real token: all 0
    return weights @ v, weights


class CrossAttention(nn.Module):
    """Multi-head cross-attention from a sequence of queries to a context (text tokens).

    Args:
        query_dim: width of the queries' sequence (image channels) and of the output.
        context_dim: width of the context tokens (the text encoder's width).
        heads: number of heads; must divide ``query_dim`` (each head has ``query_dim // heads``).
        zero_init: start the output projection at zero, so ``x + attn(x, c)`` is the identity.

    ``to_k`` and ``to_v`` are separate projections, so decoupled cross-attention (IP-Adapter)
    can add a second pair for image tokens beside them.
    """

    def __init__(self, query_dim: int, context_dim: int, heads: int = 4, zero_init: bool = False):
        super().__init__()
        check_int("query_dim", query_dim, minimum=1)
        check_int("context_dim", context_dim, minimum=1)
        check_int("heads", heads, minimum=1)
        if query_dim % heads:
            raise ValueError(f"heads: expected a divisor of query_dim={query_dim}, got {heads}")
        self.heads, self.context_dim = heads, context_dim
        self.to_q = nn.Linear(query_dim, query_dim, bias=False)
        self.to_k = nn.Linear(context_dim, query_dim, bias=False)
        self.to_v = nn.Linear(context_dim, query_dim, bias=False)
        self.to_out = nn.Linear(query_dim, query_dim)
        if zero_init:
            nn.init.zeros_(self.to_out.weight)
            nn.init.zeros_(self.to_out.bias)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        return x.view(B, N, self.heads, D // self.heads).transpose(1, 2)    # (B, N, D) -> (B, heads, N, D/heads)

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None = None,
                return_weights: bool = False):
        """Attend from ``x`` to ``context``.

        Args:
            x: (B, Nq, query_dim) queries' sequence (image tokens).
            context: (B, L, context_dim) text tokens.
            mask: (B, L) bool, True at real tokens, or None.
            return_weights: also return the attention weights.

        Returns:
            (B, Nq, query_dim); with ``return_weights``, also the weights (B, heads, Nq, L).
        """
        query_dim = self.to_q.in_features
        check_tensor("x", x, shape=(None, None, query_dim), floating=True)
        check_tensor("context", context, shape=(x.shape[0], None, self.context_dim), floating=True)
        B, N, D = x.shape
        q = self.split_heads(self.to_q(x))                                  # (B, heads, Nq, D/heads)
        k = self.split_heads(self.to_k(context))                            # (B, heads, L, D/heads)
        v = self.split_heads(self.to_v(context))
        out, weights = cross_attention(q, k, v, mask)                       # (B, heads, Nq, D/heads)
        out = self.to_out(out.transpose(1, 2).reshape(B, N, D))              # -> (B, Nq, heads * D/heads)
        return (out, weights) if return_weights else out


class SpatialCrossAttention(nn.Module):
    """Cross-attention on a feature map: ``x + CrossAttention(norm(x) as H*W tokens, text)``.

    The output projection starts at zero, so a fresh block is the identity and can be put into
    a trained network without changing what it does (the ControlNet idea, applied to attention).

    Args:
        channels: C of the feature map.
        context_dim: width of the text tokens.
        heads: attention heads; must divide ``channels``.
        groups: groups of the GroupNorm before the attention; must divide ``channels``.
    """

    def __init__(self, channels: int, context_dim: int, heads: int = 4, groups: int = 8):
        super().__init__()
        check_int("groups", groups, minimum=1)
        if channels % groups:
            raise ValueError(f"groups: expected a divisor of channels={channels}, got {groups}")
        self.norm = nn.GroupNorm(groups, channels)
        self.attn = CrossAttention(channels, context_dim, heads, zero_init=True)

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None = None,
                return_weights: bool = False):
        """x: (B, C, H, W), context: (B, L, context_dim), mask: (B, L) bool -> (B, C, H, W).

        With ``return_weights``, also the weights (B, heads, H*W, L) (see ``attention_maps``).
        """
        check_tensor("x", x, ndim=4, floating=True)
        B, C, H, W = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)                    # (B, C, H, W) -> (B, H*W, C)
        out, weights = self.attn(tokens, context, mask, return_weights=True)
        out = x + out.transpose(1, 2).reshape(B, C, H, W)                   # (B, H*W, C) -> (B, C, H, W)
        return (out, weights) if return_weights else out


def attention_maps(weights: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Where each text token looks in the image: the weights averaged over heads, as images.

    Args:
        weights: (B, heads, H*W, L) from ``SpatialCrossAttention(..., return_weights=True)``.
        height, width: H and W of the feature map.

    Returns:
        (B, L, H, W): map ``[b, j]`` is how much each position attends to token j.
    """
    check_tensor("weights", weights, ndim=4)
    B, heads, N, L = weights.shape
    if N != height * width:
        raise ValueError(f"height, width: expected height * width = {N} (the weights' dim 2), "
                         f"got {height} x {width} = {height * width}")
    return weights.mean(dim=1).transpose(1, 2).reshape(B, L, height, width)    # (B, H*W, L) -> (B, L, H, W)
