"""Denoising networks, all called as ``model(x_t, t, cond=None)``.

- ``MLPDenoiser``: a residual MLP for 2-D toy data.
- ``UNet`` / ``UNetConfig``: a small U-Net with time and label conditioning,
  self-attention and optional cross-attention at the lowest resolution, and
  ControlNet residual inputs.
- ``DiT`` / ``DiTConfig``: a tiny diffusion transformer with adaLN-Zero.
- ``timestep_embedding``: the sinusoidal timestep features they share.
- ``VAE`` / ``VAEConfig``: a small KL-regularised autoencoder, 32x32x3 images to 4x8x8
  latents (not a denoiser: ``encode``, ``decode``; ``dlcourse.latent`` diffuses in its latents).

The conditioning format and the model registry are in ``dlcourse.models.common``.
"""

from .common import MODELS, Cond, parse_cond, register_model
from .dit import DiT, DiTConfig
from .embeddings import sincos_2d, timestep_embedding
from .mlp import MLPDenoiser
from .unet import UNet, UNetConfig
from .vae import VAE, VAEConfig

__all__ = [
    "MODELS", "Cond", "DiT", "DiTConfig", "MLPDenoiser", "UNet", "UNetConfig", "VAE", "VAEConfig",
    "parse_cond", "register_model", "sincos_2d", "timestep_embedding",
]
