"""A control picker for ControlNet: an edge map in, samples with and without the control out (notebook 07b).

A plain, tested computation sits under a one-line builder:

    drawn_controls(size)                         -> {name: (1, 1, H, W) edge map}: outlines built by hand
    controlled_samples(model, schedule, control, prompt, ...)   -> (without, with): (n, 3, H, W) each
    control_explorer(model, schedule, data)      -> a control picker, a prompt box and the two rows of samples

``controlled_samples`` draws ``n`` samples from the same starting noise twice: with the control unbound (the
base model) and bound (``ControlledModel.set_control``), DDIM with ``steps`` calls and guidance ``w`` for the
prompt. The drawn controls are outlines no caption of the data names: a square and a circle off the nine
places, a ring too large for the data's two sizes, and two shapes at once. While nbgrader executes a
notebook (``dlcourse.fast.grading()``) the builder builds nothing: it prints one line and returns None.
"""

from __future__ import annotations

import torch

from ..conditioning.controlnet import ControlledModel, check_control
from ..device import model_device
from ..fast import pick
from ..plotting import image_grid
from ..samplers import sample_ddim
from ..schedules import NoiseSchedule
from ..tensors import seeded_noise
from ..validation import check_int, check_number, check_positive, check_schedule, check_tensor
from ._base import image_widget, png_bytes, set_png, skip_while_grading

__all__ = ["control_explorer", "controlled_samples", "drawn_controls", "outline"]


def outline(size: int, kind: str, center, radius: float, width: float = 1.0) -> torch.Tensor:
    """A hand-built edge map (1, 1, size, size) in [-1, 1]: +1 on the outline of a square or a circle.

    Args:
        size: the side in pixels.
        kind: "square" (|dx|, |dy| <= radius) or "circle".
        center: (x, y) in pixels from the top left (pixel centres at 0.5, 1.5, ...).
        radius: half-width in pixels.
        width: the outline's width in pixels.
    """
    check_int("size", size, minimum=4)
    if kind not in ("square", "circle"):
        raise ValueError(f"kind: expected 'square' or 'circle', got {kind!r}")
    check_positive("radius", radius)
    grid = torch.arange(size, dtype=torch.float32) + 0.5
    dx, dy = grid.view(1, -1) - float(center[0]), grid.view(-1, 1) - float(center[1])     # (1, S), (S, 1)
    dist = torch.maximum(dx.abs(), dy.abs()) if kind == "square" else torch.sqrt(dx**2 + dy**2)
    edge = ((dist - radius).abs() <= width / 2).float()                                  # (S, S)
    return (edge * 2 - 1).view(1, 1, size, size)


def drawn_controls(size: int = 16) -> dict:
    """A few edge maps drawn by hand, none of them a caption of the data: ``{name: (1, 1, size, size)}``."""
    s = size / 16
    two = torch.maximum(outline(size, "square", (4.5 * s, 4.5 * s), 2.5 * s),
                        outline(size, "circle", (11.5 * s, 11.5 * s), 2.5 * s))
    return {"drawn: square between places": outline(size, "square", (6 * s, 10 * s), 3 * s),
            "drawn: small circle off centre": outline(size, "circle", (10 * s, 6 * s), 2.5 * s),
            "drawn: large ring": outline(size, "circle", (8 * s, 8 * s), 6 * s),
            "drawn: two shapes": two}


