"""Sample quality on the shapes set, scored by a judge (``dlcourse.judge``).

- ``valid_fraction``: how many samples the judge accepts as clean images of one shape.
- ``class_accuracy``: of the valid samples, how many show what was asked for.
- ``attribute_entropy``: how varied the valid samples are (mode collapse lowers it).
- ``quality_report``: all of them, the Frechet distance in the judge's features, and
  the reference points that give them meaning: real vs real (the floor) and noise
  with the data's per-pixel statistics (the noise baseline).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..data.shapes import COLOR_NAMES, SCALE_NAMES, SHAPE_NAMES
from .baselines import matched_noise
from .frechet import frechet_distance
from ..validation import check_choice, check_tensor

_HEADS = {"shape": len(SHAPE_NAMES), "color": len(COLOR_NAMES), "scale": len(SCALE_NAMES)}


def valid_fraction(judge, x: torch.Tensor) -> float:
    """Fraction of images (B, 3, H, W) the judge calls valid (real, and sure of shape and colour)."""
    return float(judge.predict(x)["valid"].float().mean())


def class_accuracy(judge, x: torch.Tensor, requested_labels: torch.Tensor, *, head: str = "shape") -> float:
    """Fraction of the *valid* samples whose predicted ``head`` equals the requested value.

    Args:
        judge: a ``dlcourse.judge.Judge``.
        x: (B, 3, H, W) samples generated for ``requested_labels``.
        requested_labels: (B,) int64: indices into SHAPE_NAMES (or COLOR_NAMES,
            SCALE_NAMES for ``head="color"``, ``"scale"``).

    Returns:
        The accuracy among valid samples; nan when none is valid (report the valid
        fraction next to it: invalid samples are not counted as right or wrong).
    """
    check_choice("head", head, _HEADS)
    check_tensor("requested_labels", requested_labels, shape=(x.shape[0],))
    out = judge.predict(x)
    valid = out["valid"]
    if not bool(valid.any()):
        return math.nan
    predicted = out[f"{head}_probs"].argmax(1)
    return float((predicted[valid] == requested_labels.to(predicted.device)[valid]).float().mean())


def entropy_bits(counts: torch.Tensor) -> float:
    """Entropy in bits of the distribution proportional to ``counts`` (K,); log2(K) when uniform."""
    p = counts.double() / counts.sum()
    p = p[p > 0]
    return float(-(p * p.log2()).sum())


@dataclass(frozen=True)
class AttributeEntropy:
    """Entropies (bits) of the predicted attributes of the valid samples, and their maxima.

    The maximum, log2(K), is reached when all K values are equally common, as in the
    data (shapes and colours are drawn uniformly): 2 bits for 4 shapes, 2.585 for 6
    colours, 4.585 for the 24 (shape, colour) pairs. ``n`` valid samples were counted.
    """

    shape_bits: float
    color_bits: float
    joint_bits: float
    n: int
    shape_max_bits: float = math.log2(len(SHAPE_NAMES))
    color_max_bits: float = math.log2(len(COLOR_NAMES))
    joint_max_bits: float = math.log2(len(SHAPE_NAMES) * len(COLOR_NAMES))


def attribute_entropy(judge, x: torch.Tensor) -> AttributeEntropy:
    """Diversity of the valid samples: entropy of their predicted shapes, colours and pairs.

    A histogram of the judge's predicted (argmax) shape and colour over the valid
    samples; all entropies are nan when no sample is valid. With few samples the
    estimate is biased low (a uniform source gives ~log2(K) - (K - 1) / (2 n ln 2)).
    """
    out = judge.predict(x)
    valid = out["valid"]
    n = int(valid.sum())
    if n == 0:
        return AttributeEntropy(math.nan, math.nan, math.nan, 0)
    shape = out["shape_probs"][valid].argmax(1).cpu()
    color = out["color_probs"][valid].argmax(1).cpu()
    K, C = len(SHAPE_NAMES), len(COLOR_NAMES)
    return AttributeEntropy(shape_bits=entropy_bits(torch.bincount(shape, minlength=K)),
                            color_bits=entropy_bits(torch.bincount(color, minlength=C)),
                            joint_bits=entropy_bits(torch.bincount(shape * C + color, minlength=K * C)),
                            n=n)


@dataclass(frozen=True)
class QualityReport:
    """Quality of ``n`` samples, with the reference points measured at the same ``n``.

    Attributes:
        n: number of samples (and the size of each reference set).
        valid_fraction: of the samples.
        fd: Frechet distance of the samples to the real set A, in the judge's features.
        entropy: ``AttributeEntropy`` of the samples.
        fd_floor: FD of real set B to real set A (disjoint): what a perfect model gets.
        noise_fd, noise_valid_fraction: the same for matched-statistics noise.
        real_valid_fraction: of real set B.
    """

    n: int
    valid_fraction: float
    fd: float
    entropy: AttributeEntropy
    fd_floor: float
    real_valid_fraction: float
    noise_fd: float
    noise_valid_fraction: float

    def __str__(self) -> str:
        e = self.entropy
        return "\n".join([
            f"{'':22s}{'samples':>10s}{'real':>10s}{'noise':>10s}   (n = {self.n} each)",
            f"{'valid fraction':22s}{self.valid_fraction:10.3f}{self.real_valid_fraction:10.3f}"
            f"{self.noise_valid_fraction:10.3f}",
            f"{'Frechet distance':22s}{self.fd:10.2f}{self.fd_floor:10.2f}{self.noise_fd:10.2f}",
            f"shape entropy {e.shape_bits:.2f} / {e.shape_max_bits:.2f} bits, colour {e.color_bits:.2f} / "
            f"{e.color_max_bits:.2f}, pairs {e.joint_bits:.2f} / {e.joint_max_bits:.2f} ({e.n} valid)"])


def quality_report(judge, samples: torch.Tensor, reference_images: torch.Tensor, *, seed: int = 0) -> QualityReport:
    """Score ``samples`` and measure the reference points at the same size.

    Args:
        judge: a ``dlcourse.judge.Judge``.
        samples: (n, 3, H, W) generated images in [-1, 1].
        reference_images: (>= 2n, 3, H', W') real images, e.g.
            ``make_shapes(2 * n, seed=...).images``. The first n are real set A (what
            every FD is measured against), the next n real set B (the floor).
        seed: for the matched noise.
    """
    check_tensor("samples", samples, ndim=4, floating=True)
    check_tensor("reference_images", reference_images, ndim=4, floating=True)
    n = samples.shape[0]
    if reference_images.shape[0] < 2 * n:
        raise ValueError(f"reference_images: need at least 2 x {n} real images (two disjoint sets the size of "
                         f"samples), got {reference_images.shape[0]}")
    real_a, real_b = reference_images[:n], reference_images[n:2 * n]
    noise = matched_noise(reference_images[:2 * n], n, seed=seed)
    feats_a = judge.features(real_a)
    return QualityReport(
        n=n, valid_fraction=valid_fraction(judge, samples), fd=frechet_distance(judge.features(samples), feats_a),
        entropy=attribute_entropy(judge, samples),
        fd_floor=frechet_distance(judge.features(real_b), feats_a), real_valid_fraction=valid_fraction(judge, real_b),
        noise_fd=frechet_distance(judge.features(noise), feats_a), noise_valid_fraction=valid_fraction(judge, noise))
