"""The guidance sweep: fidelity against diversity for every guidance scale w (notebook 05).

    guidance_sweep(model, schedule, judge, reference, ws=[0, 1, 3])   -> [GuidancePoint, ...]

samples every requested class at every w from the same starting noise and scores the
samples with the judge: fidelity (its accuracy on the requested shape), diversity (the
entropy of the colours and sizes it sees, the spread of its features) and the Frechet
distance to real images of the requested shape, beside the floor of real against real.
Higher w should trade diversity for fidelity (Ho & Salimans 2022, Fig. 1); this measures
whether it does. ``scripts/measure_guidance.py`` runs it with more samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..samplers import sample_ddim
from ..tensors import seeded_noise
from ..validation import check_int, check_number
from .frechet import frechet_distance
from .quality import entropy_bits

__all__ = ["GuidancePoint", "guidance_sweep"]


@dataclass(frozen=True)
class GuidancePoint:
    """What samples at one guidance scale look like, averaged over the requested classes.

    Every figure is computed per requested class, then averaged over the classes.

    Attributes:
        w: the guidance scale.
        n: samples per class.
        valid_fraction: samples the judge accepts as clean images of one shape.
        accuracy: of the valid samples, the fraction showing the requested shape.
        color_bits: entropy (bits) of the judge's colours of the valid samples
            (the data: uniform over 6 colours, log2(6) = 2.585 bits).
        scale_bits: entropy of their sizes (the data: uniform over 2, 1 bit).
        feature_spread: sqrt(trace of the covariance) of the samples' judge features,
            divided by the same for real images of the requested shape (1 = as varied).
        fd: Frechet distance of the samples' judge features to real images of the
            requested shape.
        fd_floor: the same between two disjoint real sets of that shape, at the same n.
    """

    w: float
    n: int
    valid_fraction: float
    accuracy: float
    color_bits: float
    scale_bits: float
    feature_spread: float
    fd: float
    fd_floor: float


def _spread(features: torch.Tensor) -> float:
    return float(features.double().var(0).sum().sqrt())


@torch.no_grad()
def guidance_sweep(model, schedule, judge, reference, ws, *, classes=None, n: int = 64, steps: int = 20,
                   seed: int = 0, sampler=None, progress: bool = False) -> list[GuidancePoint]:
    """Sample ``n`` images of each class at every guidance scale in ``ws`` and score them.

    The same starting noise is used for every w (seed ``seed + c`` for class c), so the
    rows differ only by the guidance.

    Args:
        model: a class-conditional denoiser with ``num_classes`` (the null label).
        schedule: the schedule it was trained with.
        judge: a ``dlcourse.judge.Judge``.
        reference: a ``ShapesData`` of real images, with at least ``2 n`` of each class
            (two disjoint sets: the one FD is measured to, and one for the floor).
        ws: the guidance scales.
        classes: the class labels to request; all ``model.num_classes`` by default.
        n: samples per class and w.
        steps: model evaluations per sample (each one a batch of 2n when w is not 0 or 1).
        seed: seed of the starting noise.
        sampler: a sampler function (``dlcourse.samplers``); DDIM (eta = 0) by default.
        progress: print one line per w.

    Returns:
        One ``GuidancePoint`` per w, in the order of ``ws``.
    """
    sampler = sample_ddim if sampler is None else sampler
    check_int("n", n, minimum=1)
    check_int("steps", steps, minimum=1)
    num_classes = getattr(model, "num_classes", None)
    if not isinstance(num_classes, int):
        raise ValueError("model: expected a class-conditional model with an int num_classes")
    classes = list(range(num_classes)) if classes is None else [int(c) for c in classes]
    ws = [check_number("ws", w) for w in ws]
    real = {}
    for c in classes:
        images = reference.images[reference.labels == c]
        if images.shape[0] < 2 * n:
            raise ValueError(f"reference: need at least 2 x {n} real images of class {c}, got {images.shape[0]}")
        real[c] = (judge.features(images[:n]), judge.features(images[n:2 * n]))
    x_T = {c: seeded_noise((n, *reference.images.shape[1:]), seed + c) for c in classes}
    points = []
    for w in ws:
        rows = []
        for c in classes:
            labels = torch.full((n,), c, dtype=torch.long)
            x = sampler(model, x_T[c], schedule, steps, cond=labels, guidance_scale=w,
                        progress=False).float().cpu()
            p = judge.predict(x)
            valid = p["valid"]
            shape, color, scale = (p[f"{k}_probs"].argmax(1)[valid] for k in ("shape", "color", "scale"))
            some = bool(valid.any())
            features = judge.features(x)
            feats_a, feats_b = real[c]
            rows.append([valid.float().mean().item(),
                         (shape == c).float().mean().item() if some else math.nan,
                         entropy_bits(torch.bincount(color, minlength=p["color_probs"].shape[1])) if some else math.nan,
                         entropy_bits(torch.bincount(scale, minlength=p["scale_probs"].shape[1])) if some else math.nan,
                         _spread(features) / _spread(feats_a),
                         frechet_distance(features, feats_a), frechet_distance(feats_b, feats_a)])
        mean = torch.tensor(rows, dtype=torch.float64).nanmean(0).tolist()
        points.append(GuidancePoint(w, n, *mean))
        if progress:
            q = points[-1]
            print(f"w = {w:4g}: accuracy {q.accuracy:.3f}, valid {q.valid_fraction:.3f}, colour {q.color_bits:.2f} "
                  f"bits, FD {q.fd:.1f}", flush=True)
    return points
