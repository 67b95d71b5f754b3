"""Argument checks that fail with a message a learner can act on.

Every public function in ``dlcourse`` checks its inputs with these helpers, so a
wrong shape, a ``t`` out of range or an unknown name raises an error that names
the argument, says what was expected and shows what came.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch


def check_tensor(name: str, x, *, ndim: int | Sequence[int] | None = None,
                 shape: Sequence[int | None] | None = None,
                 floating: bool = False) -> torch.Tensor:
    """Check that ``x`` is a tensor with the expected rank and/or shape.

    Args:
        name: the argument's name, used in the error message.
        x: the value to check.
        ndim: allowed number of dimensions (an int or several).
        shape: expected shape; ``None`` entries match any size.
        floating: require a floating-point dtype.

    Returns:
        ``x`` unchanged, so the call can be used inline.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.ndim not in allowed:
            want = " or ".join(str(n) for n in allowed)
            raise ValueError(f"{name}: expected a tensor with {want} dimensions, "
                             f"got shape {tuple(x.shape)} ({x.ndim} dimensions)")
    if shape is not None:
        ok = x.ndim == len(shape) and all(s is None or s == d for s, d in zip(shape, x.shape))
        if not ok:
            want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
            raise ValueError(f"{name}: expected shape {want}, got {tuple(x.shape)}")
    if floating and not x.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got dtype {x.dtype}")
    return x


def check_timesteps(name: str, t, T: int) -> torch.Tensor:
    """Check discrete timesteps ``t`` lie in ``0 .. T-1`` and return them as int64.

    Accepts a Python int or an integer tensor of any shape.
    """
    if isinstance(t, bool):
        raise TypeError(f"{name}: expected an integer timestep, got bool")
    if isinstance(t, int):
        t = torch.tensor(t)
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected an int or an integer tensor, got {type(t).__name__}")
    if t.is_floating_point() or t.is_complex():
        raise TypeError(f"{name}: expected integer timesteps in 0..{T - 1}, got dtype {t.dtype}")
    if t.numel() and (int(t.min()) < 0 or int(t.max()) > T - 1):
        raise ValueError(f"{name}: expected timesteps in 0..{T - 1}, "
                         f"got values from {int(t.min())} to {int(t.max())}")
    return t.long()


def check_unit_interval(name: str, t) -> torch.Tensor:
    """Check continuous times lie in [0, 1]; return them as a float tensor."""
    t = torch.as_tensor(t, dtype=torch.get_default_dtype()) if not isinstance(t, torch.Tensor) else t
    if t.numel() and (float(t.min()) < 0.0 or float(t.max()) > 1.0):
        raise ValueError(f"{name}: expected times in [0, 1], "
                         f"got values from {float(t.min()):.4g} to {float(t.max()):.4g}")
    return t


def check_choice(name: str, value, choices: Iterable[str]) -> str:
    """Check that ``value`` is one of ``choices``."""
    choices = list(choices)
    if value not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(repr(c) for c in choices)}, got {value!r}")
    return value


def check_positive(name: str, value, *, integer: bool = False):
    """Check that ``value`` is a positive number (a positive int if ``integer``)."""
    if integer and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError(f"{name}: expected a positive int, got {value!r}")
    if not value > 0:
        raise ValueError(f"{name}: expected a positive value, got {value!r}")
    return value
