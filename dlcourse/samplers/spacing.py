"""Which timesteps a sampler visits, and the schedule restricted to them.

A sampler with ``steps`` model calls visits ``steps`` of the ``T`` training
timesteps, from the largest down, and then steps to clean data (alpha_bar = 1).
How the ``steps`` are chosen is the *spacing*. The first three names are diffusers'
``timestep_spacing`` values (Lin et al. 2024, "Common diffusion noise schedules
and sample steps are flawed", Table 2); "quadratic" is the DDIM paper's choice
for CIFAR-10 (Song et al. 2021, appendix D) and "reversed_quadratic" its mirror
image; "karras" takes the noise levels of Karras et al. 2022 ("Elucidating the
Design Space", eq. 5; diffusers' ``use_karras_sigmas``). For T = 1000 and 10 steps
(the cosine schedule for "karras" and "logsnr"):

    "linspace"            evenly from 0 to T-1, rounded:      0, 111, 222, ..., 888, 999
    "leading"             multiples of T // steps:             0, 100, 200, ..., 800, 900
    "trailing"            counted back from T-1 by T / steps:   99, 199, 299, ..., 899, 999
    "quadratic"           (T-1) u^2, u = i / (steps-1):         0, 12, 49, 111, ..., 790, 999
    "reversed_quadratic"  (T-1) (1 - (1-u)^2):                  0, 210, 395, 555, ..., 987, 999
    "karras"              evenly in sigma^(1/7), sigma <= 80:   0, 20, 117, 377, ..., 984, 999
    "logsnr"              evenly in lambda = log(ab / (1 - ab)):  0, 14, 105, 476, ..., 998, 999

Where the steps go matters most at high noise with the cosine schedule, whose
betas are clipped at 0.999 near t = T: its log-SNR
``lambda = log(ab / (1 - ab))`` is -19.8 at t = 999 but -5.0 at
t = 946, so the first of 20 "linspace" steps spans nearly as much of lambda as
the 19 others together, with the network's x_0 guess at pure noise (about the
mean image) taken for the whole way. On the shapes U-Net about a tenth of
DPM-Solver++(2M)'s 20-step samples then end far from where the converged ODE
takes them (notebook 04, section 8).
"reversed_quadratic" crowds the steps there instead (t = 999, 996, 988, 974, ...
at 20 steps), and spaces the rest almost evenly in lambda down to about 3.5 at its
second-smallest timestep; "quadratic" does the opposite, spending the steps at low
noise, where the fine detail is decided.

"karras" spaces the noise level ``sigma = sqrt((1 - ab) / ab)`` (the noise of
``x_t / sqrt(ab)``) evenly in ``sigma^(1/rho)``, rho = 7, from ``sigma_max`` down
to the schedule's smallest sigma, and visits the timestep whose sigma is nearest
each; the first is replaced by T-1, so sampling starts from pure noise. ``sigma_max``
is Karras et al.'s 80 (t = 991 for the cosine schedule, lambda = -8.8), or the
schedule's largest sigma if that is smaller; uncapped, the cosine schedule's
20,000 would crowd the steps above t = 950. Its steps are dense at both ends and
sparse in the middle. What each spacing does to the shapes U-Net's samples is
measured in ``bench/README.md``.

"logsnr" spaces the log-SNR ``lambda`` evenly from its value at t = 0 to its value at
T-1 and visits the timestep nearest each: the DPM-Solver paper's choice for pixel-space
models (Lu et al. 2022, "DPM-Solver", sec. 3.3 and appendix D.1, "time uniform in logSNR"),
natural for a solver whose step is exact in lambda. With the cosine schedule's clipped
last betas it spends several steps above t = 946, where lambda falls from -5.0 to -19.8.

"leading" never starts at T-1, so the first step sees less noise than the model
was trained to remove (Stable Diffusion 1.x adds 1 to every step, its
``steps_offset``; not done here). "trailing" always starts at T-1 and its last
visited step is ``T / steps - 1``, not 0.
"""

from __future__ import annotations

import torch

from ..parameterization import half_log_snr, sigma_from_alpha_bar
from ..schedules import NoiseSchedule
from ..validation import check_choice, check_positive

SPACINGS = ("linspace", "leading", "trailing", "quadratic", "reversed_quadratic", "karras", "logsnr")
KARRAS_RHO = 7.0
KARRAS_SIGMA_MAX = 80.0


def _strictly_increasing(t: torch.Tensor, T: int) -> torch.Tensor:
    """A non-decreasing (steps,) int64 ``t`` in 0..T-1 made strictly increasing, moving repeats the least.

    Repeats are pushed up one at a time, then, if that passed T-1, pulled back down from the top.
    """
    t = t.tolist()
    for i in range(1, len(t)):
        t[i] = max(t[i], t[i - 1] + 1)
    t[-1] = min(t[-1], T - 1)
    for i in range(len(t) - 2, -1, -1):
        t[i] = min(t[i], t[i + 1] - 1)
    return torch.tensor(t)


def schedule_sigmas(schedule: NoiseSchedule) -> torch.Tensor:
    """(T,) float64 on the CPU: ``sigma_from_alpha_bar`` of every timestep's alpha_bar, increasing in t."""
    return sigma_from_alpha_bar(schedule.alphas_cumprod.double().cpu())


