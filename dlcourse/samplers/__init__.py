"""Samplers: plain functions that turn noise into data with a trained denoiser.

Every sampler has the same signature,
``sample_x(model, x_T, schedule, steps=None, *, cond=None, prediction_type="epsilon", ...)``,
so changing sampler means changing one name.
"""

from .ddpm import sample_ddpm
from .spacing import respace, timesteps_for

__all__ = ["respace", "sample_ddpm", "timesteps_for"]
