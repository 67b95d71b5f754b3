"""What every dlcourse denoiser shares: one call signature, one conditioning format.

Every model is called the same way, so samplers, guidance and training never
need to know which network they drive::

    out = model(x_t, t, cond=None)         # out has the shape of x_t

    x_t:  (B, ...) the noisy input: (B, C, H, W) images, (B, D) points.
    t:    (B,) timesteps: int64 indices 0..T-1 of a discrete schedule, or floats
          (for flow time in [0, 1], pass ``1000 * t``: see ``timestep_embedding``).
          A Python number or a 0-d tensor is used for the whole batch.
    cond: one of
          None                 unconditional;
          (B,) int64 tensor    class labels, the shortcut for the common case;
          dict                 any of the keys below, each optional:
              "label":          (B,) int64 class labels in 0..num_classes, where
                                ``num_classes`` itself is the *null* label
                                (classifier-free guidance, Ho & Salimans 2022);
              "context":        (B, L, context_dim) tokens for cross-attention (text);
              "context_mask":   (B, L) bool, True where a token may be attended to;
              "down_residuals": list of tensors added to the U-Net's skip connections,
              "mid_residual":   tensor added to the U-Net's middle block
                                (the two ControlNet outputs, Zhang et al. 2023).

A model built with ``num_classes`` reads a missing label as the null label, so
``model(x_t, t)`` is its unconditional prediction. A model that cannot use a key
raises an error naming it rather than silently ignoring it.

Models also describe themselves with plain types, ``model.get_config()``, and
are rebuilt from that with ``cls.from_config(config)``; ``register_model`` makes
a class known to ``dlcourse.checkpoints.build_model``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..validation import check_int, check_labels, check_tensor

COND_KEYS = ("label", "context", "context_mask", "down_residuals", "mid_residual")


@dataclass
class Cond:
    """Conditioning inputs after validation; absent ones are None."""

    label: torch.Tensor | None = None
    context: torch.Tensor | None = None
    context_mask: torch.Tensor | None = None
    down_residuals: list | None = None
    mid_residual: torch.Tensor | None = None


def parse_cond(cond, batch_size: int, *, num_classes: int | None = None,
               context_dim: int | None = None, accepts=COND_KEYS) -> Cond:
    """Check ``cond`` (None, labels or a dict; see the module docstring) and unpack it.

    Args:
        cond: the conditioning passed to the model.
        batch_size: B of ``x_t``.
        num_classes: the model's number of classes (labels 0..num_classes, the last
            being null), or None if it takes no labels.
        context_dim: the model's context width, or None if it takes no context.
        accepts: the keys this model understands.

    Returns:
        A ``Cond``. When the model takes labels and none are given, ``label`` is
        the null label for every example.
    """
    if cond is None:
        cond = {}
    elif isinstance(cond, torch.Tensor):
        cond = {"label": cond}
    elif not isinstance(cond, dict):
        raise TypeError(f"cond: expected None, a (B,) label tensor or a dict, got {type(cond).__name__}")
    unknown = [k for k in cond if k not in COND_KEYS]
    if unknown:
        raise ValueError(f"cond: unknown key(s) {unknown}; expected some of {list(COND_KEYS)}")
    unused = [k for k in cond if k not in accepts and cond[k] is not None]
    if unused:
        raise ValueError(f"cond: this model does not take {unused}; it accepts {list(accepts)}")
    out = Cond(**{k: cond.get(k) for k in COND_KEYS})

    if out.label is not None:
        if num_classes is None:
            raise ValueError("cond['label']: this model was built without num_classes, so it takes no labels")
        out.label = check_labels("cond['label']", out.label, num_classes, n=batch_size).long()
    if out.context is not None:
        if context_dim is None:
            raise ValueError("cond['context']: this model was built without context_dim, so it takes no context")
        check_tensor("cond['context']", out.context, shape=(batch_size, None, context_dim), floating=True)
    if out.context_mask is not None:
        if out.context is None:
            raise ValueError("cond['context_mask']: given without cond['context']")
        check_tensor("cond['context_mask']", out.context_mask, shape=tuple(out.context.shape[:2]))
        if out.context_mask.dtype != torch.bool:
            raise TypeError(f"cond['context_mask']: expected dtype torch.bool, got {out.context_mask.dtype}")
        if not bool(out.context_mask.any(dim=1).all()):
            raise ValueError("cond['context_mask']: every example needs at least one True token")
    return out


def null_labels(batch_size: int, num_classes: int, device) -> torch.Tensor:
    """(B,) int64 tensor filled with the null label ``num_classes``."""
    return torch.full((batch_size,), num_classes, dtype=torch.long, device=device)


def check_model_input(x, t, *, name: str = "x_t", ndim: int, channels: int,
                      multiple: int = 1) -> torch.Tensor:
    """Check a model's ``x_t`` and ``t`` and return ``t`` as a (B,) float tensor.

    Args:
        x: the input; must have ``ndim`` dimensions and ``channels`` in dim 1.
        t: a number, a 0-d tensor or a (B,) tensor of timesteps.
        multiple: for images, H and W must be divisible by it (the down-sampling).
    """
    check_tensor(name, x, ndim=ndim, floating=True)
    if x.shape[1] != channels:
        what = "channels" if ndim == 4 else "features"
        raise ValueError(f"{name}: expected {channels} {what} in dim 1, got shape {tuple(x.shape)}")
    if ndim == 4 and (x.shape[2] % multiple or x.shape[3] % multiple):
        raise ValueError(f"{name}: height and width must be divisible by {multiple} "
                         f"(the model's down-sampling), got {x.shape[2]} x {x.shape[3]}")
    B = x.shape[0]
    if isinstance(t, bool):
        raise TypeError("t: expected a number or a tensor of timesteps, got bool")
    if isinstance(t, (int, float)):
        t = torch.full((B,), float(t), device=x.device)
    check_tensor("t", t, ndim=(0, 1))
    if t.ndim == 0:
        t = t.expand(B)
    if t.shape[0] != B:
        raise ValueError(f"t: expected shape ({B},) matching {name}'s batch size, got {tuple(t.shape)}")
    return t.to(device=x.device, dtype=torch.float32)


MODELS: dict[str, type] = {}


def check_channel_mults(channel_mults) -> tuple:
    """A config's ``channel_mults`` as a tuple of ints >= 1, one per resolution level (at least one)."""
    channel_mults = tuple(channel_mults)
    if not channel_mults:
        raise ValueError("channel_mults: expected at least one level, got ()")
    for i, m in enumerate(channel_mults):
        check_int(f"channel_mults[{i}]", m, minimum=1)
    return channel_mults


def register_model(cls: type) -> type:
    """Class decorator: make ``cls`` rebuildable by ``checkpoints.build_model``.

    The class must provide ``get_config() -> dict`` (plain types only) and
    ``from_config(config) -> model``. Only registered classes can be rebuilt,
    so a checkpoint can never make the loader import arbitrary code.
    """
    for method in ("get_config", "from_config"):
        if not callable(getattr(cls, method, None)):
            raise TypeError(f"register_model: {cls.__name__} needs a {method} method")
    MODELS[cls.__name__] = cls
    return cls
