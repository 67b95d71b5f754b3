"""Friendly checks for exercise test cells.

A visible test should tell a learner *what* is wrong and *what is likely the
cause*, not just ``AssertionError``. These helpers raise ``AssertionError`` with
such a message (so nbgrader counts the cell as failed) and print a tick when all
is well::

    check_close("q_sample(x_0, t=10)", got, expected,
                mistakes={"the square root of alpha_bar is missing": wrong})
    passed("q_sample")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch


def _as_tensor(name: str, value) -> torch.Tensor:
    if value is None:
        raise AssertionError(f"{name} returned None: did you forget the `return` statement?")
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    try:
        return torch.as_tensor(value).cpu()
    except Exception as err:  # noqa: BLE001 - any conversion failure becomes feedback
        raise AssertionError(f"{name}: expected a tensor, got {type(value).__name__}") from err


def _close(a: torch.Tensor, b: torch.Tensor, atol: float, rtol: float) -> bool:
    if a.shape != b.shape:
        return False
    return torch.allclose(a.double(), b.double(), atol=atol, rtol=rtol)


def check_shape(name: str, got, shape: Sequence[int]) -> None:
    """Fail unless ``got`` is a tensor of exactly ``shape``."""
    got = _as_tensor(name, got)
    if tuple(got.shape) != tuple(shape):
        raise AssertionError(f"{name}: expected shape {tuple(shape)}, got {tuple(got.shape)}. "
                             "Check which dimensions you reduce over or broadcast.")


def check_close(name: str, got, expected, *, atol: float = 1e-5, rtol: float = 1e-4,
                mistakes: Mapping[str, object] | None = None, hint: str | None = None) -> None:
    """Fail unless ``got`` equals ``expected`` within tolerance.

    Args:
        name: what is being checked, shown in the message (e.g. "q_sample(x_0, t=3)").
        got: the learner's value.
        expected: the right value.
        mistakes: optional ``{description: wrong_value}``; when ``got`` matches one
            of these plausible wrong answers, the message names the mistake.
        hint: a general hint added to the message when no known mistake matches.
    """
    got_t = _as_tensor(name, got)
    exp_t = _as_tensor(name, expected)
    if got_t.shape != exp_t.shape:
        raise AssertionError(f"{name}: expected shape {tuple(exp_t.shape)}, got {tuple(got_t.shape)}.")
    if not got_t.is_floating_point() and exp_t.is_floating_point():
        got_t = got_t.double()
    if bool(torch.isnan(got_t).any()) and not bool(torch.isnan(exp_t).any()):
        raise AssertionError(f"{name}: the result contains NaN. Look for a square root of a "
                             "negative number, a log of zero or a division by zero.")
    if _close(got_t, exp_t, atol, rtol):
        return
    for description, wrong in (mistakes or {}).items():
        if _close(got_t, _as_tensor(name, wrong), atol, rtol):
            raise AssertionError(f"{name} is not right yet: it looks like {description}.")
    err = (got_t.double() - exp_t.double()).abs().max().item()
    message = f"{name} is not right yet: largest difference from the expected value is {err:.3g}."
    if exp_t.numel() <= 6:
        message += f" Expected {exp_t.tolist()}, got {got_t.tolist()}."
    if hint:
        message += f" Hint: {hint}"
    raise AssertionError(message)


def check_true(name: str, condition: bool, message: str) -> None:
    """Fail with ``name: message`` unless ``condition`` holds."""
    if not bool(condition):
        raise AssertionError(f"{name}: {message}")


def passed(what: str) -> None:
    """Print a short success line at the end of a visible test cell."""
    print(f"\u2714 {what}: all visible checks passed.")
