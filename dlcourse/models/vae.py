"""A small KL-regularised convolutional autoencoder (a VAE: Kingma & Welling 2014).

The autoencoder of Stable Diffusion (Rombach et al. 2022, sec. 3.1 and appendix G) in
miniature: the encoder maps an image to a Gaussian over a smaller *latent* image, the
decoder maps a latent back to pixels, and a small KL term keeps the latents close to
N(0, I) so that a diffusion model can work in that space (``dlcourse.latent``).

    x (B, 3, 32, 32) -> encoder -> mean, logvar    each (B, 4, 8, 8)
    z = mean + exp(logvar / 2) * eps,  eps ~ N(0, I)      (the reparameterisation trick)
    z (B, 4, 8, 8)   -> decoder -> x_rec (B, 3, 32, 32)

With the defaults that is 3 * 32 * 32 = 3072 numbers per image against 4 * 8 * 8 = 256
per latent, 12x fewer (Stable Diffusion: 512 * 512 * 3 against 64 * 64 * 4, 48x).

Encoder: a 3x3 conv, then per level ``num_res_blocks`` residual blocks and (except at the
last level) a stride-2 conv; a middle residual block; GroupNorm, SiLU and a 3x3 conv to
``2 * latent_channels`` channels, read as the mean and the log-variance. The decoder is
the mirror image, doubling the resolution by nearest-neighbour upsampling and a conv.
Unlike Stable Diffusion's autoencoder it has no attention and no adversarial or perceptual
loss: at 32 px a few convolutions see the whole image, and the loss is ``dlcourse.latent.vae_loss``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..validation import check_int, check_tensor
from .common import check_channel_mults, register_model

LOGVAR_RANGE = (-30.0, 20.0)            # clamped as in Stable Diffusion's autoencoder, so exp() stays finite


@dataclass
class VAEConfig:
    """Hyper-parameters of ``VAE``.

    Attributes:
        image_channels: C of the images.
        latent_channels: channels of the latent.
        base_channels: width of the first (full-resolution) level.
        channel_mults: width of each level as a multiple of ``base_channels``; the resolution
            is halved between levels, so the latent side is ``image_size / 2 ** (len - 1)``.
        num_res_blocks: residual blocks per level, in the encoder and in the decoder.
        groups: groups of every GroupNorm; must divide every level's width.
        image_size: H = W of the images it takes (the latent's shape follows from it).
    """

    image_channels: int = 3
    latent_channels: int = 4
    base_channels: int = 32
    channel_mults: tuple = (1, 2, 2)
    num_res_blocks: int = 1
    groups: int = 8
    image_size: int = 32

    def __post_init__(self):
        self.channel_mults = check_channel_mults(self.channel_mults)
        check_int("image_channels", self.image_channels, minimum=1)
        check_int("latent_channels", self.latent_channels, minimum=1)
        check_int("num_res_blocks", self.num_res_blocks, minimum=1)
        for c in (self.base_channels * m for m in self.channel_mults):
            if c % self.groups:
                raise ValueError(f"groups: must divide every level's width, got width {c}, groups={self.groups}")
        factor = 2 ** (len(self.channel_mults) - 1)
        if check_int("image_size", self.image_size, minimum=1) % factor:
            raise ValueError(f"image_size: must be divisible by {factor} ({len(self.channel_mults)} levels), "
                             f"got {self.image_size}")


class ResBlock(nn.Module):
    """GroupNorm, SiLU, conv, GroupNorm, SiLU, conv, plus the input (a 1x1 conv if the width changes)."""

    def __init__(self, c_in: int, c_out: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, c_in, H, W) -> (B, c_out, H, W)."""
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


@register_model
class VAE(nn.Module):
    """``encode(x) -> (mean, logvar)``, ``decode(z) -> x_rec``, ``vae(x, eps=None) -> (x_rec, mean, logvar)``.

    Shapes with the defaults: x (B, 3, 32, 32), mean, logvar and z (B, 4, 8, 8).
    ``latent_shape`` gives (C, H, W) of a latent for the configured ``image_size``.
    """

    def __init__(self, config: VAEConfig | None = None):
        super().__init__()
        c = self.config = config if config is not None else VAEConfig()
        widths = [c.base_channels * m for m in c.channel_mults]
        self.downsampling = 2 ** (len(widths) - 1)

        # encoder: (B, C, H, W) -> (B, 2 latent_channels, H / f, W / f)
        enc = [nn.Conv2d(c.image_channels, widths[0], 3, padding=1)]
        ch = widths[0]
        for level, width in enumerate(widths):
            for _ in range(c.num_res_blocks):
                enc.append(ResBlock(ch, width, c.groups))
                ch = width
            if level < len(widths) - 1:
                enc.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
        enc += [ResBlock(ch, ch, c.groups), nn.GroupNorm(c.groups, ch), nn.SiLU(),
                nn.Conv2d(ch, 2 * c.latent_channels, 3, padding=1)]
        self.encoder = nn.Sequential(*enc)

        # decoder: (B, latent_channels, H / f, W / f) -> (B, C, H, W)
        dec = [nn.Conv2d(c.latent_channels, ch, 3, padding=1), ResBlock(ch, ch, c.groups)]
        for level in reversed(range(len(widths))):
            for _ in range(c.num_res_blocks):
                dec.append(ResBlock(ch, widths[level], c.groups))
                ch = widths[level]
            if level > 0:
                dec += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, ch, 3, padding=1)]
        dec += [nn.GroupNorm(c.groups, ch), nn.SiLU(), nn.Conv2d(ch, c.image_channels, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(latent_channels, H, W) of the latent of one ``image_size`` image, e.g. (4, 8, 8)."""
        side = self.config.image_size // self.downsampling
        return (self.config.latent_channels, side, side)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(image_channels, image_size, image_size), e.g. (3, 32, 32)."""
        return (self.config.image_channels, self.config.image_size, self.config.image_size)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, C, H, W) -> ``(mean, logvar)`` of q(z | x), each (B, latent_channels, H / f, W / f)."""
        check_tensor("x", x, shape=(None, *self.image_shape), floating=True)
        mean, logvar = self.encoder(x).chunk(2, dim=1)          # (B, 2 c, h, w) -> 2 x (B, c, h, w)
        return mean, logvar.clamp(*LOGVAR_RANGE)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z: (B, latent_channels, h, w) -> x_rec (B, C, H, W), not clamped (``dlcourse.latent.decode`` clamps)."""
        check_tensor("z", z, shape=(None, *self.latent_shape), floating=True)
        return self.decoder(z)

    def forward(self, x: torch.Tensor, eps: torch.Tensor | None = None):
        """Encode, draw ``z = mean + exp(logvar / 2) * eps`` (``dlcourse.latent.reparameterize``), decode.

        Args:
            x: (B, C, H, W) images.
            eps: (B, *latent_shape) standard normal noise; drawn here (torch's global random state)
                if None. Pass zeros to decode the mean.

        Returns:
            ``(x_rec, mean, logvar)``: (B, C, H, W), and (B, *latent_shape) twice.
        """
        mean, logvar = self.encode(x)
        if eps is None:
            eps = torch.randn_like(mean)
        check_tensor("eps", eps, shape=tuple(mean.shape), floating=True)
        z = mean + torch.exp(0.5 * logvar) * eps.to(mean.device)
        return self.decode(z), mean, logvar

    def get_config(self) -> dict:
        """``VAEConfig`` as a dict of plain types."""
        return asdict(self.config)

    @classmethod
    def from_config(cls, config: dict) -> "VAE":
        return cls(VAEConfig(**config))
