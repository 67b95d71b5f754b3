"""Metrics: the energy distance and its floor, the Frechet distance, entropies, the impostors."""

import math

import pytest
import torch

from dlcourse.data import TOY_NAMES, make_shapes, make_toy
from dlcourse.metrics import (blend, color_noise, entropy_bits, frechet_distance, frechet_distance_gaussians,
                              gaussian_blur, gaussian_fit, matched_noise, overlay, patch_shuffle,
                              reference_distance, reference_distances, sample_distance)
from dlcourse.metrics.distance2d import _mean_pairwise_distance


pytestmark = pytest.mark.usefixtures("one_thread")

# ---------------------------------------------------------------- 2-D energy distance


def test_energy_distance_of_point_masses_is_twice_their_gap():
    # x all at a, y all at b: 2|a - b| - 0 - 0.
    x = torch.zeros(5, 2)
    y = torch.tensor([[3.0, 4.0]]).expand(7, 2)
    assert sample_distance(x, y) == pytest.approx(10.0, abs=1e-12)


def test_energy_distance_is_zero_on_itself_and_symmetric():
    x, y = make_toy("two_moons", 500, seed=0), make_toy("checkerboard", 300, seed=1)
    assert sample_distance(x, x) < 1e-12
    assert sample_distance(x, y) == pytest.approx(sample_distance(y, x), rel=1e-12)
    assert sample_distance(x, y) > 0.03          # ~10x the floor at these sizes


@pytest.mark.parametrize("name", TOY_NAMES)
def test_floor_matches_its_expected_value_and_a_gaussian_is_far_above(name):
    # E[D] between two independent size-n samples is delta (1/n + 1/n), delta = E|X - X'|.
    delta = float(_mean_pairwise_distance(make_toy(name, 1000, seed=100).double(),
                                          make_toy(name, 1000, seed=101).double()))
    # One draw spreads widely (two moons: ~1.4 x its mean, from the balance of the moons), so
    # average 200 pairs of small samples: the mean is then within ~10% (1 sd) of delta 2 / n.
    n = 100
    floor = reference_distance(name, n, seed=0, repeats=200)
    assert 0.7 < floor / (2 * delta / n) < 1.3, (floor, 2 * delta / n)
    # Two fresh independent samples land near the floor (fixed seeds; within 3x, see distance2d).
    n = 500
    floor = reference_distance(name, n, seed=0, repeats=8)
    assert sample_distance(make_toy(name, n, seed=500), make_toy(name, n, seed=501)) < 3 * floor
    # A Gaussian with the data's mean and covariance is far above the floor (at n = 2000: 12-30x).
    n = 2000
    x = make_toy(name, n, seed=200).double()
    L = torch.linalg.cholesky(torch.cov(x.T))
    gaussian = x.mean(0) + torch.randn(n, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) @ L.T
    assert sample_distance(gaussian, make_toy(name, n, seed=300)) > 5 * (2 * delta / n)


def test_reference_distances_use_disjoint_seeds():
    a = reference_distances("two_moons", 200, seed=0, repeats=3)
    b = reference_distances("two_moons", 200, seed=1, repeats=3)
    assert a.shape == (3,) and len(set(a.tolist()) | set(b.tolist())) == 6


# ---------------------------------------------------------------- Frechet distance


def test_frechet_of_diagonal_gaussians_has_the_closed_form():
    g = torch.Generator().manual_seed(0)
    mu_a, mu_b = torch.randn(6, generator=g).double(), torch.randn(6, generator=g).double()
    sd_a, sd_b = torch.rand(6, generator=g).double() + 0.1, torch.rand(6, generator=g).double() + 0.1
    expected = float((mu_a - mu_b).square().sum() + (sd_a - sd_b).square().sum())
    got = frechet_distance_gaussians(mu_a, torch.diag(sd_a**2), mu_b, torch.diag(sd_b**2))
    assert got == pytest.approx(expected, rel=1e-10)


