"""The denoiser: a network with its time parametrisation, answering "x_0 and eps at this noise level".

Samplers do not care how a network was trained. They need, at each noise level they
visit, the network's guess of the clean data ``x_0`` and of the noise ``eps`` in

    x = sqrt(ab) x_0 + sqrt(1 - ab) eps                (ab = alpha_bar of that level)

(the variance-preserving form of notebook 01). A ``Denoiser`` wraps a network with
everything that turns its output into that answer: how its time is written, what it
predicts, its conditioning and guidance, and clipping. The split follows Karras et al.
2022 ("Elucidating the Design Space", sec. 2 and 5), whose samplers take a denoiser
and a list of noise levels instead of a network and a schedule.

Two time parametrisations:

- ``VPDenoiser``: discrete timesteps t = 0 .. T-1 of a ``NoiseSchedule`` (DDPM,
  notebooks 03-05); ab = ``alphas_cumprod[t]``; predicts "epsilon", "sample" or
  "v_prediction".
- ``FlowDenoiser``: continuous time t in [0, 1] of a rectified flow
  ``x_t = (1 - t) x_0 + t eps`` (Liu et al. 2023; Lipman et al. 2023; notebook 08);
  predicts the velocity ``v = eps - x_0`` ("velocity"), or "epsilon" or "sample".
  Dividing by ``s = sqrt((1 - t)^2 + t^2)`` puts it in the form above with
  ``ab = (1 - t)^2 / s^2``: a flow is a variance-preserving process with another
  schedule and a scale, so the same samplers serve both. The network sees ``s x``.

A sampler visits a decreasing list of times (``times``) and then steps to clean data
(ab = 1). Everything that can be checked is checked when the denoiser is built and at
its first call (the output's shape), not at every step.
"""

from __future__ import annotations

import math

import torch

from ..device import model_device
from ..guidance import classifier_free_guidance
from ..parameterization import (FLOW_PREDICTION_TYPES, PREDICTION_TYPES, eps_from_v, eps_from_x0, flow_to_x0_eps,
                                x0_from_eps, x0_from_v)
from ..schedules import NoiseSchedule
from ..tensors import to_device
from ..validation import check_choice, check_number, check_schedule, check_tensor

