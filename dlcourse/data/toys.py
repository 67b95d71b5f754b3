"""Two-dimensional toy distributions for seeing densities, scores and sampling paths.

Every toy is centred and scaled so that each axis has roughly unit standard deviation,
which is the scale the noise ``eps ~ N(0, I)`` lives on. The points are drawn from a
local ``torch.Generator``, so the same ``seed`` always gives the same points and the
global random state is left untouched.

Example:
    >>> x_0 = make_toy("eight_gaussians", 1000, seed=0)   # (1000, 2) float32
"""

from __future__ import annotations

import math

import torch

from ..validation import check_choice, check_int, check_positive

TOY_NAMES = ("two_moons", "swiss_roll", "eight_gaussians", "checkerboard")


def _two_moons(n: int, g: torch.Generator, noise: float = 0.08) -> torch.Tensor:
    """Two interleaved half circles of radius 1 (upper one at the origin)."""
    t = math.pi * torch.rand(n, generator=g)
    lower = torch.rand(n, generator=g) < 0.5                       # which moon
    x = torch.where(lower, 1.0 - torch.cos(t), torch.cos(t))
    y = torch.where(lower, 0.5 - torch.sin(t), torch.sin(t))
    points = torch.stack([x, y], dim=1) + noise * torch.randn(n, 2, generator=g)
    # Exact moments for t ~ U[0, pi]: E[x] = 1/2, Var[x] = 1/2 + 1/4;
    # E[y] = 1/4, Var[y] = (1/2 - 4/pi^2) + (2/pi - 1/4)^2; plus the noise.
    mean = torch.tensor([0.5, 0.25])
    var_y = 0.5 - 4 / math.pi**2 + (2 / math.pi - 0.25) ** 2
    std = torch.tensor([math.sqrt(0.75 + noise**2), math.sqrt(var_y + noise**2)])
    return (points - mean) / std


def _swiss_roll(n: int, g: torch.Generator, noise: float = 0.05) -> torch.Tensor:
    """The spiral (t cos t, t sin t) for t in [1.5 pi, 4.5 pi]."""
    t = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=g))
    points = torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1)
    # E[t cos t] = 2 and E[t sin t] = 2 / (3 pi) exactly; both axes have std ~6.8.
    points = (points - torch.tensor([2.0, 2 / (3 * math.pi)])) / 6.8
    return points + noise * torch.randn(n, 2, generator=g)


def _eight_gaussians(n: int, g: torch.Generator, sigma: float = 0.1) -> torch.Tensor:
    """Eight Gaussians of std ``sigma`` evenly spaced on a circle.

    Per axis the variance is radius^2 / 2 + sigma^2, so radius = sqrt(2 (1 - sigma^2))
    gives exactly unit variance.
    """
    radius = math.sqrt(2 * (1 - sigma**2))
    k = torch.randint(8, (n,), generator=g)                        # which Gaussian
    angle = k * (math.pi / 4)
    centres = radius * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    return centres + sigma * torch.randn(n, 2, generator=g)


def _checkerboard(n: int, g: torch.Generator) -> torch.Tensor:
    """Uniform on the "black" squares of a 4 x 4 board covering [-sqrt 3, sqrt 3]^2.

    Square (i, j) (column i, row j, counted from the lower left) is black when
    i + j is even. Each column holds two black squares, so both marginals are
    uniform on [-sqrt 3, sqrt 3], which has unit variance.
    """
    side = math.sqrt(3) / 2                                        # 4 squares span 2 sqrt 3
    col = torch.randint(4, (n,), generator=g)
    row = 2 * torch.randint(2, (n,), generator=g) + col % 2        # i + j even
    corner = torch.stack([col, row], dim=1).float() * side - math.sqrt(3)
    return corner + side * torch.rand(n, 2, generator=g)


_TOYS = {
    "two_moons": _two_moons,
    "swiss_roll": _swiss_roll,
    "eight_gaussians": _eight_gaussians,
    "checkerboard": _checkerboard,
}


def make_toy(name: str, n: int, seed: int = 0) -> torch.Tensor:
    """Draw ``n`` points from a 2-D toy distribution.

    Args:
        name: one of ``TOY_NAMES``: "two_moons", "swiss_roll", "eight_gaussians",
            "checkerboard".
        n: number of points.
        seed: seed of the local random generator; the same seed gives the same points.

    Returns:
        x_0: (n, 2) float32, roughly zero mean and unit standard deviation per axis.
    """
    check_choice("name", name, TOY_NAMES)
    check_positive("n", n, integer=True)
    check_int("seed", seed)
    g = torch.Generator().manual_seed(seed)
    return _TOYS[name](n, g).to(torch.float32)
