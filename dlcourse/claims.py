"""Numbers the prose states, checked when a notebook runs in full mode.

A notebook that says "the averaged weights land within 2x the floor" computes that figure in a cell and
states it through :func:`claim`, with the range the prose relies on::

    ratio = claim("ema_over_floor", fd_ema / floor, 0.5, 2.0)

The learner sees ``ema_over_floor: 1.13 (expected 0.5-2 in full mode)``. Fast mode (tests, nbgrader)
computes smaller versions of the figures, so the range is only checked in full mode: ``make check-full``
(``scripts/check_full.py``) runs every notebook in full mode with ``DLCOURSE_CLAIMS`` naming a file, and
each claim appends one JSON line to it, ``{"name", "value", "low", "high", "ok"}``. A value outside its
range never stops the learner's notebook; it fails the full-mode check, which is run before a release.
"""

from __future__ import annotations

import json
import math
import os

from .fast import fast_mode

ENV = "DLCOURSE_CLAIMS"


def _number(value) -> float:
    """``value`` as a Python float (a float, an int, a one-element tensor or array); NaN if it is none of these."""
    try:
        if hasattr(value, "item"):
            value = value.item()
        return float(value)
    except (TypeError, ValueError, RuntimeError):
        return math.nan


def _format(x: float) -> str:
    return f"{x:.3g}" if math.isfinite(x) else str(x)


def within(value: float, low: float, high: float) -> bool:
    """True if ``value`` is a finite number in ``[low, high]``."""
    return math.isfinite(value) and low <= value <= high


def claim(name: str, value: float, low: float, high: float) -> float:
    """Print ``name: value (expected low-high in full mode)`` and return ``value`` unchanged.

    Args:
        name: the figure's name, the same wherever the notebook is run (e.g. ``"ema_over_floor"``).
        value: the measured figure (a number or a one-element tensor).
        low, high: the range the prose states or relies on, checked in full mode only.

    When the environment variable ``DLCOURSE_CLAIMS`` names a file and the notebook runs in full mode,
    appends ``{"name", "value", "low", "high", "ok"}`` to it as one JSON line. Never raises: a value
    that is not a number is recorded as NaN (and fails the full-mode check), a file that cannot be
    written is reported in the printed line.
    """
    try:
        number = _number(value)
        low_f, high_f = _number(low), _number(high)
        note = ""
        path = os.environ.get(ENV, "").strip()
        if path and not fast_mode():
            record = {"name": str(name), "value": number if math.isfinite(number) else str(number),
                      "low": low_f, "high": high_f, "ok": within(number, low_f, high_f)}
            try:
                with open(path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(record) + "\n")
            except OSError as err:
                note = f" [not recorded: {err}]"
        print(f"{name}: {_format(number)} (expected {_format(low_f)}-{_format(high_f)} in full mode){note}")
    except Exception as err:  # noqa: BLE001 - a claim must never stop the learner's notebook
        print(f"{name}: could not state this figure ({type(err).__name__}: {err})")
    return value
