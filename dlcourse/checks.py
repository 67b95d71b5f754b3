"""Friendly checks for exercise test cells.

A visible test should tell a learner *what* is wrong and *what is likely the
cause*, not just ``AssertionError``. These helpers raise ``AssertionError`` with
such a message (so nbgrader counts the cell as failed) and print a tick when all
is well::

    check_close("q_sample(x_0, t=10)", got, expected,
                mistakes={"the square root of alpha_bar is missing": wrong})
    passed("q_sample")

An exercise asks the learner to write something the package already holds, so a
test also makes sure the learner's function does not simply call the package's
version, and compares it with a private copy of the package's code that nothing
in the notebook can have replaced::

    with own_work("noisy_sample", "dlcourse.forward:q_sample", "dlcourse.forward:add_noise"):
        got = noisy_sample(x_0, t, alphas_cumprod, eps)
    expected = reference("dlcourse.forward").q_sample(x_0, t, schedule, eps)
"""

from __future__ import annotations

import ast
import importlib.util
import os
import sys
import types
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch

_REFERENCE_MARK = "__dlcourse_reference_copy__"


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


def reference(module: str) -> types.ModuleType:
    """A private copy of a package module, loaded afresh from its file.

    The copy is not the module the notebook imported: replacing ``dlcourse.forward.q_sample`` in the
    notebook does not change ``reference("dlcourse.forward").q_sample``, and :func:`own_work` does not
    count calls to the copy as the learner's. Its own imports (``from .schedules import ...``) are the
    loaded modules. The model registry (``dlcourse.models.MODELS``) is left as it was: a copy of a module
    that registers models does not replace the package's classes there.
    """
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None or spec.loader is None:
        raise ValueError(f"module: no module named {module!r}")
    copy = importlib.util.module_from_spec(spec)
    setattr(copy, _REFERENCE_MARK, True)
    from .models import MODELS                   # a copy's @register_model must not replace the package's classes
    registered = dict(MODELS)
    try:
        spec.loader.exec_module(copy)
    finally:
        MODELS.clear()
        MODELS.update(registered)
    return copy


def _defined_names(path: str) -> set[str]:
    """Qualified names of the functions a source file defines (``f``, ``Class.method``)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    names = set()

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names.add(prefix + child.name)
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")

    visit(tree, "")
    return names


@contextmanager
def own_work(exercise: str, *references: str) -> Iterator[None]:
    """Fail if the package's own answer to ``exercise`` runs inside the ``with`` block.

    Args:
        exercise: the name of the function the learner writes, shown in the message.
        references: the package's versions, as ``"module:qualified_name"`` (``"dlcourse.forward:q_sample"``,
            ``"dlcourse.schedules:NoiseSchedule.__post_init__"``).

    While the block runs, a call into any of ``references`` raises ``AssertionError`` saying that the
    exercise asks the learner to write it. A call is recognised by the file and the name of the code
    that runs, so it is caught however the function was reached: imported under another name, through
    another package function, or from a reloaded module. Calls to a :func:`reference` copy are allowed,
    so a test can compute the expected value inside the block. If the learner's code catches the error,
    the block still fails when it ends.
    """
    watched = {}                                   # qualified name -> {real path of its file: display name}
    for ref in references:
        module, _, qualname = ref.partition(":")
        spec = importlib.util.find_spec(module)
        if not qualname or spec is None or spec.origin is None:
            raise ValueError(f"references: expected 'module:function' of an existing module, got {ref!r}")
        if qualname not in _defined_names(spec.origin):
            raise ValueError(f"references: {spec.origin} defines no function {qualname!r}")
        watched.setdefault(qualname, {})[os.path.realpath(spec.origin)] = f"{module}.{qualname}"
    used = []

    def message(name):
        return (f"{exercise} calls {name}: this exercise asks you to write it yourself; calling the "
                f"package's version does not count. Write the computation in your own code.")

    def watch(frame, event, arg):
        if event != "call":
            return
        code = frame.f_code
        paths = watched.get(code.co_qualname)
        if paths is None or _REFERENCE_MARK in frame.f_globals:
            return
        name = paths.get(os.path.realpath(code.co_filename))
        if name is not None:
            used.append(name)
            raise AssertionError(message(name))

    previous = sys.getprofile()
    sys.setprofile(watch)
    try:
        yield
    finally:
        sys.setprofile(previous)
    if used:   # the learner's code caught the error and went on
        raise AssertionError(message(used[0]))