# A flow's x at t = 1 is pure noise: no step written with eps can recover x_0 from it (ab = 0).
# Sampling starts just below, where ab is about 1e-6 (the cosine schedule's last step has 2.5e-9).
FLOW_T_MAX = 0.999


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

    ``out = out_uncond + w (out_cond - out_uncond)`` with ``out_uncond = model(x, t, None)``
    (``dlcourse.guidance``; the same line works on eps, x_0, v or a velocity: they are affine in
    one another for a fixed x and the weights 1 - w and w add up to one). ``w = 1`` (or
    ``cond = None``) returns exactly ``model(x, t, cond)`` and ``w = 0`` exactly
    ``model(x, t, None)``, one call each. Otherwise, for class labels and a model with
    ``num_classes``, both halves come from one call on a batch of 2B; for other
    conditioning, from two calls.

    Args:
        model: called as ``model(x_t, t, cond)`` (see ``dlcourse.models.common``).
        x: (B, ...) the noisy input.
        t: an int or float, or a (B,) tensor of times, as the model takes them.
        cond: None, (B,) labels or a dict.
        guidance_scale: w.

    Returns:
        (B, ...) in ``x``'s dtype (a bf16 model's output is cast up).
    """
    t = torch.as_tensor(t, device=x.device)
    t = t.expand(x.shape[0]) if t.ndim == 0 else t
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


class Denoiser:
    """A network read as ``(x_0, eps)`` at the times of its parametrisation (module docstring).

    Subclasses say what a time means: ``alpha_bar(t)`` and how the network is called
    (``_read``). Calling the denoiser applies guidance and clipping.

    Args:
        model: the network, called as ``model(x, t, cond)``.
        prediction_type: what it predicts (the subclass lists the choices).
        cond: the conditioning for every call (None, (B,) labels or a dict), moved to the
            model's device.
        guidance_scale: classifier-free guidance weight w (1 = none).
        clip_x0: clamp the x_0 guess to [-1, 1] (images) and recompute eps from it, so the
            two guesses stay consistent with x.
        threshold_x0: None, or a function ``(B, ...) -> (B, ...)`` applied to the x_0 guess at every
            step before ``clip_x0`` (eps is then recomputed from it), e.g. Imagen's dynamic
            thresholding (``dlcourse.systems.imagen``). None changes nothing.
    """

    prediction_types: tuple = ()

    def __init__(self, model, *, prediction_type: str, cond=None, guidance_scale: float = 1.0,
                 clip_x0: bool = False, threshold_x0=None):
        check_choice("prediction_type", prediction_type, self.prediction_types)
        if threshold_x0 is not None and not callable(threshold_x0):
            raise TypeError(f"threshold_x0: expected None or a function of the x_0 guess, got "
                            f"{type(threshold_x0).__name__}")
        self.model = model
        self.device = model_device(model)
        self.prediction_type = prediction_type
        self.cond = to_device(cond, self.device)
        self.guidance_scale = check_number("guidance_scale", guidance_scale)
        self.clip_x0 = bool(clip_x0)
        self.threshold_x0 = threshold_x0
        self._checked = False

    def alpha_bar(self, t) -> float:
        """The alpha_bar of time ``t``: the noisy sample is ``sqrt(ab) x_0 + sqrt(1 - ab) eps``."""
        raise NotImplementedError

    def _read(self, x: torch.Tensor, t, ab: float):
        """The network's ``(x_0, eps)`` at ``(x, t)``, before clipping."""
        raise NotImplementedError

    def output(self, x_net: torch.Tensor, t_net) -> torch.Tensor:
        """The (guided) network output at the network's own input; its shape checked on the first call."""
        out = model_output(self.model, x_net, t_net, self.cond, self.guidance_scale)
        if not self._checked:
            check_tensor("model output", out, shape=tuple(x_net.shape))
            self._checked = True
        return out

    def __call__(self, x: torch.Tensor, t):
        """The guesses ``(x_0, eps)``, each (B, ...) like ``x``, at time ``t`` (a number)."""
        ab = self.alpha_bar(t)
        x_0, eps = self._read(x, t, ab)
        if self.threshold_x0 is not None:
            x_0 = self.threshold_x0(x_0)
        if self.clip_x0:
            x_0 = x_0.clamp(-1, 1)
        if self.clip_x0 or self.threshold_x0 is not None:
            eps = eps_from_x0(x, x_0, ab)
        return x_0, eps


class VPDenoiser(Denoiser):
    """A network trained on the discrete timesteps of ``schedule`` (notebooks 03-05).

    Times are ints 0..T-1; the network is called with them as a (B,) int64 tensor.
    ``prediction_type``: "epsilon", "sample" or "v_prediction" (``dlcourse.parameterization``).
    """

    prediction_types = PREDICTION_TYPES

    def __init__(self, model, schedule: NoiseSchedule, *, prediction_type: str = "epsilon", cond=None,
                 guidance_scale: float = 1.0, clip_x0: bool = False, threshold_x0=None):
        super().__init__(model, prediction_type=prediction_type, cond=cond, guidance_scale=guidance_scale,
                         clip_x0=clip_x0, threshold_x0=threshold_x0)
        self.schedule = check_schedule("schedule", schedule)
        self._alphas_cumprod = schedule.alphas_cumprod.double().cpu().tolist()

    def alpha_bar(self, t) -> float:
        return self._alphas_cumprod[int(t)]

    def _read(self, x, t, ab):
        out = self.output(x, int(t))
        if self.prediction_type == "epsilon":
            return x0_from_eps(x, out, ab), out
        if self.prediction_type == "sample":
            return out, eps_from_x0(x, out, ab)
        return x0_from_v(x, out, ab), eps_from_v(x, out, ab)


