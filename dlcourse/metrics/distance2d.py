"""How far a set of generated 2-D points is from the data: the energy distance.

For point sets x (N, 2) and y (M, 2) the energy distance (Szekely & Rizzo 2013) is

    D(x, y) = 2 mean|x_i - y_j| - mean|x_i - x_k| - mean|y_j - y_l|

with |.| the Euclidean length and every mean over all pairs (the "V-statistic", so
each set's own pairs include i = k). It needs no bandwidth or other setting, it is
0 for a set against itself, symmetric, never negative, and for two distributions
it is 0 only when they are equal.

**Its reference value.** Two independent samples of the *same* distribution are not
at distance 0: averaging the formula over draws gives exactly

    E[D] = delta * (1/N + 1/M),     delta = E|X - X'| (two independent data points),

so at N = M = 1000 on the unit-scale toys (delta ~ 1.8) the floor is ~0.0036. That is
what ``reference_distance`` measures. A sampler is good when its distance to the data
is close to this floor; a Gaussian with the data's mean and covariance is 5-15x above
it at N = 1000 and 12-30x at N = 2000 (measured on the four toys).

**Its spread.** A single distance is noisy: between two samples of the same toy its
standard deviation is ~0.7 of its mean, at any N (both scale as 1/N). Measured over
200 pairs at N = 1000, 5-10% of draws exceed twice the mean floor and ~2% exceed
three times it. So a perfect sampler fails "within 2x of the floor" now and then;
compare against the mean floor of several pairs (``repeats``) and allow ~3x, or look
at the quantiles of ``reference_distances``.
"""

from __future__ import annotations

import torch

from ..data import make_toy
from ..validation import check_positive, check_tensor


def _mean_pairwise_distance(a: torch.Tensor, b: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """mean_{i, j} |a_i - b_j| for a (N, D) and b (M, D), in row chunks to bound memory."""
    total = torch.zeros((), dtype=a.dtype, device=a.device)
    for i in range(0, a.shape[0], chunk):
        total = total + torch.cdist(a[i:i + chunk], b).sum()         # (chunk, M) distances
    return total / (a.shape[0] * b.shape[0])


def sample_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """Energy distance between two point sets (see the module docstring).

    Args:
        x: (N, D) points, e.g. generated samples.
        y: (M, D) points, e.g. data. Computed in float64 on ``x``'s device.

    Returns:
        D(x, y) >= 0 as a float; 0 when x and y are the same set.
    """
    check_tensor("x", x, ndim=2, floating=True)
    check_tensor("y", y, ndim=2, floating=True)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y: expected the same number of coordinates, got {x.shape[1]} and {y.shape[1]}")
    x = x.to(torch.float64)
    y = y.to(device=x.device, dtype=torch.float64)
    d = 2 * _mean_pairwise_distance(x, y) - _mean_pairwise_distance(x, x) - _mean_pairwise_distance(y, y)
    return max(float(d), 0.0)                                         # >= 0 up to rounding


def reference_distances(toy_name: str, n: int, seed: int = 0, *, repeats: int = 8) -> torch.Tensor:
    """``repeats`` distances between pairs of independent samples of a toy, each of size ``n``.

    Pair k uses ``make_toy(toy_name, n, seed=s)`` with s = 2 (seed * repeats + k) and
    s + 1, so different ``seed`` values never share a sample.

    Returns:
        (repeats,) float64 tensor; its mean is the floor, its quantiles show the spread.
    """
    check_positive("repeats", repeats, integer=True)
    base = 2 * seed * repeats
    return torch.tensor([sample_distance(make_toy(toy_name, n, seed=base + 2 * k),
                                         make_toy(toy_name, n, seed=base + 2 * k + 1))
                         for k in range(repeats)], dtype=torch.float64)


def reference_distance(toy_name: str, n: int, seed: int = 0, *, repeats: int = 8) -> float:
    """The floor: the mean energy distance between two independent size-``n`` samples of a toy.

    Compare ``sample_distance(samples, make_toy(toy_name, n))`` with it, for the same
    ``n``. Its expected value is ``delta * 2 / n`` (module docstring); averaging
    ``repeats`` pairs makes it steadier than a single draw.
    """
    return float(reference_distances(toy_name, n, seed, repeats=repeats).mean())
