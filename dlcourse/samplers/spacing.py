"""Which timesteps a sampler visits, and the schedule restricted to them.

A sampler with ``steps`` model calls visits ``steps`` of the ``T`` training
timesteps, from the largest down, and then steps to clean data (alpha_bar = 1).
How the ``steps`` are chosen is the *spacing*; the three names are diffusers'
``timestep_spacing`` values (Lin et al. 2024, "Common diffusion noise schedules
and sample steps are flawed", Table 2), and "quadratic" is the DDIM paper's
choice for CIFAR-10 (Song et al. 2021, appendix D). For T = 1000 and 10 steps:

    "linspace"   evenly from 0 to T-1, rounded:     0, 111, 222, ..., 888, 999
    "leading"    multiples of T // steps:            0, 100, 200, ..., 800, 900
    "trailing"   counted back from T-1 by T / steps:  99, 199, 299, ..., 899, 999
    "quadratic"  (T-1) (i / (steps-1))^2, rounded:     0, 12, 49, 111, ..., 790, 999

"quadratic" spends more of the steps at low noise, where the fine detail is
decided, and fewer at middle and high noise, where the layout is; for the shapes
U-Net that made DPM-Solver++(2M) at 20 steps worse (``bench/README.md``).

"leading" never starts at T-1, so the first step sees less noise than the model
was trained to remove (Stable Diffusion 1.x adds 1 to every step, its
``steps_offset``; not done here). "trailing" always starts at T-1 and its last
visited step is ``T / steps - 1``, not 0.
"""

from __future__ import annotations

import torch

from ..schedules import NoiseSchedule
from ..validation import check_choice, check_positive

SPACINGS = ("linspace", "leading", "trailing", "quadratic")


def timesteps_for(schedule: NoiseSchedule, steps: int | None = None, spacing: str = "linspace") -> torch.Tensor:
    """The ``steps`` timesteps a sampler visits, increasing (all T if ``steps`` is None).

    Args:
        schedule: the schedule the model was trained with (only its T is used).
        steps: number of timesteps, 1..T; None for all T.
        spacing: "linspace", "leading", "trailing" or "quadratic" (module docstring).

    Returns:
        (steps,) int64 tensor of distinct timesteps in 0..T-1. With "linspace" and
        "trailing" and "quadratic" the last one is T-1, so sampling starts from
        (almost) pure noise; "linspace" and "quadratic" with one step give [T-1]
        (NumPy's ``linspace`` would give [0]).
    """
    check_choice("spacing", spacing, SPACINGS)
    T = schedule.T
    if steps is None:
        return torch.arange(T)
    check_positive("steps", steps, integer=True)
    if steps > T:
        raise ValueError(f"steps: expected at most the schedule's T = {T}, got {steps}")
    if spacing in ("linspace", "quadratic"):
        if steps == 1:
            return torch.tensor([T - 1])
        u = torch.linspace(0, 1, steps, dtype=torch.float64)
        t = ((T - 1) * (u if spacing == "linspace" else u.square())).round().long()
        if spacing == "quadratic":                # near t = 0 the squares are less than 1 apart
            t = torch.maximum(t, torch.arange(steps))
        return t
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