@torch.no_grad()
def controlled_samples(model: ControlledModel, schedule: NoiseSchedule, control: torch.Tensor, prompt: str = "",
                       *, n: int = 8, w: float = 1.0, steps: int = 20, seed: int = 0,
                       prediction_type: str = "v_prediction") -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` samples for ``prompt`` from the same noise, without and with ``control``.

    Args:
        model: a ``ControlledModel`` over a ``TextToImage``; its bound control is restored afterwards.
        schedule: the base's schedule.
        control: (1, 1, H, W) edge map in [-1, 1].
        prompt: one caption for all n samples ("" is the empty prompt).
        n, w, steps, seed: samples, guidance scale, DDIM steps, seed of the starting noise.
        prediction_type: the base's.

    Returns:
        ``(without, with_control)``: two (n, 3, H, W) float32 tensors on the CPU.
    """
    if not isinstance(model, ControlledModel) or model.pipe is None:
        raise TypeError(f"model: expected a ControlledModel over a TextToImage (load_controlnet), "
                        f"got {type(model).__name__}")
    check_schedule("schedule", schedule)
    if not isinstance(prompt, str):
        raise TypeError(f"prompt: expected one caption (a string), got {type(prompt).__name__}")
    check_positive("n", n, integer=True)
    check_positive("steps", steps, integer=True)
    w = check_number("w", w)
    check_tensor("control", control, ndim=4, floating=True)
    H, W = control.shape[-2:]
    check_control(control, (1, model.unet.config.in_channels, H, W))      # (1, 1, H, W) in [-1, 1]
    device = model_device(model)
    x_T = seeded_noise((n, model.unet.config.in_channels, H, W), seed, device=device)
    cond = model.pipe.cond([prompt] * n)
    bound = model.control
    out = []
    try:
        for c in (None, control.to(device)):
            model.set_control(c)
            x = sample_ddim(model, x_T, schedule, steps, cond=cond, guidance_scale=w,
                            prediction_type=prediction_type, progress=False)
            out.append(x.float().cpu())
    finally:
        model.set_control(bound)
    return out[0], out[1]


def control_explorer(model: ControlledModel, schedule: NoiseSchedule, data=None, *, n_data: int = 8,
                     prompt: str = "", w: float = 1.0, n: int = 8, steps: int | None = None, seed: int = 0,
                     prediction_type: str = "v_prediction", display_size: int = 480):
    """Pick an edge map (from ``data`` or drawn by hand) and a prompt: samples without and with the control.

    Args:
        model, schedule, prompt, w, n, seed, prediction_type: as in :func:`controlled_samples`.
        data: a ``ShapesData`` whose first ``n_data`` edge maps join the drawn ones, or None.
        steps: DDIM steps (20, or 6 in fast mode, by default).
        display_size: the picture is enlarged to about this many pixels wide.

    Returns:
        An ``ipywidgets.VBox`` with attributes ``picker``, ``prompt``, ``label``, ``image`` and ``redraw()``;
        None while nbgrader executes the notebook.
    """
    if skip_while_grading():
        return None
    import ipywidgets as widgets

    size = data.size if data is not None else 16
    controls = {}
    if data is not None:
        for i in range(min(n_data, len(data))):
            controls[f"data: {data.captions[i]}"] = data.edges[i:i + 1]
    controls.update(drawn_controls(size))
    steps = pick(20, 6) if steps is None else check_int("steps", steps, minimum=1)
    picker = widgets.Dropdown(options=list(controls), value=list(controls)[0], description="control",
                              layout=widgets.Layout(width="480px"))
    text = widgets.Text(value=prompt, description="prompt", continuous_update=False,
                        layout=widgets.Layout(width="480px"))
    image = image_widget()
    caption = widgets.Label()

    def redraw(_=None):
        control = controls[picker.value]
        try:
            without, with_control = controlled_samples(model, schedule, control, text.value, n=n, w=w, steps=steps,
                                                       seed=seed, prediction_type=prediction_type)
        except ValueError as err:                     # an unknown word: the tokenizer's message names the vocabulary
            caption.value = str(err)
            return
        top = torch.full_like(without, -1.0)                          # the control, then blank tiles
        top[0] = control[0].expand(3, -1, -1)
        rows = torch.cat([top, without, with_control])                # (3n, 3, H, W)
        set_png(image, png_bytes(image_grid(rows, nrow=n), display_size))
        caption.value = (f"top: the control; middle: the base without it; bottom: with ControlNet "
                         f"(prompt {text.value!r}, w = {w:g}, DDIM-{steps}, the same noise in both rows)")

    picker.observe(redraw, names="value")
    text.observe(redraw, names="value")
    redraw()
    box = widgets.VBox([picker, text, caption, image])
    box.picker, box.prompt, box.label, box.image, box.redraw = picker, text, caption, image, redraw
    return box
