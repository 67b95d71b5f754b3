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

Measuring the trade-off (fidelity against diversity, for every w) is a measurement and
lives with the others: ``dlcourse.metrics.guidance_sweep``. This module is the formula, so it
sits below the samplers, which use it, and the training loop.
"""

from __future__ import annotations

import torch

from .validation import check_int, check_labels, check_number, check_probability, check_tensor

__all__ = ["classifier_free_guidance", "drop_labels"]


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
    w = check_number("w", w)
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
    p_uncond = check_probability("p_uncond", p_uncond)
    null_label = check_int("null_label", null_label, minimum=0)
    check_labels("labels", labels, null_label)
    if u is None:
        u = torch.rand(labels.shape, generator=generator, device=labels.device)
    check_tensor("u", u, shape=tuple(labels.shape), floating=True)
    drop = u.to(labels.device) < p_uncond                                     # (B,) bool
    return torch.where(drop, torch.full_like(labels, int(null_label)), labels)
