"""A guidance-scale slider: one class, one fixed set of starting noises, w from 0 up (notebook 05).

A plain, tested computation sits under a one-line builder:

    guided_grid(model, schedule, label, w)         -> (n, C, H, W) samples of class ``label`` at scale w
    guidance_explorer(model, schedule)             -> a slider for w and a selector for the class

The starting noise is drawn from ``seed`` and is the same for every w and every class, so
moving the slider shows what guidance does to the *same* samples; it is drawn on the CPU and
moved to the model's device, so a seed gives the same grid on every device. Sampling is DDIM
(deterministic, ``dlcourse.samplers.sample_ddim``) with ``guidance_scale = w``: 0 is the
unconditional model, 1 the conditional one, more pushes further towards the class. While
nbgrader executes a notebook (``dlcourse.fast.grading()``) the builder builds nothing: it
prints one line and returns None.
"""

from __future__ import annotations

import math

import torch

from ..device import model_device
from ..fast import pick
from ..plotting import image_grid
from ..samplers import sample_ddim
from ..schedules import NoiseSchedule
from ..tensors import seeded_noise
from ..validation import check_int, check_number, check_positive, check_schedule
from ._base import image_widget, png_bytes, set_png, skip_while_grading

__all__ = ["guidance_explorer", "guided_grid"]


def _check_model(model) -> int:
    num_classes = getattr(model, "num_classes", None)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"model: expected a class-conditional model with num_classes >= 1 (its null label), "
                         f"got num_classes = {num_classes!r}")
    return num_classes


@torch.no_grad()
def guided_grid(model, schedule: NoiseSchedule, label: int, w: float, n: int = 16, seed: int = 0,
                steps: int = 20, image_shape=(3, 16, 16)) -> torch.Tensor:
    """``n`` samples of class ``label`` with classifier-free guidance of scale ``w``.

    ``x_T ~ N(0, I)`` from ``seed`` (the same for every ``label`` and ``w``), then DDIM with
    ``steps`` model calls and ``cond = label`` for every sample.

    Args:
        model: a class-conditional denoiser with ``num_classes`` (label ``num_classes`` is null).
        schedule: the schedule it was trained with.
        label: the class, 0..num_classes-1.
        w: the guidance scale (0 unconditional, 1 conditional).
        n: number of samples.
        seed: seed of the starting noise.
        steps: DDIM steps.
        image_shape: (C, H, W) of one sample.

    Returns:
        (n, C, H, W) float32 samples on the CPU, in [-1, 1] up to the sampler's last step.
    """
    num_classes = _check_model(model)
    check_schedule("schedule", schedule)
    label = check_int("label", label, minimum=0, maximum=num_classes - 1)
    w = check_number("w", w)
    check_positive("n", n, integer=True)
    check_positive("steps", steps, integer=True)
    device = model_device(model)
    x_T = seeded_noise((n, *image_shape), seed, device=device)                 # (n, C, H, W), same for every w
    labels = torch.full((n,), label, dtype=torch.long, device=device)           # (n,)
    x = sample_ddim(model, x_T, schedule, steps, cond=labels, guidance_scale=w, progress=False)
    return x.float().cpu()


def guidance_explorer(model, schedule: NoiseSchedule, *, class_names=None, label: int = 0, w: float = 1.0,
                      n: int = 16, seed: int = 0, steps: int | None = None, judge=None, w_max: float = 10.0,
                      image_shape=(3, 16, 16), display_size: int = 400):
    """Slide the guidance scale w and pick a class: a grid of samples from the same noise.

    Args:
        model, schedule, n, seed, image_shape: as in :func:`guided_grid`.
        class_names: a name per class for the selector ("class 0", ... by default).
        label, w: the starting class and scale.
        steps: DDIM steps (20, or 8 in fast mode, by default).
        judge: optional ``dlcourse.judge.Judge``: then the caption also says how many samples
            it accepts as valid and how many of those show the requested class.
        w_max: the slider's largest w.
        display_size: the grid is enlarged by whole pixels to at most this many pixels.

    Returns:
        An ``ipywidgets.VBox`` with attributes ``slider`` (w), ``selector`` (the class),
        ``label``, ``image`` and ``redraw()``; None while nbgrader executes the notebook.
    """
    if skip_while_grading():
        return None
    import ipywidgets as widgets

    num_classes = _check_model(model)
    names = [f"class {c}" for c in range(num_classes)] if class_names is None else [str(c) for c in class_names]
    if len(names) != num_classes:
        raise ValueError(f"class_names: expected {num_classes} names, one per class, got {len(names)}")
    label = check_int("label", label, minimum=0, maximum=num_classes - 1)
    w = check_number("w", w, minimum=0.0, maximum=w_max)                    # the slider runs from 0 to w_max
    steps = pick(20, 8) if steps is None else steps
    nrow = max(1, math.ceil(math.sqrt(n)))

    slider = widgets.FloatSlider(value=w, min=0.0, max=w_max, step=0.5, description="w",
                                 continuous_update=False, readout_format=".1f")
    selector = widgets.Dropdown(options=[(name, c) for c, name in enumerate(names)], value=label,
                                description="class")
    image = image_widget()
    caption = widgets.Label()

    def redraw(_=None):
        c, scale = int(selector.value), float(slider.value)
        x = guided_grid(model, schedule, c, scale, n=n, seed=seed, steps=steps, image_shape=image_shape)
        set_png(image, png_bytes(image_grid(x, nrow=nrow), display_size))
        kind = "unconditional" if scale == 0 else "conditional, no guidance" if scale == 1 else "guided"
        text = f"{names[c]}, w = {scale:g} ({kind})"
        if judge is not None:
            p = judge.predict(x)
            valid = p["valid"]
            right = int((p["shape_probs"].argmax(1)[valid] == c).sum())
            text += f": the judge accepts {int(valid.sum())} of {n}, and {right} of those show a {names[c]}"
        caption.value = text

    slider.observe(redraw, names="value")
    selector.observe(redraw, names="value")
    redraw()
    box = widgets.VBox([widgets.HBox([selector, slider]), caption, image])
    box.slider, box.selector, box.label, box.image, box.redraw = slider, selector, caption, image, redraw
    return box
