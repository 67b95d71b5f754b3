"""Pick a sampler, a number of steps and their spacing, and see what a trained model draws (notebook 04).

A plain, tested computation sits under a one-line builder:

    sampler_preview(model, schedule, name, steps, n, seed)  -> (images, seconds)
    sampler_verdict(judge, images)                           -> what the judge says of the samples
    sampler_explorer(model, schedule)                        -> sampler and spacing dropdowns, a steps slider

The starting noise x_T is drawn from ``seed`` and is the same for every sampler and
step count, so what changes in the grid is the sampler's doing alone (DDPM and DDIM
with eta > 0 also draw their added noise from ``seed + 1``). Both are drawn on the CPU and
moved to the model's device, so a seed gives the same samples on every device. What each
sampler is called and how many network calls it makes come from the samplers' registry
(``dlcourse.samplers.SAMPLER_LABELS``, ``model_calls``). While nbgrader executes a notebook
(``dlcourse.fast.grading()``) the builder builds nothing: it prints one line and returns None.
"""

from __future__ import annotations

import time

import torch

from ..device import model_device
from ..parameterization import PREDICTION_TYPES
from ..plotting import image_grid
from ..samplers import SAMPLER_LABELS, SAMPLERS, SPACINGS, get_sampler, model_calls
from ..schedules import NoiseSchedule
from ..tensors import seeded_noise
from ..validation import check_choice, check_int, check_positive, check_schedule
from ._base import image_widget, png_bytes, set_png, skip_while_grading

__all__ = ["sampler_explorer", "sampler_preview", "sampler_verdict"]


def _check_args(schedule, name, steps, n, shape):
    check_schedule("schedule", schedule)
    check_choice("name", name, SAMPLERS)
    check_int("steps", steps, minimum=1)
    if steps > schedule.T:
        raise ValueError(f"steps: expected at most the schedule's T = {schedule.T}, got {steps}")
    check_positive("n", n, integer=True)
    if not (isinstance(shape, (tuple, list)) and len(shape) >= 1
            and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)):
        raise ValueError(f"shape: expected the shape of one sample as positive ints, e.g. (3, 16, 16), got {shape!r}")


@torch.no_grad()
def sampler_preview(model, schedule: NoiseSchedule, name: str, steps: int, n: int = 16, seed: int = 0, *,
                    shape=(3, 16, 16), prediction_type: str = "epsilon", clip_x0: bool = True, **sampler_kwargs):
    """Draw ``n`` samples with sampler ``name`` in ``steps`` steps, and time it.

    ``x_T ~ N(0, I)`` of shape ``(n, *shape)`` comes from ``torch.Generator().manual_seed(seed)``
    (``dlcourse.tensors.seeded_noise``: on the CPU, then moved to the model's device); the
    sampler's own noise from a CPU generator seeded with ``seed + 1``. So the result equals
    ``get_sampler(name)(model, x_T, schedule, steps, generator=torch.Generator().manual_seed(seed + 1), ...)``
    with that x_T, and is the same on every device up to rounding.

    Args:
        model: a trained denoiser ``model(x_t, t, cond=None)``.
        schedule: the schedule the model was trained with.
        name: one of ``dlcourse.samplers.SAMPLERS``: "ddpm", "ddim", "euler", "heun", "dpmpp_2m".
        steps: number of steps, 1..T (Heun makes ``2 steps - 2`` model calls).
        n: number of samples.
        seed: seed of the starting noise.
        shape: the shape of one sample, e.g. (3, 16, 16) or (2,).
        prediction_type, clip_x0, sampler_kwargs: passed on to the sampler (e.g. ``eta`` for DDIM).

    Returns:
        ``(images, seconds)``: (n, *shape) float32 samples on the CPU, and the sampler's wall
        time in seconds (the noise drawing and the copy to the CPU not included).
    """
    _check_args(schedule, name, steps, n, shape)
    check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
    device = model_device(model)
    x_T = seeded_noise((n, *shape), seed, device=device)                        # (n, *shape)
    generator = torch.Generator().manual_seed(seed + 1)                         # CPU: the same noise on every device
    sampler = get_sampler(name)
    start = time.perf_counter()
    images = sampler(model, x_T, schedule, steps, prediction_type=prediction_type, clip_x0=clip_x0,
                     generator=generator, progress=False, **sampler_kwargs)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    return images.float().cpu(), seconds


def sampler_verdict(judge, images: torch.Tensor) -> tuple[int, str]:
    """How many of ``images`` the judge accepts as clean shapes, and a sentence saying so.

    Args:
        judge: a ``dlcourse.judge.Judge``.
        images: (n, 3, H, H) samples in [-1, 1].

    Returns:
        ``(accepted, text)``: the count of samples with ``judge.predict(images)["valid"]``, and
        "the judge accepts k of n as clean shapes (p%)".
    """
    if not hasattr(judge, "predict"):
        raise TypeError(f"judge: expected a dlcourse.judge.Judge (load_judge()), got {type(judge).__name__}")
    valid = judge.predict(images)["valid"]
    accepted, n = int(valid.sum()), len(valid)
    return accepted, f"the judge accepts {accepted} of {n} as clean shapes ({accepted / n:.0%})"


