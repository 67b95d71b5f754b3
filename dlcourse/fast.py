"""Fast mode: smaller computations for tests and autograding.

Full mode is what a learner runs. Fast mode is on when ``DLCOURSE_FAST`` is set to
a true value (``1``, ``true``, ``yes``), and also whenever nbgrader is executing the
notebook (it sets ``NBGRADER_EXECUTION`` during ``validate`` and ``autograde``).
"""

from __future__ import annotations

import os

_TRUE = {"1", "true", "yes", "on"}


def grading() -> bool:
    """True while nbgrader executes the notebook (validate or autograde)."""
    return bool(os.environ.get("NBGRADER_EXECUTION"))


def fast_mode() -> bool:
    """True in fast mode: ``DLCOURSE_FAST`` set, or nbgrader executing."""
    return os.environ.get("DLCOURSE_FAST", "").strip().lower() in _TRUE or grading()


def pick(full, fast):
    """Return ``fast`` in fast mode and ``full`` otherwise.

    Example: ``steps = pick(full=2000, fast=20)``.
    """
    return fast if fast_mode() else full
