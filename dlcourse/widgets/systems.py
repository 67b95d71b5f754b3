"""A prompt box across the systems of notebook 10: one prompt, each system's images, time and judge's reading.

    systems_rows(runs)                 -> one (3, H, W) image per system, every system's images at one size
    systems_prompt_box(systems, judge) -> a text box and a Generate button over ``run_systems``' rows

The computation is ``dlcourse.systems.side_by_side.run_systems`` (tested there); while nbgrader executes a
notebook the builder builds nothing, prints one line and returns None.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..plotting import image_grid
from ..validation import check_int
from ._base import image_widget, png_bytes, set_png, skip_while_grading

__all__ = ["systems_prompt_box", "systems_rows"]


def systems_rows(runs) -> list[torch.Tensor]:
    """Each run's images as one row, all enlarged (nearest pixel) to the largest system's size.

    Args:
        runs: ``SystemRun`` s (``run_systems``), each with (n, 3, H, W) images.

    Returns:
        One (3, H', W') image per run, of equal size when the runs have the same n.
    """
    runs = list(runs)
    if not runs:
        raise ValueError("runs: expected at least one SystemRun, got none")
    size = max(r.images.shape[-1] for r in runs)
    return [image_grid(F.interpolate(r.images, size=(size, size), mode="nearest"), nrow=len(r.images))
            for r in runs]


def _caption(run) -> str:
    n = len(run.images)
    return (f"{run.name} ({run.idea}): {run.seconds_per_image:.3f} s per image, {run.calls_per_image} calls; "
            f"the judge reads {round(run.followed * n)} of {n} as the prompt "
            f"({round(run.valid * n)} clean shapes)")


def systems_prompt_box(systems, judge, *, prompt: str = "a large red circle at the top left", n: int = 4,
                       seed: int = 0, display_size: int = 300):
    """A text box and a Generate button: the prompt through every system, one row each.

    Args:
        systems: ``System`` s (``dlcourse.systems.side_by_side.load_systems``).
        judge: a ``dlcourse.judge.Judge``.
        prompt: the starting prompt.
        n: images per system; seed: the same starting noise seed for every system.
        display_size: width of each row's picture, in screen pixels.

    Returns:
        An ``ipywidgets.VBox`` with attributes ``text``, ``button``, ``label``, ``rows`` (a (label, image) pair per
        system) and ``generate()``; None while nbgrader executes the notebook.
    """
    if skip_while_grading():
        return None
    import ipywidgets as widgets

    from ..systems.side_by_side import run_systems

    systems = list(systems)
    n = check_int("n", n, minimum=1)
    run_systems(systems[:1], prompt, judge, n=1, seed=seed)          # a bad prompt or system fails here, at once
    text = widgets.Text(value=prompt, description="prompt", layout=widgets.Layout(width="420px"))
    button = widgets.Button(description="Generate", button_style="primary")
    label = widgets.Label()
    rows = [(widgets.Label(), image_widget()) for _ in systems]

    def generate(_=None):
        try:
            runs = run_systems(systems, text.value, judge, n=n, seed=seed)
        except ValueError as error:
            label.value = str(error)
            return
        label.value = f"{text.value!r}, {n} images per system from the same seed"
        for (row_label, image), run, picture in zip(rows, runs, systems_rows(runs)):
            row_label.value = _caption(run)
            set_png(image, png_bytes(picture, display_size))

    button.on_click(generate)
    generate()
    box = widgets.VBox([widgets.HBox([text, button]), label] + [w for pair in rows for w in pair])
    box.text, box.button, box.label, box.rows, box.generate = text, button, label, rows, generate
    return box
