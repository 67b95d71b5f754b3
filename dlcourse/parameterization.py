"""What the network predicts, and how to convert between the choices.

With ``x_t = sqrt(ab) x_0 + sqrt(1 - ab) eps`` (``ab`` = alpha_bar_t), knowing
``x_t`` and any one of these determines the others:

    "epsilon"       the noise eps (Ho et al. 2020)
    "sample"        the clean data x_0
    "v_prediction"  the velocity v = sqrt(ab) eps - sqrt(1 - ab) x_0 (Salimans & Ho 2022)

A rectified flow ``x_t = (1 - t) x_0 + t eps`` predicts its own velocity ``eps - x_0``
(``flow_to_x0_eps``). ``sigma_from_alpha_bar`` and ``half_log_snr`` give a noise level's
variance-exploding sigma and DPM-Solver's lambda.

(the names are diffusers' ``prediction_type`` values). The score of the noised
data is a fourth view: ``grad log p(x_t) = -eps / sqrt(1 - ab)`` (Song et al. 2021).

Every conversion is a pure function of tensors. ``alpha_bar`` may be a number, a
0-d tensor, or one value per example, (B,), which is broadcast over the other
dimensions of ``x_t``.

Training (``diffusion_loss``) draws ``t`` and ``eps``, makes ``x_t`` and regresses
the model's output on the chosen target (Ho et al. 2020, Algorithm 1).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .device import model_device
from .schedules import NoiseSchedule
from .tensors import expand_like, to_device
from .validation import check_choice, check_positive, check_tensor

PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")


def _ab(alpha_bar, x: torch.Tensor) -> torch.Tensor:
    """``alpha_bar`` as a tensor that broadcasts against ``x`` (B, ...)."""
    if not isinstance(alpha_bar, torch.Tensor):                 # a Python number: keep x's precision
        alpha_bar = torch.tensor(alpha_bar, dtype=x.dtype, device=x.device)
    ab = alpha_bar
    if ab.ndim > 1 or (ab.ndim == 1 and ab.shape[0] != x.shape[0]):
        raise ValueError(f"alpha_bar: expected a number or shape ({x.shape[0]},) matching the batch, "
                         f"got shape {tuple(ab.shape)}")
    return expand_like(ab, x)


def x0_from_eps(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar) -> torch.Tensor:
    """``x_0 = (x_t - sqrt(1 - ab) eps) / sqrt(ab)``; shapes (B, ...)."""
    ab = _ab(alpha_bar, x_t)
    return (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()


def eps_from_x0(x_t: torch.Tensor, x_0: torch.Tensor, alpha_bar) -> torch.Tensor:
    """``eps = (x_t - sqrt(ab) x_0) / sqrt(1 - ab)``; shapes (B, ...)."""
    ab = _ab(alpha_bar, x_t)
    return (x_t - ab.sqrt() * x_0) / (1 - ab).sqrt()


def v_from_x0_eps(x_0: torch.Tensor, eps: torch.Tensor, alpha_bar) -> torch.Tensor:
    """``v = sqrt(ab) eps - sqrt(1 - ab) x_0`` (Salimans & Ho 2022, sec. 4); shapes (B, ...)."""
    ab = _ab(alpha_bar, x_0)
    return ab.sqrt() * eps - (1 - ab).sqrt() * x_0


def x0_from_v(x_t: torch.Tensor, v: torch.Tensor, alpha_bar) -> torch.Tensor:
    """``x_0 = sqrt(ab) x_t - sqrt(1 - ab) v``; shapes (B, ...)."""
    ab = _ab(alpha_bar, x_t)
    return ab.sqrt() * x_t - (1 - ab).sqrt() * v


def eps_from_v(x_t: torch.Tensor, v: torch.Tensor, alpha_bar) -> torch.Tensor:
    """``eps = sqrt(1 - ab) x_t + sqrt(ab) v``; shapes (B, ...)."""
    ab = _ab(alpha_bar, x_t)
    return (1 - ab).sqrt() * x_t + ab.sqrt() * v


def score_from_eps(eps: torch.Tensor, alpha_bar) -> torch.Tensor:
    """``grad_x log p_t(x) = -eps / sqrt(1 - ab)`` for the eps of an ideal predictor."""
    return -eps / (1 - _ab(alpha_bar, eps)).sqrt()


def eps_from_score(score: torch.Tensor, alpha_bar) -> torch.Tensor:
    """``eps = -sqrt(1 - ab) * score``, the inverse of ``score_from_eps``."""
    return -(1 - _ab(alpha_bar, score)).sqrt() * score


def sigma_from_alpha_bar(alpha_bar):
    """``sigma = sqrt((1 - ab) / ab)``: the noise level of ``x_t / sqrt(ab) = x_0 + sigma eps``.

    The variance-exploding view of a variance-preserving ``x_t`` (Karras et al. 2022, sec. 2;
    Song et al. 2021, eq. 14): the probability-flow ODE is ``d(x_t / sqrt(ab)) / dsigma = eps``.
    Works on numbers and on tensors of any shape.
    """
    return ((1 - alpha_bar) / alpha_bar) ** 0.5


def half_log_snr(alpha_bar):
    """``lambda = log(sqrt(ab) / sqrt(1 - ab))``, half the log signal-to-noise ratio (DPM-Solver's lambda)."""
    if isinstance(alpha_bar, torch.Tensor):
        return 0.5 * (alpha_bar.log() - torch.log1p(-alpha_bar))
    return 0.5 * (math.log(alpha_bar) - math.log1p(-alpha_bar))


def to_x0_eps(model_output: torch.Tensor, x_t: torch.Tensor, alpha_bar, prediction_type: str = "epsilon"):
    """Read a model's output as both ``(x_0, eps)``, whatever it predicts.

    Samplers use this so they work with any prediction type.

    Args:
        model_output: (B, ...) what the model returned.
        x_t: (B, ...) its input.
        alpha_bar: number or (B,) alpha_bar of each example's timestep.
        prediction_type: "epsilon", "sample" or "v_prediction".

    Returns:
        ``(x_0, eps)``, each (B, ...).
    """
    check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
    check_tensor("model_output", model_output, shape=tuple(x_t.shape))
    if prediction_type == "epsilon":
        eps = model_output
        return x0_from_eps(x_t, eps, alpha_bar), eps
    if prediction_type == "sample":
        x_0 = model_output
        return x_0, eps_from_x0(x_t, x_0, alpha_bar)
    v = model_output
    return x0_from_v(x_t, v, alpha_bar), eps_from_v(x_t, v, alpha_bar)


FLOW_PREDICTION_TYPES = ("velocity", "epsilon", "sample")


def flow_to_x0_eps(model_output: torch.Tensor, x_t: torch.Tensor, t: float, prediction_type: str = "velocity"):
    """Read a rectified-flow model's output as ``(x_0, eps)``, for ``x_t = (1 - t) x_0 + t eps``.

    With the velocity ``v = dx_t/dt = eps - x_0`` (Liu et al. 2023; Lipman et al. 2023):
    ``x_0 = x_t - t v`` and ``eps = x_t + (1 - t) v``. Unchecked: the samplers' denoiser
    (``dlcourse.samplers.FlowDenoiser``) checks once, then calls this at every step.

    Args:
        model_output: (B, ...) what the model returned.
        x_t: (B, ...) its input.
        t: the flow time in (0, 1) (a number: every example at the same time).
        prediction_type: "velocity", "epsilon" or "sample".

    Returns:
        ``(x_0, eps)``, each (B, ...).
    """
    if prediction_type == "velocity":
        v = model_output
        return x_t - t * v, x_t + (1 - t) * v
    if prediction_type == "epsilon":
        eps = model_output
        return (x_t - t * eps) / (1 - t), eps
    x_0 = model_output
    return x_0, (x_t - (1 - t) * x_0) / t


def prediction_target(x_0: torch.Tensor, eps: torch.Tensor, alpha_bar, prediction_type: str = "epsilon"):
    """What a model of ``prediction_type`` should output for this ``(x_0, eps)``: (B, ...)."""
    check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
    if prediction_type == "epsilon":
        return eps
    if prediction_type == "sample":
        return x_0
    return v_from_x0_eps(x_0, eps, alpha_bar)


def min_snr_weight(alpha_bar: torch.Tensor, gamma: float, prediction_type: str = "epsilon") -> torch.Tensor:
    """Min-SNR-gamma loss weights (Hang et al. 2023, eq. 9 and its v and x_0 forms): (B,) like ``alpha_bar``.

    With ``SNR = ab / (1 - ab)``, weighting the x_0 error by ``min(SNR, gamma)`` caps the
    weight of the easy, nearly clean timesteps. The same weight, written for each target:
    ``min(SNR, gamma) / SNR`` for "epsilon", ``min(SNR, gamma) / (SNR + 1)`` for
    "v_prediction", ``min(SNR, gamma)`` for "sample".
    """
    check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
    check_positive("gamma", gamma)
    snr = alpha_bar / (1 - alpha_bar)
    capped = snr.clamp(max=gamma)
    if prediction_type == "epsilon":
        return capped / snr
    if prediction_type == "v_prediction":
        return capped / (snr + 1)
    return capped


def diffusion_loss(model, x_0: torch.Tensor, schedule: NoiseSchedule, *, prediction_type: str = "epsilon",
                   cond=None, generator: torch.Generator | None = None,
                   min_snr_gamma: float | None = None) -> torch.Tensor:
    """The denoising objective, one Monte-Carlo estimate (Ho et al. 2020, Algorithm 1).

    ``t ~ U{0..T-1}``, ``eps ~ N(0, I)``, ``x_t = sqrt(ab_t) x_0 + sqrt(1 - ab_t) eps``,
    and the mean squared error between ``model(x_t, t, cond)`` and the target of
    ``prediction_type``, averaged over all elements.

    Args:
        model: called as ``model(x_t, t, cond)``, see ``dlcourse.models``.
        x_0: (B, ...) clean data; moved to the model's device (``dlcourse.device.model_device``),
            with ``cond`` when it is a label tensor.
        schedule: the noise schedule.
        prediction_type: "epsilon", "sample" or "v_prediction".
        cond: conditioning passed through to the model.
        generator: draws ``t`` and ``eps`` (on its own device) for reproducibility.
        min_snr_gamma: if given, each example's mean squared error is weighted by
            ``min_snr_weight(alpha_bar_t, min_snr_gamma, prediction_type)`` (notebook 03 measures
            what gamma = 5 buys in a short training run); None for the plain average.

    Returns:
        Scalar loss tensor, on the model's device.
    """
    check_tensor("x_0", x_0, floating=True)
    check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
    device = model_device(model)
    x_0 = x_0.to(device)
    cond = to_device(cond, device)
    B = x_0.shape[0]
    rng_device = generator.device if generator is not None else x_0.device
    t = torch.randint(0, schedule.T, (B,), generator=generator, device=rng_device).to(x_0.device)
    eps = torch.randn(x_0.shape, generator=generator, device=rng_device, dtype=x_0.dtype).to(x_0.device)
    alpha_bar = schedule.alphas_cumprod.to(x_0.device)[t]                   # (B,)
    ab = expand_like(alpha_bar, x_0)                                        # (B, 1, ...)
    x_t = ab.sqrt() * x_0 + (1 - ab).sqrt() * eps
    target = prediction_target(x_0, eps, alpha_bar, prediction_type)
    output = model(x_t, t, cond)
    if min_snr_gamma is None:
        return F.mse_loss(output.float(), target.float())
    error = (output.float() - target.float()).square().reshape(B, -1).mean(dim=1)        # (B,)
    return (min_snr_weight(alpha_bar.float(), min_snr_gamma, prediction_type) * error).mean()