def nearest_timesteps(schedule: NoiseSchedule, sigmas: torch.Tensor) -> torch.Tensor:
    """(n,) int64: for each of the (n,) noise levels ``sigmas``, the timestep whose sigma_t is nearest in log."""
    log_sigma_t = schedule_sigmas(schedule).log()                                      # (T,)
    return (log_sigma_t[None, :] - sigmas.double().log()[:, None]).abs().argmin(dim=1)


def _karras_timesteps(schedule: NoiseSchedule, steps: int) -> torch.Tensor:
    """Increasing timesteps nearest Karras et al.'s noise levels, the last one T-1 (module docstring)."""
    sigma_t = schedule_sigmas(schedule)                                                # (T,)
    inv_rho = 1 / KARRAS_RHO
    s_max, s_min = min(float(sigma_t[-1]), KARRAS_SIGMA_MAX), float(sigma_t[0])
    u = torch.linspace(0, 1, steps, dtype=torch.float64)
    sigma = (s_min ** inv_rho + u * (s_max ** inv_rho - s_min ** inv_rho)) ** KARRAS_RHO   # increasing
    t = nearest_timesteps(schedule, sigma)
    t[-1] = schedule.T - 1
    return _strictly_increasing(t, schedule.T)


def _logsnr_timesteps(schedule: NoiseSchedule, steps: int) -> torch.Tensor:
    """Increasing timesteps nearest ``steps`` values of lambda evenly spaced from lambda_0 to lambda_{T-1}."""
    lam = half_log_snr(schedule.alphas_cumprod.double().cpu())    # lambda / 2, (T,), decreasing in t
    targets = torch.linspace(float(lam[-1]), float(lam[0]), steps, dtype=torch.float64).flip(0)   # increasing t
    t = (lam[None, :] - targets[:, None]).abs().argmin(dim=1)
    t[-1] = schedule.T - 1
    return _strictly_increasing(t, schedule.T)


def timesteps_for(schedule: NoiseSchedule, steps: int | None = None, spacing: str = "linspace") -> torch.Tensor:
    """The ``steps`` timesteps a sampler visits, increasing (all T if ``steps`` is None).

    Args:
        schedule: the schedule the model was trained with (its T; for "karras" also its alpha_bar).
        steps: number of timesteps, 1..T; None for all T.
        spacing: one of ``SPACINGS``: "linspace", "leading", "trailing", "quadratic",
            "reversed_quadratic", "karras" or "logsnr" (module docstring).

    Returns:
        (steps,) int64 tensor of distinct timesteps in 0..T-1. With every spacing
        but "leading" the last one is T-1, so sampling starts from (almost) pure
        noise. One "linspace" step gives [T-1]; diffusers' "linspace" gives [0] there
        (``np.linspace(0, T-1, 1)`` is its start). [T-1] is the one that generates: a
        single step from t = 0 would take the starting noise for nearly clean data and
        return it almost unchanged.
    """
    check_choice("spacing", spacing, SPACINGS)
    T = schedule.T
    if steps is None:
        return torch.arange(T)
    check_positive("steps", steps, integer=True)
    if steps > T:
        raise ValueError(f"steps: expected at most the schedule's T = {T}, got {steps}")
    if spacing not in ("leading", "trailing") and steps == 1:
        return torch.tensor([T - 1])
    if spacing == "karras":
        return _karras_timesteps(schedule, steps)
    if spacing == "logsnr":
        return _logsnr_timesteps(schedule, steps)
    u = torch.linspace(0, 1, steps, dtype=torch.float64)
    if spacing == "linspace":
        return ((T - 1) * u).round().long()
    if spacing == "quadratic":                    # near t = 0 the squares are less than 1 apart
        return _strictly_increasing(((T - 1) * u.square()).round().long(), T)
    if spacing == "reversed_quadratic":           # ... and here near t = T-1
        return _strictly_increasing(((T - 1) * (1 - (1 - u).square())).round().long(), T)
    if spacing == "leading":
        return torch.arange(steps) * (T // steps)
    # trailing: T - k T / steps - 1 for k = 0 .. steps-1, in increasing order
    return (torch.arange(1, steps + 1, dtype=torch.float64) * T / steps).round().long() - 1


def respace(schedule: NoiseSchedule, timesteps: torch.Tensor) -> NoiseSchedule:
    """The schedule that jumps between ``timesteps`` in one step each.

    Keeping ``alpha_bar`` at the visited steps and recomputing
    ``beta_i = 1 - alpha_bar_{tau_i} / alpha_bar_{tau_{i-1}}`` gives a shorter chain
    with the same marginals (Nichol & Dhariwal 2021, sec. 4). Index ``i`` of the
    result corresponds to timestep ``timesteps[i]`` of the original; the step back
    from index 0 lands on clean data.
    """
    return NoiseSchedule.from_alphas_cumprod(schedule.alphas_cumprod[timesteps].double(),
                                             name=f"{schedule.name} ({len(timesteps)} steps)", max_beta=1 - 1e-12)
