"""What every sampler shares: one model call with guidance, read as ``(x_0, eps)``.

Classifier-free guidance (Ho & Salimans 2022, eq. 6, with ``w = 1 + their w``;
``dlcourse.guidance.classifier_free_guidance``)::

    eps = eps_uncond + w (eps_cond - eps_uncond)

``w = 1`` is the conditional model, ``w = 0`` the unconditional one, ``w > 1``
pushes samples further towards the condition. The same line works on the raw
model output whatever it predicts: ``x_0``, ``eps`` and ``v`` are affine in one
another for a fixed ``x_t`` and the weights ``1 - w`` and ``w`` add up to one, so
guiding the output and then converting equals converting and then guiding.
"""

from __future__ import annotations

import torch

from ..guidance import classifier_free_guidance
from ..parameterization import eps_from_x0, to_x0_eps
from ..tensors import eval_mode, noise_like  # noqa: F401  (the samplers import them from here)
from ..validation import check_tensor


def _timesteps(t, x: torch.Tensor) -> torch.Tensor:
    """``t`` (an int, a 0-d or a (B,) tensor) as a (B,) int64 tensor on ``x``'s device."""
    t = torch.as_tensor(t, device=x.device)
    return t.expand(x.shape[0]) if t.ndim == 0 else t


def _stack_with_null(model, cond, B: int):
    """``cond`` followed by the null condition, as one batch of 2B, or None if not possible.

    Possible when ``cond`` is (B,) labels (alone or as a dict's only key) and the model
    says how many classes it has: its null label is ``model.num_classes``.
    """
    num_classes = getattr(model, "num_classes", None)
    if not isinstance(num_classes, int):
        return None
    is_dict = isinstance(cond, dict)
    labels = cond.get("label") if is_dict and set(cond) == {"label"} else cond
    if not isinstance(labels, torch.Tensor) or labels.shape != (B,):
        return None
    both = torch.cat([labels, torch.full_like(labels, num_classes)])        # (2B,)
    return {"label": both} if is_dict else both


def model_output(model, x: torch.Tensor, t, cond=None, guidance_scale: float = 1.0) -> torch.Tensor:
    """The model's output at ``(x, t)``, with classifier-free guidance of strength ``guidance_scale``.

    ``out = out_uncond + w (out_cond - out_uncond)`` with ``out_uncond = model(x, t, None)``.
    ``w = 1`` (or ``cond = None``) returns exactly ``model(x, t, cond)`` and ``w = 0`` exactly
    ``model(x, t, None)``, one call each. Otherwise, for class labels and a model with
    ``num_classes``, both halves come from one call on a batch of 2B; for other
    conditioning, from two calls.

    Args:
        model: called as ``model(x_t, t, cond)`` (see ``dlcourse.models.common``).
        x: (B, ...) the noisy input.
        t: int or (B,) int64 timesteps.
        cond: None, (B,) labels or a dict.
        guidance_scale: w.

    Returns:
        (B, ...) in ``x``'s dtype (a bf16 model's output is cast up).
    """
    t = _timesteps(t, x)
    if cond is None or guidance_scale == 1:
        return model(x, t, cond).to(x.dtype)
    if guidance_scale == 0:
        return model(x, t, None).to(x.dtype)
    both = _stack_with_null(model, cond, x.shape[0])
    if both is not None:
        out_cond, out_uncond = model(torch.cat([x, x]), torch.cat([t, t]), both).to(x.dtype).chunk(2)
    else:
        out_cond, out_uncond = model(x, t, cond).to(x.dtype), model(x, t, None).to(x.dtype)
    return classifier_free_guidance(out_uncond, out_cond, guidance_scale)


def predict_x0_eps(model, x: torch.Tensor, t, alpha_bar, *, cond=None, guidance_scale: float = 1.0,
                   prediction_type: str = "epsilon", clip_x0: bool = False):
    """The (guided) model's guesses of ``x_0`` and ``eps`` at ``(x, t)``, whatever it predicts.

    Args:
        model, x, t, cond, guidance_scale: as in :func:`model_output`.
        alpha_bar: number or (B,) alpha_bar at ``t``.
        prediction_type: "epsilon", "sample" or "v_prediction".
        clip_x0: clamp ``x_0`` to [-1, 1] (images) and recompute ``eps`` from the
            clamped value, so the two guesses stay consistent with ``x``.

    Returns:
        ``(x_0, eps)``, each (B, ...) like ``x``.
    """
    out = model_output(model, x, t, cond, guidance_scale)
    check_tensor("model output", out, shape=tuple(x.shape))
    x_0, eps = to_x0_eps(out, x, alpha_bar, prediction_type)
    if clip_x0:
        x_0 = x_0.clamp(-1, 1)
        eps = eps_from_x0(x, x_0, alpha_bar)
    return x_0, eps


def check_x_T(x_T) -> torch.Tensor:
    """The checks every sampler makes on its starting noise (B, ...)."""
    return check_tensor("x_T", x_T, ndim=(2, 3, 4, 5), floating=True)


def alpha_bars_at(schedule, timesteps: torch.Tensor) -> torch.Tensor:
    """(steps + 1,) float64 alpha_bar: index 0 is clean data (1.0), index ``i + 1`` is ``timesteps[i]``.

    So the step from ``timesteps[i]`` goes from ``alpha_bars[i + 1]`` to ``alpha_bars[i]``.
    """
    ab = schedule.alphas_cumprod[timesteps.to(schedule.alphas_cumprod.device)].double().cpu()
    return torch.cat([ab.new_ones(1), ab])
