"""Classifier-free guidance (Ho & Salimans 2022): one model, two predictions, one line.

Training: with probability ``p_uncond`` a label is replaced by the null label (here
``model.num_classes``), so one network learns both the conditional prediction
``eps(x_t, t, c)`` and the unconditional one ``eps(x_t, t, null)``:

    drop_labels(labels, p_uncond, null_label)            -> labels, some of them null

Sampling: the two predictions are combined with a guidance scale w,

    classifier_free_guidance(out_uncond, out_cond, w)   = out_uncond + w (out_cond - out_uncond)

``w = 1`` is the conditional model, ``w = 0`` the unconditional one, ``w > 1`` pushes
further towards the condition. **Convention**: this is diffusers' ``guidance_scale``.
Ho & Salimans write ``(1 + w') eps_cond - w' eps_uncond`` (their eq. 6), so
``w = 1 + w'``: their ``w' = 0`` (no guidance) is our ``w = 1``.

Measuring the trade-off on the shapes set (notebook 05, ``scripts/measure_guidance.py``):

    guidance_sweep(model, schedule, judge, reference, ws=[0, 1, 3])   -> [GuidancePoint, ...]

gives, for every w, fidelity (the judge's accuracy on the requested shape), diversity
(entropy of the colours and sizes the judge sees, spread of its features) and the
Frechet distance to real images of the requested shape, with its floor.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch

from .metrics.frechet import frechet_distance
from .metrics.quality import entropy_bits
from .validation import check_positive, check_tensor

__all__ = ["GuidancePoint", "classifier_free_guidance", "drop_labels", "guidance_sweep"]


def _check_scale(name: str, w) -> float:
    if isinstance(w, bool) or not isinstance(w, numbers.Real) or not math.isfinite(w):
        raise TypeError(f"{name}: expected a finite number (the guidance scale), got {w!r}")
    return float(w)


def classifier_free_guidance(out_uncond: torch.Tensor, out_cond: torch.Tensor, w: float) -> torch.Tensor:
    """``out_uncond + w (out_cond - out_uncond)`` (Ho & Salimans 2022, eq. 6, with w = 1 + their w).

    Works on any output of the model (eps, x_0 or v: they are affine in one another for a
    fixed x_t, and the weights 1 - w and w add up to one).

    Args:
        out_uncond: (B, ...) the model's output with the null label.
        out_cond: (B, ...) its output with the requested labels.
        w: the guidance scale; 1 returns ``out_cond`` itself and 0 ``out_uncond`` itself
            (exactly, with no rounding).

    Returns:
        (B, ...) the guided output.
    """
    check_tensor("out_uncond", out_uncond)
    check_tensor("out_cond", out_cond, shape=tuple(out_uncond.shape))
    w = _check_scale("w", w)
    if w == 1:
        return out_cond
    if w == 0:
        return out_uncond
    return out_uncond + w * (out_cond - out_uncond)


def drop_labels(labels: torch.Tensor, p_uncond: float, null_label: int, *, u: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace each label by ``null_label`` with probability ``p_uncond`` (label dropout).

    Label i is dropped when ``u[i] < p_uncond``, with ``u`` uniform on [0, 1): so
    ``p_uncond = 0`` keeps every label and ``p_uncond = 1`` drops every one.

    Args:
        labels: (B,) int64 class labels in 0..null_label (already-null labels stay null).
        p_uncond: probability of dropping, in [0, 1].
        null_label: the label that means "no condition" (``model.num_classes``).
        u: (B,) the uniform draws to use; drawn with ``torch.rand`` (from ``generator``,
            on ``labels``' device) when None.
        generator: torch.Generator for ``u``.

    Returns:
        (B,) a new tensor of labels; ``labels`` is not modified.
    """
    check_tensor("labels", labels, ndim=1)
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise TypeError(f"labels: expected integer class labels, got dtype {labels.dtype}")
    if isinstance(p_uncond, bool) or not isinstance(p_uncond, numbers.Real) or not 0.0 <= p_uncond <= 1.0:
        raise ValueError(f"p_uncond: expected a probability in [0, 1], got {p_uncond!r}")
    if isinstance(null_label, bool) or not isinstance(null_label, numbers.Integral) or null_label < 0:
        raise ValueError(f"null_label: expected an int >= 0 (the model's num_classes), got {null_label!r}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) > null_label):
        raise ValueError(f"labels: expected values in 0..{null_label} (null_label = {null_label}), "
                         f"got values from {int(labels.min())} to {int(labels.max())}")
    if u is None:
        u = torch.rand(labels.shape, generator=generator, device=labels.device)
    check_tensor("u", u, shape=tuple(labels.shape), floating=True)
    drop = u.to(labels.device) < p_uncond                                     # (B,) bool
    return torch.where(drop, torch.full_like(labels, int(null_label)), labels)


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
    from .samplers import sample_ddim

    sampler = sample_ddim if sampler is None else sampler
    check_positive("n", n, integer=True)
    check_positive("steps", steps, integer=True)
    num_classes = getattr(model, "num_classes", None)
    if not isinstance(num_classes, int):
        raise ValueError("model: expected a class-conditional model with an int num_classes")
    classes = list(range(num_classes)) if classes is None else [int(c) for c in classes]
    ws = [_check_scale("ws", w) for w in ws]
    device = next(model.parameters()).device
    real = {}
    for c in classes:
        images = reference.images[reference.labels == c]
        if images.shape[0] < 2 * n:
            raise ValueError(f"reference: need at least 2 x {n} real images of class {c}, got {images.shape[0]}")
        real[c] = (judge.features(images[:n]), judge.features(images[n:2 * n]))
    x_T = {c: torch.randn(n, *reference.images.shape[1:], generator=torch.Generator().manual_seed(seed + c))
           for c in classes}
    points = []
    for w in ws:
        rows = []
        for c in classes:
            labels = torch.full((n,), c, dtype=torch.long, device=device)
            x = sampler(model, x_T[c].to(device), schedule, steps, cond=labels, guidance_scale=w,
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
