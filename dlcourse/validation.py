"""Argument checks that fail with a message a learner can act on.

Every public function in ``dlcourse`` checks its inputs with these helpers, once, at
its entry (the math below it stays free of checks), so a wrong shape, a ``t`` out of
range or an unknown name raises an error that names the argument, says what was
expected and shows what came:

    check_tensor       a tensor of a rank / shape / floating dtype
    check_timesteps    discrete timesteps in 0..T-1
    check_int          an int in [minimum, maximum]
    check_number       a finite number in [minimum, maximum] (or above a strict bound)
    check_positive     a number (or int) > 0
    check_probability  a number in [0, 1]
    check_bool         True or False
    check_choice       one of a few names
    check_schedule     a NoiseSchedule
    check_labels       integer class labels, the null label included
    check_sha256       a SHA-256 digest, 64 hex digits
"""

from __future__ import annotations

import math
import numbers
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


def check_int(name: str, value, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """Check that ``value`` is an int (not a bool) in ``minimum .. maximum`` (either bound optional)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {value!r}")
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        low = "" if minimum is None else f">= {minimum}"
        high = "" if maximum is None else f"<= {maximum}"
        raise ValueError(f"{name}: expected an int {' and '.join(b for b in (low, high) if b)}, got {value}")
    return value


def check_number(name: str, value, *, minimum: float | None = None, maximum: float | None = None,
                 above: float | None = None) -> float:
    """Check that ``value`` is a finite real number (not a bool) in [minimum, maximum]; return it as a float.

    ``above`` is a strict lower bound, for intervals open on the left such as (0, 1].
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise TypeError(f"{name}: expected a finite number, got {value!r}")
    value = float(value)
    if ((minimum is not None and value < minimum) or (maximum is not None and value > maximum)
            or (above is not None and value <= above)):
        bounds = [f"> {above:g}" if above is not None else "", "" if minimum is None else f">= {minimum:g}",
                  "" if maximum is None else f"<= {maximum:g}"]
        raise ValueError(f"{name}: expected a number {' and '.join(b for b in bounds if b)}, got {value:g}")
    return value


def check_probability(name: str, value) -> float:
    """Check that ``value`` is a probability, a number in [0, 1]; return it as a float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}: expected a probability in [0, 1], got {value!r}")
    return float(value)


def check_schedule(name: str, schedule):
    """Check that ``schedule`` is a ``NoiseSchedule`` (``linear_schedule(1000)``, ``cosine_schedule(1000)``).

    The class is recognised by its qualified name in the value's class hierarchy, so this ground
    floor needs no import of ``dlcourse.schedules``, which is built on it.
    """
    if not any(f"{c.__module__}.{c.__qualname__}" == "dlcourse.schedules.NoiseSchedule"
               for c in type(schedule).__mro__):
        raise TypeError(f"{name}: expected a NoiseSchedule (e.g. cosine_schedule(1000)), "
                        f"got {type(schedule).__name__}")
    return schedule


def check_labels(name: str, labels, num_classes: int | None = None, *, n: int | None = None) -> torch.Tensor:
    """Check integer class labels: a 1-D int tensor (length ``n`` if given), values in 0..num_classes.

    ``num_classes`` itself is allowed: it is the null label of classifier-free guidance.
    """
    check_tensor(name, labels, ndim=1)
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"{name}: expected integer class labels, got dtype {labels.dtype}")
    if n is not None and labels.shape[0] != n:
        raise ValueError(f"{name}: expected {n} labels (one per example), got {labels.shape[0]}")
    if num_classes is not None and labels.numel() and (int(labels.min()) < 0 or int(labels.max()) > num_classes):
        raise ValueError(f"{name}: expected values in 0..{num_classes} ({num_classes} is the null label), "
                         f"got values from {int(labels.min())} to {int(labels.max())}")
    return labels


def check_bool(name: str, value) -> bool:
    """Check that ``value`` is True or False (not 0, 1 or None, which usually mean a mixed-up argument)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name}: expected True or False, got {value!r}")
    return value


def check_sha256(name: str, value) -> str:
    """Check that ``value`` is a SHA-256 digest, 64 hex digits in either case; return it in lowercase."""
    text = value.lower() if isinstance(value, str) else None
    if text is None or len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise ValueError(f"{name}: expected a SHA-256 digest, 64 hexadecimal digits, got {value!r}")
    return text
