"""Imagen's dynamic thresholding in miniature: keeping the x_0 guess in range at high guidance.

At every sampling step the samplers read the network's guess of the clean image, ``x_0``, and step towards it
(notebook 04). Classifier-free guidance at a large w pushes that guess past the data's range [-1, 1]: the guided
output ``out_u + w (out_c - out_u)`` extrapolates, and the error compounds over the steps. Two remedies (Saharia
et al. 2022, "Photorealistic Text-to-Image Diffusion Models with Deep Language Understanding", sec. 2.3):

- **static thresholding**: clip the guess to [-1, 1] at every step (the course's ``clip_x0=True``). Pixels pushed
  out pile up at the bounds: saturated, flat colours.
- **dynamic thresholding**: per sample, let ``s`` be the p-th percentile of ``|x_0|`` over all its pixels and
  channels, and ``s <- max(s, 1)``; clip to [-s, s] and divide by s::

      s = max(1, quantile(|x_0[b]|, p)),    x_0[b] <- clamp(x_0[b], -s, s) / s

  A guess inside [-1, 1] (s = 1) is left alone; one that overshoots is pulled back as a whole, which keeps its
  contrast instead of flattening the pixels beyond the bound. p = 0.995 is diffusers' default
  (``dynamic_thresholding_ratio``); Imagen's paper states p as "a certain percentile".

Both plug into any sampler of ``dlcourse.samplers`` through the denoiser's ``threshold_x0`` hook::

    x = sample_ddim(pipe, x_T, schedule, 20, cond=pipe.cond(prompts), guidance_scale=10,
                    prediction_type="v_prediction", clip_x0=False, threshold_x0=dynamic_threshold)

``saturation`` measures the effect: the fraction of pixel values at the bounds. Figures at w = 1 to 15 with the
shipped ``shapes16_unet_text``: ``bench/imagen_threshold.py`` (bench/README.md).
"""

from __future__ import annotations

import torch

from ..validation import check_number, check_tensor

__all__ = ["DYNAMIC_PERCENTILE", "dynamic_threshold", "saturation", "static_threshold"]

DYNAMIC_PERCENTILE = 0.995


def static_threshold(x_0: torch.Tensor) -> torch.Tensor:
    """Clip the x_0 guess to [-1, 1] (Imagen's static thresholding).

    Args:
        x_0: (B, ...) the guess, floating point.

    Returns:
        (B, ...) ``x_0.clamp(-1, 1)``.
    """
    check_tensor("x_0", x_0, floating=True)
    return x_0.clamp(-1, 1)


def dynamic_threshold(x_0: torch.Tensor, percentile: float = DYNAMIC_PERCENTILE) -> torch.Tensor:
    """Imagen's dynamic thresholding of the x_0 guess, each sample on its own (Saharia et al. 2022, sec. 2.3).

    ``s_b = max(1, quantile(|x_0[b]|, percentile))`` over all of sample b's values, then
    ``x_0[b].clamp(-s_b, s_b) / s_b``: every sample ends in [-1, 1], and one already inside is unchanged.

    Args:
        x_0: (B, ...) the guess, floating point, at least 2-D (one row per sample).
        percentile: p in (0, 1].

    Returns:
        (B, ...) in ``x_0``'s dtype.
    """
    check_tensor("x_0", x_0, floating=True, ndim=(2, 3, 4, 5))
    p = check_number("percentile", percentile, above=0.0, maximum=1.0)
    B = x_0.shape[0]
    flat = x_0.reshape(B, -1)                                                     # (B, N): one row per sample
    if flat.dtype not in (torch.float32, torch.float64):
        flat = flat.float()                                                       # quantile needs float32/64
    s = torch.quantile(flat.abs(), p, dim=1).clamp(min=1.0)                        # (B,), s >= 1
    s = s.view(B, *([1] * (x_0.ndim - 1))).to(x_0.dtype)                           # (B, 1, ...)
    return torch.maximum(torch.minimum(x_0, s), -s) / s


def saturation(images: torch.Tensor, level: float = 0.99) -> float:
    """The fraction of values of ``images`` (B, ...) in [-1, 1] at the bounds: ``|x| >= level``.

    Real shapes images have flat backgrounds and flat-coloured shapes whose channels sit at 0 or 1 on the [0, 1]
    scale, so real data has a saturation of its own: compare with the real images' figure, not with 0.
    """
    check_tensor("images", images, floating=True)
    level = check_number("level", level, above=0.0, maximum=1.0)
    return float((images.abs() >= level).float().mean())