class FlowDenoiser(Denoiser):
    """A rectified-flow network: ``x_t = (1 - t) x_0 + t eps``, t in [0, 1], noise at t = 1.

    The sampler's x is the variance-preserving form ``x_t / s``, ``s = sqrt((1 - t)^2 + t^2)``;
    the network sees ``x_t = s x`` and ``t * time_scale`` as a (B,) float tensor.

    Args:
        model, cond, guidance_scale, clip_x0, threshold_x0: as in ``Denoiser``.
        prediction_type: "velocity" (``v = dx_t/dt = eps - x_0``, the usual flow-matching target),
            "epsilon" or "sample".
        time_scale: multiplies t before the network sees it (1000 for a network whose time
            embedding was made for timesteps 0..999).
    """

    prediction_types = FLOW_PREDICTION_TYPES

    def __init__(self, model, *, prediction_type: str = "velocity", cond=None, guidance_scale: float = 1.0,
                 clip_x0: bool = False, time_scale: float = 1.0, threshold_x0=None):
        super().__init__(model, prediction_type=prediction_type, cond=cond, guidance_scale=guidance_scale,
                         clip_x0=clip_x0, threshold_x0=threshold_x0)
        self.time_scale = check_number("time_scale", time_scale, minimum=0.0)

    @staticmethod
    def scale(t: float) -> float:
        """``s = sqrt((1 - t)^2 + t^2)``: the flow's x_t is ``s`` times the variance-preserving x."""
        return math.hypot(1 - t, t)

    def alpha_bar(self, t) -> float:
        return ((1 - t) / self.scale(t)) ** 2

    def _read(self, x, t, ab):
        t = float(t)
        x_t = self.scale(t) * x                                       # the flow's own x_t
        return flow_to_x0_eps(self.output(x_t, t * self.time_scale), x_t, t, self.prediction_type)


def flow_times(steps: int, *, shift: float = 1.0, t_max: float = FLOW_T_MAX) -> list[float]:
    """``steps`` flow times from ``t_max`` down, evenly spaced before the shift, for a ``FlowDenoiser``.

    ``t_k = t_max (1 - k / steps)`` for k = 0 .. steps-1 (the sampler then steps to t = 0), each
    then moved by the time shift of SD3 (Esser et al. 2024, eq. 23; ``dlcourse.schedules.flow_time_shift``):
    ``t' = shift t / (1 + (shift - 1) t)``, which spends more steps at high noise for ``shift > 1``.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: expected an int >= 1, got {steps!r}")
    check_number("t_max", t_max, minimum=0.0, maximum=1.0)
    shift = check_number("shift", shift, minimum=1e-6)
    ts = [t_max * (1 - k / steps) for k in range(steps)]
    return [shift * t / (1 + (shift - 1) * t) for t in ts]


def vp_times(schedule: NoiseSchedule, steps: int | None = None, spacing: str = "linspace") -> list[int]:
    """The timesteps a sampler visits for a ``VPDenoiser``, decreasing (``timesteps_for``, reversed)."""
    from .spacing import timesteps_for

    return timesteps_for(schedule, steps, spacing).flip(0).tolist()


def check_times(denoiser: Denoiser, times) -> list:
    """``times`` as a list, checked: at least one, strictly decreasing, each a valid time of ``denoiser``."""
    if not isinstance(denoiser, Denoiser):
        raise TypeError(f"denoiser: expected a Denoiser (VPDenoiser, FlowDenoiser), got {type(denoiser).__name__}")
    times = times.tolist() if isinstance(times, torch.Tensor) else list(times)
    if not times:
        raise ValueError("times: expected at least one time to visit, got none")
    if any(b >= a for a, b in zip(times, times[1:])):
        raise ValueError(f"times: expected strictly decreasing times (noisy first), got {times[:6]}...")
    if isinstance(denoiser, VPDenoiser):
        T = denoiser.schedule.T
        if any(not float(t).is_integer() or not 0 <= t < T for t in times):
            raise ValueError(f"times: expected integer timesteps in 0..{T - 1}, got {times[:6]}...")
    elif any(not 0 < t < 1 for t in times):
        raise ValueError(f"times: expected flow times in (0, 1) (t = 1 is pure noise: start at {FLOW_T_MAX}), "
                         f"got values from {min(times):g} to {max(times):g}")
    return times
