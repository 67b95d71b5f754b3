"""Noise schedules: how much noise the forward process adds at each step.

A schedule is a frozen dataclass of precomputed 1-D tensors of length ``T``,
indexed by the discrete timestep ``t = 0 .. T-1`` as in diffusers: ``betas[t]``
is the variance added by step ``t`` and ``alphas_cumprod[t]`` (the papers'
``alpha_bar``) the signal kept after it, so ``x_t ~ N(sqrt(alpha_bar_t) x_0,
(1 - alpha_bar_t) I)``. ``x_0`` is clean data; ``t = T-1`` is (almost) pure noise.
(The DDPM paper counts steps 1..T; its step ``t`` is our index ``t - 1``.)

Named constructors:
    linear_schedule(T)   # Ho et al. 2020: betas from 1e-4 to 0.02
    cosine_schedule(T)   # Nichol & Dhariwal 2021, eq. 17
    shift_schedule(s, k) # shift log-SNR by -2 log k, as SD3 does for resolution
The learned, VDM-style schedule is in ``dlcourse.learned_schedule``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import torch

from .validation import check_choice, check_positive, check_tensor


@dataclass(frozen=True)
class NoiseSchedule:
    """Precomputed per-timestep quantities of a discrete noise schedule.

    Attributes:
        betas: (T,) variance added at each step, in (0, 1).
        name: a label for plots ("linear", "cosine", ...).
        alphas: (T,) ``1 - betas``.
        alphas_cumprod: (T,) ``alpha_bar_t = prod_{s<=t} alphas[s]``.
        alphas_cumprod_prev: (T,) ``alpha_bar_{t-1}``, with 1 at t = 0.
        log_snr: (T,) ``log(alpha_bar_t / (1 - alpha_bar_t))``.
        posterior_variance: (T,) ``beta_tilde_t`` of q(x_{t-1} | x_t, x_0).
        posterior_mean_coef1, posterior_mean_coef2: (T,) the weights of x_0 and
            x_t in that posterior's mean (see ``dlcourse.forward.q_posterior``).
    """

    betas: torch.Tensor
    name: str = "custom"
    alphas: torch.Tensor = field(init=False, repr=False)
    alphas_cumprod: torch.Tensor = field(init=False, repr=False)
    alphas_cumprod_prev: torch.Tensor = field(init=False, repr=False)
    log_snr: torch.Tensor = field(init=False, repr=False)
    posterior_variance: torch.Tensor = field(init=False, repr=False)
    posterior_mean_coef1: torch.Tensor = field(init=False, repr=False)
    posterior_mean_coef2: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self):
        betas = check_tensor("betas", self.betas, ndim=1, floating=True)
        if betas.numel() == 0:
            raise ValueError("betas: expected at least one timestep, got an empty tensor")
        if not bool(((betas > 0) & (betas < 1)).all()):
            raise ValueError(f"betas: expected values in (0, 1), got values from "
                             f"{float(betas.min()):.4g} to {float(betas.max()):.4g}")
        betas = betas.detach().to(torch.float64)
        alphas = 1.0 - betas
        alphas_cumprod = torch.cumprod(alphas, dim=0)
        prev = torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod[:-1]])
        # Computed in float64, stored in float32: the default dtype of models.
        set_ = object.__setattr__
        set_(self, "betas", betas.float())
        set_(self, "alphas", alphas.float())
        set_(self, "alphas_cumprod", alphas_cumprod.float())
        set_(self, "alphas_cumprod_prev", prev.float())
        set_(self, "log_snr", (alphas_cumprod.log() - (-alphas_cumprod).log1p()).float())
        # Ho et al. 2020, eq. 7, in float64: 1 - alpha_bar_t is tiny at small t
        set_(self, "posterior_variance", ((1 - prev) / (1 - alphas_cumprod) * betas).float())
        set_(self, "posterior_mean_coef1", (prev.sqrt() * betas / (1 - alphas_cumprod)).float())
        set_(self, "posterior_mean_coef2", (alphas.sqrt() * (1 - prev) / (1 - alphas_cumprod)).float())

    @property
    def T(self) -> int:
        """Number of timesteps."""
        return self.betas.numel()

    @property
    def snr(self) -> torch.Tensor:
        """(T,) signal-to-noise ratio ``alpha_bar_t / (1 - alpha_bar_t)``."""
        return self.log_snr.exp()

    def to(self, device) -> "NoiseSchedule":
        """The same schedule with every tensor moved to ``device``, values unchanged.

        The tensors are moved, not recomputed: recomputing from the stored float32 betas
        would lose the float64 precision they were computed with.
        """
        moved = object.__new__(NoiseSchedule)
        for f in fields(self):
            value = getattr(self, f.name)
            object.__setattr__(moved, f.name, value.to(device) if isinstance(value, torch.Tensor) else value)
        return moved

    @classmethod
    def from_alphas_cumprod(cls, alphas_cumprod: torch.Tensor, name: str = "custom",
                            max_beta: float = 0.999) -> "NoiseSchedule":
        """Build a schedule from ``alpha_bar_t``, t = 0..T-1 (decreasing, in (0, 1]).

        ``beta_t = 1 - alpha_bar_t / alpha_bar_{t-1}``, clipped to ``max_beta`` so
        the last steps stay well defined (Nichol & Dhariwal 2021, section 3.2).
        """
        ab = check_tensor("alphas_cumprod", alphas_cumprod, ndim=1, floating=True).double()
        prev = torch.cat([ab.new_ones(1), ab[:-1]])
        betas = (1.0 - ab / prev).clamp(min=1e-12, max=max_beta)
        return cls(betas, name=name)


def linear_schedule(T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> NoiseSchedule:
    """DDPM's linear schedule (Ho et al. 2020): betas evenly spaced from 1e-4 to 0.02.

    The endpoints are given for T = 1000 and scaled by 1000 / T for other T, so a
    shorter chain still ends in (almost) pure noise (as in improved DDPM's code).
    """
    check_positive("T", T, integer=True)
    scale = 1000.0 / T
    betas = torch.linspace(beta_start * scale, beta_end * scale, T, dtype=torch.float64)
    return NoiseSchedule(betas.clamp(max=0.999), name="linear")


def cosine_alpha_bar(u: torch.Tensor, s: float = 0.008) -> torch.Tensor:
    """The cosine schedule's ``alpha_bar`` at continuous time ``u`` in [0, 1].

    ``f(u) = cos^2(pi/2 * (u + s) / (1 + s))`` and ``alpha_bar(u) = f(u) / f(0)``
    (Nichol & Dhariwal 2021, eq. 17).
    """
    f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    f0 = math.cos(s / (1 + s) * math.pi / 2) ** 2
    return f / f0


def cosine_schedule(T: int = 1000, s: float = 0.008) -> NoiseSchedule:
    """Improved DDPM's cosine schedule: ``alpha_bar_t = f((t+1)/T) / f(0)``.

    It destroys information more slowly than the linear schedule in the middle of
    the chain, so the image keeps its structure for longer.
    """
    check_positive("T", T, integer=True)
    u = torch.arange(1, T + 1, dtype=torch.float64) / T
    return NoiseSchedule.from_alphas_cumprod(cosine_alpha_bar(u, s), name="cosine")


def shift_schedule(schedule: NoiseSchedule, shift: float) -> NoiseSchedule:
    """Shift a schedule's log-SNR by ``-2 log(shift)`` at every timestep.

    An image with ``k`` times the pixels per side keeps more signal at the same
    noise level, because neighbouring pixels average the noise away; SD3 and Flux
    compensate by shifting to lower SNR with ``shift = k`` (Esser et al. 2024, sec. 5.3.2).
    ``shift > 1`` adds noise sooner; ``shift = 1`` changes nothing.
    """
    check_positive("shift", shift)
    log_snr = schedule.log_snr.double() - 2.0 * math.log(shift)
    return NoiseSchedule.from_alphas_cumprod(torch.sigmoid(log_snr), name=f"{schedule.name} (shift {shift:g})")


def flow_time_shift(t: torch.Tensor, shift: float) -> torch.Tensor:
    """The same shift for rectified-flow time ``t`` in [0, 1] (noise at t = 1).

    ``t' = shift * t / (1 + (shift - 1) t)``, which lowers ``log SNR = 2 log((1-t)/t)``
    by exactly ``2 log(shift)``.
    """
    check_positive("shift", shift)
    return shift * t / (1 + (shift - 1) * t)


SCHEDULES = {"linear": linear_schedule, "cosine": cosine_schedule}


def get_schedule(name: str, T: int = 1000, **kwargs) -> NoiseSchedule:
    """The schedule called ``name`` ("linear" or "cosine") with ``T`` steps."""
    check_choice("name", name, SCHEDULES)
    return SCHEDULES[name](T, **kwargs)