def _default_judge(shape):
    """The shipped judge for RGB square images (it scores any size, resized to its 16 px), else None."""
    if len(shape) == 3 and shape[0] == 3 and shape[1] == shape[2]:
        from ..judge import load_judge

        return load_judge(16)
    return None


def sampler_explorer(model, schedule: NoiseSchedule, *, name: str = "dpmpp_2m", steps: int = 20,
                     spacing: str = "linspace", n: int = 32, seed: int = 0, shape=(3, 16, 16), max_steps: int | None = None,
                     nrow: int = 16, prediction_type: str = "epsilon", clip_x0: bool = True,
                     display_size: int = 720, judge="auto"):
    """Choose a sampler, a number of steps and their spacing; see ``n`` samples from the same noise and the
    seconds they took.

    Args:
        model: a trained image denoiser ``model(x_t, t, cond=None)``.
        schedule: the schedule the model was trained with.
        name: the sampler shown first.
        steps: the number of steps shown first (the slider runs from 1 to ``max_steps``).
        spacing: the timestep spacing shown first, one of ``dlcourse.samplers.SPACINGS``.
        n: samples in the grid; seed: seed of their starting noise (fixed while you explore).
        shape: one sample's (C, H, W).
        max_steps: the slider's largest value (at most T), written beside it; by default 200 (or T if
            smaller): DDPM at 200 steps is in reach.
        nrow: images per row of the grid.
        prediction_type, clip_x0: passed on to the samplers.
        display_size: the grid is enlarged by whole pixels to at most this many pixels across.
        judge: a ``dlcourse.judge.Judge`` whose verdict on the samples the caption gives
            (:func:`sampler_verdict`); "auto" (default) loads the shipped judge for RGB images
            (``load_judge(16)``; it resizes larger ones), None shows no verdict.

    Returns:
        An ``ipywidgets.VBox`` with attributes ``dropdown`` (the sampler's name), ``slider``
        (steps), ``spacing`` (the spacing's dropdown), ``image`` (the grid), ``label`` (what
        was drawn, how long it took and the judge's verdict), ``redraw()`` and ``last`` (the latest
        ``(images, seconds)``); None while nbgrader executes the notebook.
    """
    if skip_while_grading():
        return None
    import ipywidgets as w

    _check_args(schedule, name, steps, n, shape)
    if len(shape) != 3 or shape[0] not in (1, 3):
        raise ValueError(f"shape: expected an image shape (C, H, W) with C = 1 or 3, got {tuple(shape)}")
    max_steps = min(200, schedule.T) if max_steps is None else check_int("max_steps", max_steps, minimum=1)
    if not steps <= max_steps <= schedule.T:
        raise ValueError(f"max_steps: expected a value from steps = {steps} to T = {schedule.T}, got {max_steps}")
    check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
    check_choice("spacing", spacing, SPACINGS)
    if isinstance(judge, str):
        if judge != "auto":
            raise ValueError(f"judge: expected a Judge, 'auto' or None, got {judge!r}")
        judge = _default_judge(shape)

    dropdown = w.Dropdown(options=[(SAMPLER_LABELS[k], k) for k in SAMPLERS], value=name, description="sampler")
    # The slider's box takes typed numbers too, and the browser clamps one outside 1..max_steps to the
    # nearest end: the range is written beside the slider, so that no clamping goes unseen.
    slider = w.IntSlider(value=steps, min=1, max=max_steps, step=1, description="steps", continuous_update=False)
    steps_range = w.Label(f"(1 to {max_steps})", layout=w.Layout(width="auto", min_width="6em"))
    spacing_menu = w.Dropdown(options=list(SPACINGS), value=spacing, description="spacing")
    image = image_widget()
    label = w.Label()
    verdict = w.Label()
    box = w.VBox([w.HBox([dropdown, slider, steps_range, spacing_menu]), label, verdict, image])

    def redraw(_=None):
        label.value = "sampling..."
        images, seconds = sampler_preview(model, schedule, dropdown.value, int(slider.value), n, seed, shape=shape,
                                          prediction_type=prediction_type, clip_x0=clip_x0,
                                          spacing=spacing_menu.value)
        set_png(image, png_bytes(image_grid(images, nrow=nrow), display_size))
        steps_now = int(slider.value)
        calls = model_calls(dropdown.value, steps_now)
        plural = lambda k, word: f"{k} {word}" + ("" if k == 1 else "s")                       # noqa: E731
        label.value = (f"{SAMPLER_LABELS[dropdown.value]}, {plural(steps_now, 'step')} "
                       f"({spacing_menu.value}) = "
                       f"{plural(calls, 'network call')}: {seconds:.2f} s for {n} samples "
                       f"({seconds / calls * 1000:.0f} ms per call)")
        verdict.value = "" if judge is None else sampler_verdict(judge, images)[1]
        box.last = (images, seconds)

    for control in (dropdown, slider, spacing_menu):
        control.observe(redraw, names="value")
    redraw()
    box.dropdown, box.slider, box.spacing, box.image, box.label, box.redraw = (dropdown, slider, spacing_menu, image,
                                                                               label, redraw)
    box.verdict, box.judge = verdict, judge
    return box