def test_frechet_of_full_covariances_matches_the_eigenvalues_of_the_product():
    # Independent route: Tr (S_a S_b)^1/2 = sum of sqrt(eigenvalues of S_a S_b), a non-symmetric matrix
    # whose eigenvalues are real and >= 0 (it is similar to S_a^1/2 S_b S_a^1/2).
    g = torch.Generator().manual_seed(1)
    A, B = torch.randn(5, 5, generator=g, dtype=torch.float64), torch.randn(5, 5, generator=g, dtype=torch.float64)
    cov_a, cov_b = A @ A.T + 0.1 * torch.eye(5, dtype=torch.float64), B @ B.T
    mu_a, mu_b = torch.randn(5, generator=g, dtype=torch.float64), torch.zeros(5, dtype=torch.float64)
    trace_root = torch.linalg.eigvals(cov_a @ cov_b).real.clamp(min=0).sqrt().sum()
    expected = float(mu_a.square().sum() + torch.trace(cov_a + cov_b) - 2 * trace_root)
    assert frechet_distance_gaussians(mu_a, cov_a, mu_b, cov_b) == pytest.approx(expected, rel=1e-9)
    # Symmetric in its two arguments, and invariant under a rotation of the feature space.
    assert frechet_distance_gaussians(mu_b, cov_b, mu_a, cov_a) == pytest.approx(expected, rel=1e-9)
    Q, _ = torch.linalg.qr(torch.randn(5, 5, generator=g, dtype=torch.float64))
    rotated = frechet_distance_gaussians(Q @ mu_a, Q @ cov_a @ Q.T, Q @ mu_b, Q @ cov_b @ Q.T)
    assert rotated == pytest.approx(expected, rel=1e-9)


def test_frechet_from_samples_is_zero_on_itself_and_converges_to_the_closed_form():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(300, 16, generator=g)
    assert frechet_distance(x, x) < 1e-9
    a = 1.0 + 2.0 * torch.randn(50000, 3, generator=g)                  # N(1, 4 I)
    b = 0.5 * torch.randn(50000, 3, generator=g)                        # N(0, 0.25 I)
    assert frechet_distance(a, b) == pytest.approx(3 * 1.0 + 3 * 1.5**2, rel=0.02)   # 9.75
    mu, cov = gaussian_fit(a)
    assert mu.dtype == torch.float64 and cov.shape == (3, 3)


def test_frechet_rejects_mismatched_features():
    with pytest.raises(ValueError, match="feature size"):
        frechet_distance(torch.randn(10, 3), torch.randn(10, 4))


# ---------------------------------------------------------------- entropy


@pytest.mark.parametrize("K", [2, 4, 6, 24])
def test_entropy_of_a_uniform_distribution_is_log2_k(K):
    assert entropy_bits(torch.full((K,), 7)) == pytest.approx(math.log2(K))
    assert entropy_bits(torch.tensor([5] + [0] * (K - 1))) == 0.0


# ---------------------------------------------------------------- impostors


def test_impostors_have_the_stated_statistics():
    d = make_shapes(2000, size=16, seed=3)
    noise = matched_noise(d.images, 4000, seed=0, clamp=False)
    assert (noise.mean(0) - d.images.mean(0)).abs().max() < 0.1
    assert (noise.std(0) / d.images.std(0).clamp(min=1e-3) - 1).abs().median() < 0.05
    assert matched_noise(d.images, 10, seed=0).abs().max() <= 1
    # Colour noise only uses colours found in the data; 2-px cells are constant 2 x 2 blocks.
    cells = color_noise(d.images, 8, cell=2, seed=0)
    assert torch.equal(cells[:, :, ::2, ::2], cells[:, :, 1::2, 1::2])
    data_colors = torch.unique(d.images.permute(0, 2, 3, 1).reshape(-1, 3), dim=0)
    exact = "donot_use_mm_for_euclid_dist"
    assert torch.cdist(cells.permute(0, 2, 3, 1).reshape(-1, 3), data_colors, compute_mode=exact).amin(1).max() == 0
    # Blend and overlay.
    a, b = d.images[:4], d.images[4:8]
    assert torch.allclose(blend(a, b, 0.5), (a + b) / 2)
    assert torch.equal(overlay(a, b, torch.zeros_like(d.masks[:4])), a)
    # Shuffling tiles keeps every pixel value (a permutation of tiles).
    s = patch_shuffle(a, 4, seed=0)
    assert torch.equal(s.flatten(1).sort(1).values, a.flatten(1).sort(1).values)


def test_gaussian_blur_preserves_constants_and_matches_the_variance():
    x = torch.full((2, 3, 16, 16), 0.3)
    assert torch.allclose(gaussian_blur(x, 1.5), x, atol=1e-6)
    impulse = torch.zeros(1, 1, 33, 33)
    impulse[0, 0, 16, 16] = 1.0
    y = gaussian_blur(impulse, 2.0)[0, 0]
    assert float(y.sum()) == pytest.approx(1.0, abs=1e-5)
    offsets = torch.arange(33.0) - 16
    assert float((y.sum(0) * offsets**2).sum()) == pytest.approx(4.0, rel=0.02)    # variance sigma^2
