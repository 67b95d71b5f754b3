"""The score view: grad_x log p(x), Langevin dynamics and annealed Langevin (notebook 09).

The *score* of a density p is the vector field ``s(x) = grad_x log p(x)``: at every point,
the direction in which the density grows fastest. For data noised by the forward process,
``x_t = sqrt(ab) x_0 + sqrt(1 - ab) eps``, the score of q(x_t) is the average of
``-eps / sqrt(1 - ab)`` over the x_0 that could have made x_t (Vincent 2011), so a network
trained to predict eps *is* a score model::

    score = -eps / sqrt(1 - ab)                  (score_from_eps, in x_t's coordinates)
    score = -eps / sigma,  sigma^2 = (1 - ab) / ab   (the same, for x_t / sqrt(ab): model_score)

Sampling with a score only (Song & Ermon 2019):

    langevin_step       x <- x + (step / 2) s(x) + sqrt(step) z,  z ~ N(0, I)
    langevin            many such steps with one score
    annealed_langevin   Algorithm 1: the steps above at decreasing noise levels sigma_1 > ... > sigma_L,
                        with step_i = step_size * sigma_i^2 / sigma_L^2

The reverse SDE and its probability-flow ODE (Song et al. 2021) need no new code here:
``dlcourse.samplers.sample_ddpm`` is a discretised reverse SDE, ``sample_ddim`` (eta = 0)
and ``sample_euler`` are discretised probability-flow ODEs.

For checking all of it, the score of a Gaussian mixture is known exactly, at every noise
level (``GaussianMixture``): noising a mixture of Gaussians gives a mixture of Gaussians.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .device import model_device
from .parameterization import eps_from_score, score_from_eps, sigma_from_alpha_bar
from .samplers.spacing import nearest_timesteps, schedule_sigmas
from .schedules import NoiseSchedule
from .tensors import eval_mode, noise_like, to_device
from .validation import check_number, check_positive, check_schedule, check_tensor

__all__ = [
    "GaussianMixture", "annealed_langevin", "eight_gaussians_mixture", "eps_from_score", "gaussian_mixture_log_prob",
    "gaussian_mixture_score", "langevin", "langevin_step", "model_score", "noise_levels", "score_from_eps",
]


# ---------------------------------------------------------------------------------------
# The exact score of a Gaussian mixture
# ---------------------------------------------------------------------------------------

def _check_mixture(x, means, stds, weights):
    check_tensor("x", x, ndim=2, floating=True)
    check_tensor("means", means, ndim=2, floating=True)
    K, D = means.shape
    if x.shape[1] != D:
        raise ValueError(f"x: expected points (B, {D}) like the means (K, D) = ({K}, {D}), got shape {tuple(x.shape)}")
    check_tensor("stds", stds, shape=(K,), floating=True)
    check_tensor("weights", weights, shape=(K,), floating=True)
    if not bool((stds > 0).all()):
        raise ValueError(f"stds: expected positive standard deviations, got {stds.tolist()}")
    if not bool((weights > 0).all()) or abs(float(weights.sum()) - 1) > 1e-5:
        raise ValueError(f"weights: expected positive weights that sum to 1, got {weights.tolist()}")


def _log_terms(x, means, stds, weights):
    """(B, K): log w_k + log N(x; mu_k, std_k^2 I), and (K,) variances."""
    D = means.shape[1]
    var = stds.to(x) ** 2                                                  # (K,)
    sq = torch.cdist(x, means.to(x)) ** 2                                  # (B, K) |x - mu_k|^2
    return weights.to(x).log() - 0.5 * D * torch.log(2 * math.pi * var) - sq / (2 * var), var


def gaussian_mixture_log_prob(x: torch.Tensor, means: torch.Tensor, stds: torch.Tensor,
                              weights: torch.Tensor) -> torch.Tensor:
    """``log p(x)`` for ``p = sum_k w_k N(mu_k, std_k^2 I)``.

    Args:
        x: (B, D) points.
        means: (K, D) the components' means.
        stds: (K,) their standard deviations (isotropic).
        weights: (K,) positive, summing to 1.

    Returns:
        (B,) log densities, in x's dtype.
    """
    _check_mixture(x, means, stds, weights)
    terms, _ = _log_terms(x, means, stds, weights)
    return torch.logsumexp(terms, dim=1)


def gaussian_mixture_score(x: torch.Tensor, means: torch.Tensor, stds: torch.Tensor,
                           weights: torch.Tensor) -> torch.Tensor:
    """The exact score ``grad_x log p(x) = sum_k r_k(x) (mu_k - x) / std_k^2``.

    ``r_k(x)`` is the posterior probability that x came from component k (a softmax of the
    log terms), so the score points at the components' means, weighted by how likely each is.

    Args:
        x, means, stds, weights: as in :func:`gaussian_mixture_log_prob`.

    Returns:
        (B, D) scores, in x's dtype.
    """
    _check_mixture(x, means, stds, weights)
    terms, var = _log_terms(x, means, stds, weights)
    r = torch.softmax(terms, dim=1)                                        # (B, K) responsibilities
    pull = (means.to(x)[None] - x[:, None]) / var[None, :, None]           # (B, K, D)
    return (r[..., None] * pull).sum(1)


@dataclass(frozen=True)
class GaussianMixture:
    """An isotropic Gaussian mixture ``sum_k w_k N(mu_k, std_k^2 I)`` with its exact score.

    Attributes:
        means: (K, D).
        stds: (K,).
        weights: (K,), positive, summing to 1.
    """

    means: torch.Tensor
    stds: torch.Tensor
    weights: torch.Tensor

    def __post_init__(self):
        _check_mixture(self.means[:1], self.means, self.stds, self.weights)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B,) log densities."""
        return gaussian_mixture_log_prob(x, self.means, self.stds, self.weights)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, D) exact scores."""
        return gaussian_mixture_score(x, self.means, self.stds, self.weights)

    def component(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B,) int64: the most probable component of each point."""
        _check_mixture(x, self.means, self.stds, self.weights)
        return _log_terms(x, self.means, self.stds, self.weights)[0].argmax(1)

    def smoothed(self, sigma: float) -> "GaussianMixture":
        """The law of ``x + sigma z`` (variance exploding): variances ``std_k^2 + sigma^2``."""
        sigma = check_number("sigma", sigma, minimum=0)
        return GaussianMixture(self.means, (self.stds ** 2 + sigma ** 2).sqrt(), self.weights)

    def noised(self, alpha_bar: float) -> "GaussianMixture":
        """The law of ``x_t = sqrt(ab) x_0 + sqrt(1 - ab) eps`` (variance preserving)."""
        alpha_bar = check_number("alpha_bar", alpha_bar, above=0, maximum=1)
        return GaussianMixture(math.sqrt(alpha_bar) * self.means,
                               (alpha_bar * self.stds ** 2 + 1 - alpha_bar).sqrt(), self.weights)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(n, D) points drawn from the mixture."""
        check_positive("n", n, integer=True)
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)    # (n,)
        z = torch.randn(n, self.means.shape[1], generator=generator, dtype=self.means.dtype)
        return self.means[k] + self.stds[k, None] * z


def eight_gaussians_mixture(weights=None, std: float = 0.1) -> GaussianMixture:
    """The eight Gaussians of ``make_toy("eight_gaussians")``, as a mixture with an exact score.

    Means evenly spaced on a circle of radius ``sqrt(2 (1 - std^2))`` from angle 0 (unit
    variance per axis with equal weights); ``weights`` (8,) default to 1/8 each and are
    normalised to sum to 1.
    """
    radius = math.sqrt(2 * (1 - std ** 2))
    angle = torch.arange(8, dtype=torch.float32) * (math.pi / 4)
    means = radius * torch.stack([angle.cos(), angle.sin()], dim=1)        # (8, 2)
    w = torch.full((8,), 1 / 8) if weights is None else torch.as_tensor(weights, dtype=torch.float32)
    check_tensor("weights", w, shape=(8,), floating=True)
    if not bool((w > 0).all()):
        raise ValueError(f"weights: expected 8 positive weights, got {w.tolist()}")
    return GaussianMixture(means, torch.full((8,), float(std)), w / w.sum())


# ---------------------------------------------------------------------------------------
# Langevin dynamics
# ---------------------------------------------------------------------------------------

def langevin_step(x: torch.Tensor, score: torch.Tensor, step_size: float, z: torch.Tensor) -> torch.Tensor:
    """One step of (unadjusted) Langevin dynamics: ``x + (step / 2) score + sqrt(step) z``.

    Song & Ermon 2019, eq. 4. For a small step and many steps, x is distributed as the
    density whose score this is, from any start.

    Args:
        x: (B, ...) current points.
        score: (B, ...) the score at x.
        step_size: the step (the variance of the noise added), > 0.
        z: (B, ...) standard normal noise.

    Returns:
        (B, ...) the points after the step.
    """
    check_tensor("x", x, floating=True)
    check_tensor("score", score, shape=tuple(x.shape))
    check_tensor("z", z, shape=tuple(x.shape))
    check_positive("step_size", step_size)
    return x + (step_size / 2) * score + math.sqrt(step_size) * z


def langevin(score_fn, x: torch.Tensor, step_size: float, n_steps: int, *, generator: torch.Generator | None = None,
             callback=None, progress: bool = True) -> torch.Tensor:
    """Run ``n_steps`` Langevin steps with one score function.

    Args:
        score_fn: ``score_fn(x) -> (B, ...)``, the score at x.
        x: (B, ...) starting points; their device and dtype are used throughout.
        step_size: the step, > 0.
        n_steps: number of steps, >= 1.
        generator: torch.Generator for the noise (one draw shaped like x per step).
        callback: called as ``callback(k, x)`` after step k = 0 .. n_steps-1.
        progress: show a progress bar.

    Returns:
        (B, ...) the points after the last step.
    """
    check_tensor("x", x, floating=True)
    check_positive("step_size", step_size)
    check_positive("n_steps", n_steps, integer=True)
    with torch.no_grad():
        for k in tqdm(range(n_steps), disable=not progress, desc="Langevin", leave=False):
            x = langevin_step(x, score_fn(x).to(x), step_size, noise_like(x, generator))
            if callback is not None:
                callback(k, x)
    return x


def _check_sigmas(sigmas) -> torch.Tensor:
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64).detach().cpu()
    if sigmas.ndim != 1 or sigmas.numel() == 0:
        raise ValueError(f"sigmas: expected a 1-D sequence of noise levels, got shape {tuple(sigmas.shape)}")
    if not bool((sigmas > 0).all()):
        raise ValueError(f"sigmas: expected positive noise levels, got {sigmas.tolist()}")
    if sigmas.numel() > 1 and not bool((sigmas[1:] < sigmas[:-1]).all()):
        raise ValueError(f"sigmas: expected strictly decreasing noise levels (largest first), got {sigmas.tolist()}")
    return sigmas


def annealed_langevin(score_fn, x: torch.Tensor, sigmas, step_size: float, steps_per_level: int, *,
                      generator: torch.Generator | None = None, callback=None, progress: bool = True) -> torch.Tensor:
    """Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1).

    For each noise level sigma_i, largest first, ``steps_per_level`` Langevin steps with the
    score of the data smoothed by that noise, ``score_fn(x, sigma_i)``, and the step
    ``step_i = step_size * sigma_i^2 / sigma_L^2`` (sigma_L the smallest level), so that
    every level takes steps of the same size relative to its own spread. The noise is
    drawn level by level, step by step, one draw shaped like x each.

    Args:
        score_fn: ``score_fn(x, sigma) -> (B, ...)`` with sigma a float.
        x: (B, ...) starting points, e.g. ``sigmas[0] * randn``; device and dtype are kept.
        sigmas: (L,) strictly decreasing noise levels.
        step_size: delta_L, the step at the smallest level (Song & Ermon call it epsilon), > 0.
        steps_per_level: Langevin steps per level (their T), >= 1.
        generator: torch.Generator for the noise.
        callback: called as ``callback(i, k, sigma_i, x)`` after step k of level i.
        progress: show a progress bar over the levels.

    Returns:
        (B, ...) the points after the last step of the last level.
    """
    check_tensor("x", x, floating=True)
    sigmas = _check_sigmas(sigmas)
    check_positive("step_size", step_size)
    check_positive("steps_per_level", steps_per_level, integer=True)
    sigma_L = float(sigmas[-1])
    with torch.no_grad():
        for i in tqdm(range(len(sigmas)), disable=not progress, desc="annealed Langevin", leave=False):
            sigma = float(sigmas[i])
            step = step_size * (sigma / sigma_L) ** 2
            for k in range(steps_per_level):
                x = langevin_step(x, score_fn(x, sigma).to(x), step, noise_like(x, generator))
                if callback is not None:
                    callback(i, k, sigma, x)
    return x


# ---------------------------------------------------------------------------------------
# An eps-model as a score model at noise level sigma
# ---------------------------------------------------------------------------------------

def noise_levels(schedule: NoiseSchedule, n: int, sigma_max: float, sigma_min: float):
    """``n`` of the schedule's own noise levels, close to a geometric sequence, largest first.

    In the variance-exploding view, timestep t has noise level ``sigma_t = sqrt((1 - ab_t) / ab_t)``
    (``sigma_from_alpha_bar``). This picks, for each of ``n`` values geometrically spaced from
    ``sigma_max`` to ``sigma_min``, the timestep whose sigma_t is nearest in log, so that
    :func:`model_score` evaluates the model exactly at a level it was trained on.

    Returns:
        ``(timesteps, sigmas)``: (m,) int64 decreasing and (m,) float64 strictly decreasing,
        m <= n (repeated timesteps are dropped).
    """
    check_schedule("schedule", schedule)
    check_positive("n", n, integer=True)
    check_positive("sigma_min", sigma_min)
    if not sigma_max > sigma_min:
        raise ValueError(f"sigma_max: expected a value above sigma_min = {sigma_min}, got {sigma_max!r}")
    targets = torch.logspace(math.log10(sigma_max), math.log10(sigma_min), n, dtype=torch.float64)
    t = torch.unique(nearest_timesteps(schedule, targets)).flip(0)        # decreasing, no repeats
    return t, schedule_sigmas(schedule)[t]


def model_score(model, schedule: NoiseSchedule, *, cond=None):
    """An eps-model read as a score model in the variance-exploding view: ``score_fn(x, sigma)``.

    For ``x = x_t / sqrt(ab_t)`` (data plus noise of standard deviation
    ``sigma_t = sigma_from_alpha_bar(ab_t)``), the score is ``-eps / sigma_t``. ``score_fn``
    picks the timestep whose sigma_t is nearest to ``sigma`` in log
    (``dlcourse.samplers.spacing.nearest_timesteps``; use :func:`noise_levels` to ask for
    levels the schedule has), calls the model on ``x_t = sqrt(ab_t) x`` and returns
    ``-eps / sigma_t``.

    Args:
        model: ``model(x_t, t, cond)`` predicting eps, trained with ``schedule``.
        schedule: the schedule it was trained with.
        cond: conditioning passed to the model (a label tensor is moved to the model's device).

    Returns:
        ``score_fn(x, sigma) -> (B, ...)`` for x (B, ...), run without gradients in eval mode.
        The model runs on its own device (``dlcourse.device.model_device``); the score comes
        back on x's device, in x's dtype.
    """
    check_schedule("schedule", schedule)
    alphas_cumprod = schedule.alphas_cumprod.double().cpu()                # (T,)

    @torch.no_grad()
    def score_fn(x: torch.Tensor, sigma: float) -> torch.Tensor:
        check_tensor("x", x, floating=True)
        check_positive("sigma", sigma)
        t = int(nearest_timesteps(schedule, torch.tensor([float(sigma)]))[0])
        ab = float(alphas_cumprod[t])
        device = model_device(model)
        c = to_device(cond, device)
        with eval_mode(model):
            eps = model((math.sqrt(ab) * x).to(device), torch.full((x.shape[0],), t, device=device), c)
        return -eps.to(x) / float(sigma_from_alpha_bar(ab))

    return score_fn
