"""The Frechet distance between two sets of features, as in FID (Heusel et al. 2017).

Fit a Gaussian to each set (mean mu, covariance Sigma) and take the 2-Wasserstein
distance between the two Gaussians, squared (Dowson & Landau 1982):

    FD = |mu_a - mu_b|^2 + Tr(Sigma_a + Sigma_b - 2 (Sigma_a^1/2 Sigma_b Sigma_a^1/2)^1/2)

For diagonal covariances this is sum_i (mu_a,i - mu_b,i)^2 + (sigma_a,i - sigma_b,i)^2.

The matrix square roots come from eigendecompositions of symmetric matrices in
float64: Sigma_a^1/2 = V diag(sqrt(lambda)) V^T, and the trace of the outer root is
the sum of the square roots of the eigenvalues of the symmetric matrix
Sigma_a^1/2 Sigma_b Sigma_a^1/2. That avoids the general (non-symmetric) matrix
square root of Sigma_a Sigma_b that FID code often uses, and its complex round-off.

The estimate is biased upwards by the finite number of samples, so an FD is only
meaningful next to the floor: the FD between two real sets of the same size.
"""

from __future__ import annotations

import torch

from ..validation import check_tensor


def gaussian_fit(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (F,) and covariance (F, F) of ``features`` (N, F), in float64 (covariance over N - 1)."""
    check_tensor("features", features, ndim=2, floating=True)
    if features.shape[0] < 2:
        raise ValueError(f"features: need at least 2 rows to fit a covariance, got {features.shape[0]}")
    f = features.detach().to(torch.float64)
    mu = f.mean(0)
    centred = f - mu
    cov = centred.T @ centred / (f.shape[0] - 1)                     # (F, F)
    return mu, cov


def _sqrt_psd(matrix: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix via its eigendecomposition."""
    eigenvalues, V = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (V * eigenvalues.clamp(min=0).sqrt()) @ V.T               # V diag(sqrt(l)) V^T


def frechet_distance_gaussians(mu_a: torch.Tensor, cov_a: torch.Tensor,
                               mu_b: torch.Tensor, cov_b: torch.Tensor) -> float:
    """The Frechet distance between N(mu_a, cov_a) and N(mu_b, cov_b) (module docstring).

    Args:
        mu_a, mu_b: (F,) means.
        cov_a, cov_b: (F, F) symmetric positive semi-definite covariances.
    """
    F = mu_a.shape[0]
    check_tensor("mu_b", mu_b, shape=(F,))
    check_tensor("cov_a", cov_a, shape=(F, F))
    check_tensor("cov_b", cov_b, shape=(F, F))
    mu_a, mu_b, cov_a, cov_b = (t.to(torch.float64) for t in (mu_a, mu_b, cov_a, cov_b))
    root_a = _sqrt_psd(cov_a)
    middle = root_a @ cov_b @ root_a                                 # symmetric PSD
    trace_root = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    fd = (mu_a - mu_b).square().sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * trace_root
    return max(float(fd), 0.0)                                       # >= 0 up to rounding


def frechet_distance(feats_a: torch.Tensor, feats_b: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (N, F) and (M, F)."""
    check_tensor("feats_a", feats_a, ndim=2, floating=True)
    check_tensor("feats_b", feats_b, ndim=2, floating=True)
    if feats_a.shape[1] != feats_b.shape[1]:
        raise ValueError(f"feats_a and feats_b: expected the same feature size, "
                         f"got {feats_a.shape[1]} and {feats_b.shape[1]}")
    return frechet_distance_gaussians(*gaussian_fit(feats_a), *gaussian_fit(feats_b.to(feats_a.device)))
