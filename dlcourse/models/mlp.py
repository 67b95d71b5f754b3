"""A small MLP denoiser for 2-D toy data: the first network of the course.

It reads a point ``x_t`` (B, D) and a timestep ``t`` and predicts (by default)
the noise that was added. The timestep enters as a sinusoidal embedding added
to every residual block, the pattern every larger model repeats.
"""

from __future__ import annotations

import torch
from torch import nn

from .common import check_model_input, null_labels, parse_cond, register_model
from .embeddings import TimeEmbedding


@register_model
class MLPDenoiser(nn.Module):
    """Residual MLP ``(x_t, t, cond) -> (B, data_dim)`` for points in R^data_dim.

    Args:
        data_dim: D, the dimension of the data (2 for the toys).
        hidden: width of the hidden layers.
        layers: number of residual blocks ``h = h + Linear(SiLU(h + emb))``.
        time_dim: width of the sinusoidal timestep features.
        num_classes: number of class labels, or None for an unconditional model;
            label ``num_classes`` is the null label (classifier-free guidance).
    """

    def __init__(self, data_dim: int = 2, hidden: int = 128, layers: int = 3, time_dim: int = 32,
                 num_classes: int | None = None):
        super().__init__()
        self._config = dict(data_dim=data_dim, hidden=hidden, layers=layers, time_dim=time_dim,
                            num_classes=num_classes)
        self.data_dim = data_dim
        self.num_classes = num_classes
        self.time_embed = TimeEmbedding(time_dim, hidden)
        self.label_embed = nn.Embedding(num_classes + 1, hidden) if num_classes else None
        self.inp = nn.Linear(data_dim, hidden)
        self.blocks = nn.ModuleList(nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden)) for _ in range(layers))
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(hidden, data_dim))

    def forward(self, x_t: torch.Tensor, t, cond=None) -> torch.Tensor:
        """Predict from ``x_t`` (B, data_dim) at timesteps ``t`` (B,); returns (B, data_dim).

        ``cond`` is None or (B,) int64 labels (see ``dlcourse.models.common``).
        """
        t = check_model_input(x_t, t, ndim=2, channels=self.data_dim)
        B, D = x_t.shape
        c = parse_cond(cond, B, num_classes=self.num_classes, accepts=("label",))
        emb = self.time_embed(t)                                          # (B, hidden)
        if self.label_embed is not None:
            label = c.label if c.label is not None else null_labels(B, self.num_classes, x_t.device)
            emb = emb + self.label_embed(label)
        h = self.inp(x_t)                                                 # (B, hidden)
        for block in self.blocks:
            h = h + block(h + emb)
        return self.out(h)                                                # (B, D)

    def get_config(self) -> dict:
        """The constructor's keyword arguments, plain types only."""
        return dict(self._config)

    @classmethod
    def from_config(cls, config: dict) -> "MLPDenoiser":
        return cls(**config)
