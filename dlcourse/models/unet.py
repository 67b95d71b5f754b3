"""A small U-Net denoiser (Ronneberger et al. 2015, as adapted by Ho et al. 2020).

The encoder halves the resolution level by level, the decoder doubles it back,
and skip connections carry each encoder level's features across to the decoder,
so fine detail need not squeeze through the bottleneck. Every residual block is
told the timestep (and the class label) through a scale and shift of its
normalised features (Dhariwal & Nichol 2021, "AdaGN"). At the lowest resolution,
where it is cheapest, self-attention lets distant regions agree, and optional
cross-attention reads context tokens such as a caption (Rombach et al. 2022), there
and, with ``cross_attention_levels``, at the next resolutions up too.

    x_t (B, C, H, W) -> conv_in -> [ResBlock x n (-> skip), Downsample] per level
        -> ResBlock, Attention, ResBlock
        -> [ResBlock(cat(h, skip)) x n, Upsample] per level, reversed -> conv_out

``cross_attention_maps`` runs the network and returns where each context token was
read, per cross-attention block: the per-word attention maps of notebook 07.

A ControlNet (Zhang et al. 2023) adds its own features to the skips and to the
middle block: pass them as ``cond["down_residuals"]`` (one per skip, in encoder
order, shapes from ``residual_shapes``) and ``cond["mid_residual"]``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..validation import check_int
from .attention import Attention
from .common import check_channel_mults, check_model_input, null_labels, parse_cond, register_model
from .embeddings import TimeEmbedding


@dataclass
class UNetConfig:
    """Hyper-parameters of ``UNet``; the defaults give 0.81M parameters.

    Small enough to train on a laptop CPU in minutes at 16x16; its training speed on
    CPUs and a GPU, in fp32 and bf16, at 16 and 32 px, is measured by
    ``bench/train_speed.py`` and listed in ``bench/README.md``.

    Attributes:
        in_channels: C of the images.
        out_channels: channels of the output; None means ``in_channels``.
        base_channels: width of the first level.
        channel_mults: width of each level as a multiple of ``base_channels``;
            one level per entry, and H, W are halved between levels.
        num_res_blocks: residual blocks per level (and skips per level).
        attention: self-attention at the lowest resolution.
        num_heads: attention heads.
        groups: groups of every GroupNorm; must divide every level's width.
        num_classes: number of class labels, or None; label ``num_classes`` is null.
        context_dim: width of context tokens for cross-attention at the lowest
            resolution, or None.
        cross_attention_levels: with ``context_dim``, how many resolutions, from the
            lowest up, read the context: 1 (the lowest and the middle block only), up
            to ``len(channel_mults)``. Above the lowest the blocks are cross-attention
            alone, without self-attention (which costs (H W)^2 there).
        dropout: dropout in the residual blocks.
    """

    in_channels: int = 3
    out_channels: int | None = None
    base_channels: int = 32
    channel_mults: tuple = (1, 2, 2)
    num_res_blocks: int = 1
    attention: bool = True
    num_heads: int = 4
    groups: int = 8
    num_classes: int | None = None
    context_dim: int | None = None
    cross_attention_levels: int = 1
    dropout: float = 0.0

    def __post_init__(self):
        self.channel_mults = check_channel_mults(self.channel_mults)
        for c in (self.base_channels * m for m in self.channel_mults):
            if c % self.groups or c % self.num_heads:
                raise ValueError(f"groups, num_heads: must divide every level's width, got width {c}, "
                                 f"groups={self.groups}, num_heads={self.num_heads}")
        check_int("num_res_blocks", self.num_res_blocks, minimum=1)
        check_int("cross_attention_levels", self.cross_attention_levels, minimum=1,
                  maximum=len(self.channel_mults))


class ResBlock(nn.Module):
    """GroupNorm, SiLU, conv; scale-shift by the embedding; GroupNorm, SiLU, conv; plus skip.

    ``h = norm2(conv1(x)) * (1 + scale) + shift`` with ``(scale, shift)`` a linear
    function of the time (+ label) embedding. The second conv starts at zero, so
    the block starts as its skip path.
    """

    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * c_out)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """x: (B, c_in, H, W), emb: (B, emb_dim) -> (B, c_out, H, W)."""
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)  # (B, 2 c_out, 1, 1) -> 2 x (B, c_out, 1, 1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class SpatialAttention(nn.Module):
    """Self-attention over the H*W positions, then cross-attention to context tokens.

    Either part may be absent (``self_attn=False``, ``context_dim=None``). Both
    are residual with a zero-initialised output, so the block starts as the identity.
    Cross-attention is skipped when no context is given. While ``recorded`` is a list
    (``UNet.cross_attention_maps`` sets it), each call appends its cross-attention
    weights to it as (B, L, H, W) maps, averaged over the heads.
    """

    def __init__(self, channels: int, heads: int, groups: int, self_attn: bool = True,
                 context_dim: int | None = None):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels) if self_attn else None
        self.attn = Attention(channels, heads, zero_init=True) if self_attn else None
        self.norm_cross = nn.LayerNorm(channels) if context_dim else None
        self.cross = Attention(channels, heads, context_dim=context_dim, zero_init=True) if context_dim else None
        self.recorded: list | None = None

    def forward(self, x: torch.Tensor, context=None, mask=None) -> torch.Tensor:
        """x: (B, C, H, W), context: (B, L, context_dim) or None -> (B, C, H, W)."""
        B, C, H, W = x.shape
        tokens = x.flatten(2).transpose(1, 2)                              # (B, C, H, W) -> (B, H*W, C)
        if self.attn is not None:
            h = self.norm(x).flatten(2).transpose(1, 2)                     # (B, H*W, C)
            tokens = tokens + self.attn(h)
        if self.cross is not None and context is not None:
            if self.recorded is None:
                tokens = tokens + self.cross(self.norm_cross(tokens), context, mask)
            else:
                out, weights = self.cross(self.norm_cross(tokens), context, mask, return_weights=True)
                tokens = tokens + out
                L = context.shape[1]
                maps = weights.mean(dim=1).transpose(1, 2).reshape(B, L, H, W)    # (B, heads, H*W, L) -> (B, L, H, W)
                self.recorded.append(maps)
        return tokens.transpose(1, 2).reshape(B, C, H, W)                  # (B, H*W, C) -> (B, C, H, W)


class Level(nn.Module):
    """One resolution of the encoder or decoder: residual blocks, optional attention, resampling."""

    def __init__(self, res: list, attn: list, resample: nn.Module | None):
        super().__init__()
        self.res = nn.ModuleList(res)
        self.attn = nn.ModuleList(attn)              # empty, or one per residual block
        self.resample = resample


@register_model
class UNet(nn.Module):
    """U-Net denoiser ``model(x_t, t, cond=None) -> (B, out_channels, H, W)``.

    See ``dlcourse.models.common`` for ``t`` and ``cond``. H and W must be
    divisible by ``2 ** (len(channel_mults) - 1)``.

    The forward pass is split into ``embed``, ``encode``, ``middle`` and
    ``decode`` so that a ControlNet can reuse a copy of the first three.
    """

    def __init__(self, config: UNetConfig | None = None):
        super().__init__()
        c = self.config = config if config is not None else UNetConfig()
        self.num_classes = c.num_classes
        widths = [c.base_channels * m for m in c.channel_mults]
        emb_dim = 4 * c.base_channels
        self.downsampling = 2 ** (len(widths) - 1)
        self.time_embed = TimeEmbedding(c.base_channels, emb_dim)
        self.label_embed = nn.Embedding(c.num_classes + 1, emb_dim) if c.num_classes else None

        def res(c_in, c_out):
            return ResBlock(c_in, c_out, emb_dim, c.groups, c.dropout)

        lowest = len(widths) - 1
        cross_from = len(widths) - c.cross_attention_levels     # levels cross_from..lowest read the context

        def attn(ch, level):
            self_attn = c.attention and level == lowest
            context_dim = c.context_dim if level >= cross_from else None
            return SpatialAttention(ch, c.num_heads, c.groups, self_attn, context_dim)

        def has_attn(level):
            return (level == lowest and c.attention) or (c.context_dim is not None and level >= cross_from)

        self.conv_in = nn.Conv2d(c.in_channels, c.base_channels, 3, padding=1)
        self.down = nn.ModuleList()
        self.skip_channels = []                       # width of each skip, in encoder order
        ch = c.base_channels
        for level, width in enumerate(widths):
            blocks, attns = [], []
            for _ in range(c.num_res_blocks):
                blocks.append(res(ch, width))
                ch = width
                self.skip_channels.append(ch)
                if has_attn(level):
                    attns.append(attn(ch, level))
            down = nn.Conv2d(ch, ch, 3, stride=2, padding=1) if level < lowest else None
            self.down.append(Level(blocks, attns, down))

        self.mid_res1 = res(ch, ch)
        self.mid_attn = attn(ch, lowest) if has_attn(lowest) else None
        self.mid_res2 = res(ch, ch)

        self.up = nn.ModuleList()
        skips = list(self.skip_channels)
        for level in reversed(range(len(widths))):
            width = widths[level]
            blocks, attns = [], []
            for _ in range(c.num_res_blocks):
                blocks.append(res(ch + skips.pop(), width))
                ch = width
                if has_attn(level):
                    attns.append(attn(ch, level))
            # Nearest-neighbour upsampling without a conv of its own: the next ResBlock's
            # first conv mixes it with the skip, and a 3x3 conv at full resolution is the
            # most expensive layer of the network on a CPU.
            up = nn.Upsample(scale_factor=2, mode="nearest") if level > 0 else None
            self.up.append(Level(blocks, attns, up))

        self.norm_out = nn.GroupNorm(c.groups, ch)
        self.conv_out = nn.Conv2d(ch, c.out_channels or c.in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def residual_shapes(self, B: int, H: int, W: int):
        """Shapes a ControlNet's residuals must have for a (B, C, H, W) input.

        Returns:
            ``(down, mid)``: a list with the shape of each skip, in encoder order,
            and the shape of the middle block's output.
        """
        shapes, n = [], self.config.num_res_blocks
        for i, ch in enumerate(self.skip_channels):
            f = 2 ** (i // n)                          # skips of level k are at 1 / 2^k resolution
            shapes.append((B, ch, H // f, W // f))
        return shapes, (B, self.skip_channels[-1], H // self.downsampling, W // self.downsampling)

    def embed(self, t: torch.Tensor, label: torch.Tensor | None) -> torch.Tensor:
        """(B,) timesteps and (B,) labels (or None) -> (B, emb_dim) embedding."""
        emb = self.time_embed(t)
        if self.label_embed is not None:
            if label is None:
                label = null_labels(t.shape[0], self.num_classes, t.device)
            emb = emb + self.label_embed(label)
        return emb

    def encode(self, x, emb, context=None, mask=None):
        """x: (B, C, H, W) -> (h at the lowest resolution, list of skips)."""
        h = self.conv_in(x)
        skips = []
        for level in self.down:
            for i, block in enumerate(level.res):
                h = block(h, emb)
                if len(level.attn):
                    h = level.attn[i](h, context, mask)
                skips.append(h)
            if level.resample is not None:
                h = level.resample(h)
        return h, skips

    def middle(self, h, emb, context=None, mask=None):
        """The bottleneck: ResBlock, attention, ResBlock at the lowest resolution."""
        h = self.mid_res1(h, emb)
        if self.mid_attn is not None:
            h = self.mid_attn(h, context, mask)
        return self.mid_res2(h, emb)

    def decode(self, h, skips, emb, context=None, mask=None):
        """Up the decoder, concatenating the skips (consumed last-first) -> (B, out_channels, H, W)."""
        skips = list(skips)
        for level in self.up:
            for i, block in enumerate(level.res):
                h = block(torch.cat([h, skips.pop()], dim=1), emb)      # (B, ch + skip_ch, h, w)
                if len(level.attn):
                    h = level.attn[i](h, context, mask)
            if level.resample is not None:
                h = level.resample(h)
        return self.conv_out(F.silu(self.norm_out(h)))

    def forward(self, x_t: torch.Tensor, t, cond=None) -> torch.Tensor:
        """Predict from ``x_t`` (B, C, H, W) at timesteps ``t`` (B,); returns (B, out_channels, H, W)."""
        t = check_model_input(x_t, t, ndim=4, channels=self.config.in_channels, multiple=self.downsampling)
        B, C, H, W = x_t.shape
        c = parse_cond(cond, B, num_classes=self.num_classes, context_dim=self.config.context_dim)
        emb = self.embed(t, c.label)
        h, skips = self.encode(x_t, emb, c.context, c.context_mask)
        h = self.middle(h, emb, c.context, c.context_mask)
        down_shapes, mid_shape = self.residual_shapes(B, H, W)
        if c.down_residuals is not None:
            if len(c.down_residuals) != len(skips):
                raise ValueError(f"cond['down_residuals']: expected {len(skips)} tensors (one per skip), "
                                 f"got {len(c.down_residuals)}")
            for i, (r, shape) in enumerate(zip(c.down_residuals, down_shapes)):
                if tuple(r.shape) != shape:
                    raise ValueError(f"cond['down_residuals'][{i}]: expected shape {shape}, got {tuple(r.shape)}")
            skips = [s + r for s, r in zip(skips, c.down_residuals)]
        if c.mid_residual is not None:
            if tuple(c.mid_residual.shape) != mid_shape:
                raise ValueError(f"cond['mid_residual']: expected shape {mid_shape}, "
                                 f"got {tuple(c.mid_residual.shape)}")
            h = h + c.mid_residual
        return self.decode(h, skips, emb, c.context, c.context_mask)

    @torch.no_grad()
    def cross_attention_maps(self, x_t: torch.Tensor, t, cond) -> tuple[torch.Tensor, dict]:
        """The output of ``self(x_t, t, cond)`` and where each context token was read.

        Returns:
            ``(out, maps)``: out (B, out_channels, H, W), and maps a dict from the name of
            each cross-attention block ("down.2.attn.0", "mid_attn", "up.0.attn.0", ...) to
            (B, L, h, w): map ``[b, j]`` is the attention paid to token j at each position of
            that block's h x w grid, averaged over the heads (it sums to 1 over the tokens).
        """
        blocks = {name: m for name, m in self.named_modules() if isinstance(m, SpatialAttention)
                  and m.cross is not None}
        if not blocks:
            raise ValueError("model: this U-Net has no cross-attention (build it with context_dim)")
        for m in blocks.values():
            m.recorded = []
        try:
            out = self(x_t, t, cond)
        finally:
            recorded = {name: m.recorded for name, m in blocks.items()}
            for m in blocks.values():
                m.recorded = None
        if not all(recorded.values()):
            raise ValueError("cond: expected a 'context' for the cross-attention to read, got none")
        return out, {name: r[0] for name, r in recorded.items()}

    def get_config(self) -> dict:
        """``UNetConfig`` as a dict of plain types."""
        return asdict(self.config)

    @classmethod
    def from_config(cls, config: dict) -> "UNet":
        return cls(UNetConfig(**config))
