"""A tiny Diffusion Transformer (DiT, Peebles & Xie 2023).

The image is cut into p x p patches, each patch becomes a token, a stack of
transformer blocks mixes the tokens, and a linear layer turns each token back
into a patch. The timestep (+ label) conditions every block by *adaptive layer
norm*: a linear map of the conditioning vector gives a shift, a scale and a gate
for each sub-layer. "adaLN-Zero" starts those maps at zero, so every block starts
as the identity and the whole network outputs zero at initialisation.

    x_t (B, C, H, W) -> patchify -> + position -> [DiTBlock(c)] x depth
        -> final adaLN + linear -> unpatchify -> (B, C, H, W),  c = emb(t) + emb(label)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .attention import Attention
from .common import check_model_input, null_labels, parse_cond, register_model
from .embeddings import TimeEmbedding, sincos_2d


@dataclass
class DiTConfig:
    """Hyper-parameters of ``DiT``.

    Attributes:
        in_channels: C of the images (the output has the same).
        patch_size: p; H and W must be divisible by it.
        hidden_dim: token width D; a multiple of 4 and of ``num_heads``.
        depth: number of transformer blocks.
        num_heads: attention heads.
        mlp_ratio: the MLP's hidden width is ``mlp_ratio * D``.
        num_classes: number of class labels, or None; label ``num_classes`` is null.
    """

    in_channels: int = 3
    patch_size: int = 2
    hidden_dim: int = 96
    depth: int = 4
    num_heads: int = 4
    mlp_ratio: float = 4.0
    num_classes: int | None = None

    def __post_init__(self):
        if self.hidden_dim % 4 or self.hidden_dim % self.num_heads:
            raise ValueError(f"hidden_dim: expected a multiple of 4 and of num_heads={self.num_heads}, "
                             f"got {self.hidden_dim}")


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: ``x * (1 + scale) + shift``; x (B, N, D), shift and scale (B, 1, D)."""
    return x * (1 + scale) + shift


class DiTBlock(nn.Module):
    """Pre-norm transformer block with adaLN-Zero conditioning (DiT, fig. 3)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        nn.init.zeros_(self.ada[1].weight)             # adaLN-Zero: all gates start at 0
        nn.init.zeros_(self.ada[1].bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """x: (B, N, D) tokens, c: (B, D) conditioning -> (B, N, D)."""
        mod = self.ada(c)[:, None, :].chunk(6, dim=2)                      # (B, 6D) -> 6 x (B, 1, D)
        shift1, scale1, gate1, shift2, scale2, gate2 = mod
        x = x + gate1 * self.attn(modulate(self.norm1(x), shift1, scale1))
        x = x + gate2 * self.mlp(modulate(self.norm2(x), shift2, scale2))
        return x


class FinalLayer(nn.Module):
    """adaLN, then a linear map from each token to its patch's p * p * C values (zero at init)."""

    def __init__(self, dim: int, patch_values: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.linear = nn.Linear(dim, patch_values)
        for layer in (self.ada[1], self.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """x: (B, N, D), c: (B, D) -> (B, N, p * p * C)."""
        shift, scale = self.ada(c)[:, None, :].chunk(2, dim=2)             # (B, 2D) -> 2 x (B, 1, D)
        return self.linear(modulate(self.norm(x), shift, scale))


@register_model
class DiT(nn.Module):
    """Diffusion transformer ``model(x_t, t, cond=None) -> (B, C, H, W)``.

    ``cond`` is None or (B,) int64 labels (see ``dlcourse.models.common``).
    Any H, W divisible by ``patch_size`` works: the position embedding is the
    fixed 2-D sine-cosine one, computed for the input's grid of patches.
    """

    def __init__(self, config: DiTConfig | None = None):
        super().__init__()
        c = self.config = config if config is not None else DiTConfig()
        self.num_classes = c.num_classes
        D, p = c.hidden_dim, c.patch_size
        self.patchify = nn.Conv2d(c.in_channels, D, kernel_size=p, stride=p)  # one token per p x p patch
        self.time_embed = TimeEmbedding(D, D)
        self.label_embed = nn.Embedding(c.num_classes + 1, D) if c.num_classes else None
        self.blocks = nn.ModuleList(DiTBlock(D, c.num_heads, c.mlp_ratio) for _ in range(c.depth))
        self.final = FinalLayer(D, p * p * c.in_channels)

    def unpatchify(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        """(B, N, p * p * C) tokens -> (B, C, H, W) image, N = (H / p) (W / p)."""
        B = x.shape[0]
        p, C = self.config.patch_size, self.config.in_channels
        h, w = H // p, W // p
        x = x.reshape(B, h, w, p, p, C)                                    # token (i, j) holds its patch
        x = x.permute(0, 5, 1, 3, 2, 4)                                    # -> (B, C, h, p, w, p)
        return x.reshape(B, C, H, W)                                       # rows i*p + a, columns j*p + b

    def forward(self, x_t: torch.Tensor, t, cond=None) -> torch.Tensor:
        """Predict from ``x_t`` (B, C, H, W) at timesteps ``t`` (B,); returns (B, C, H, W)."""
        p = self.config.patch_size
        t = check_model_input(x_t, t, ndim=4, channels=self.config.in_channels, multiple=p)
        B, C, H, W = x_t.shape
        cnd = parse_cond(cond, B, num_classes=self.num_classes, accepts=("label",))
        c = self.time_embed(t)                                             # (B, D)
        if self.label_embed is not None:
            label = cnd.label if cnd.label is not None else null_labels(B, self.num_classes, x_t.device)
            c = c + self.label_embed(label)
        x = self.patchify(x_t).flatten(2).transpose(1, 2)                  # (B, D, h, w) -> (B, h*w, D)
        x = x + sincos_2d(H // p, W // p, x.shape[2], device=x.device).to(x.dtype)  # (h*w, D) broadcast
        for block in self.blocks:
            x = block(x, c)
        x = self.final(x, c)                                               # (B, h*w, p*p*C)
        return self.unpatchify(x, H, W)

    def get_config(self) -> dict:
        """``DiTConfig`` as a dict of plain types."""
        return asdict(self.config)

    @classmethod
    def from_config(cls, config: dict) -> "DiT":
        return cls(DiTConfig(**config))
