"""A reference-image picker and a lambda slider for IP-Adapter (notebook 07b).

A plain, tested computation sits under a one-line builder:

    image_prompt_samples(model, schedule, reference, scale)   -> (n, 3, H, W) samples read from the reference
    image_prompt_explorer(model, schedule, references)        -> a reference menu, a lambda slider, a prompt

``model`` is a ``dlcourse.conditioning.ip_adapter.IPAdapterModel`` (``load_ip_adapter``). The
samples are DDIM from noise drawn on the CPU from ``seed``, the same for every reference, lambda
and prompt, so moving the slider shows what the image prompt does to the *same* samples. While
nbgrader executes a notebook (``dlcourse.fast.grading()``) the builder builds nothing: it prints
one line and returns None.
"""

from __future__ import annotations

import torch

from ..device import model_device
from ..fast import pick
from ..plotting import image_grid
from ..samplers import sample_ddim
from ..schedules import NoiseSchedule
from ..tensors import seeded_noise
from ..validation import check_int, check_number, check_positive, check_schedule
from ._base import image_widget, png_bytes, set_png, skip_while_grading
from .text import check_prompt

__all__ = ["image_prompt_explorer", "image_prompt_samples"]


def _check_model(model):
    from ..conditioning.ip_adapter import IPAdapterModel

    if not isinstance(model, IPAdapterModel):
        raise TypeError(f"model: expected an IPAdapterModel (dlcourse.conditioning.ip_adapter.load_ip_adapter), "
                        f"got {type(model).__name__}")
    return model


@torch.no_grad()
def image_prompt_samples(model, schedule: NoiseSchedule, reference: torch.Tensor, scale: float, *,
                         prompt: str = "", w: float = 1.0, n: int = 8, seed: int = 0, steps: int = 20,
                         prediction_type: str = "v_prediction") -> torch.Tensor:
    """``n`` samples prompted by one reference image with weight ``scale`` (lambda) and a text prompt.

    ``x_T`` from ``seed``, DDIM with ``steps`` steps, ``cond = model.cond([prompt] * n, reference)``
    and ``guidance_scale = w``. The model's lambda is set to ``scale`` for the call and put back after.

    Args:
        model: an ``IPAdapterModel``.
        schedule: its base model's schedule.
        reference: (3, H, W) one image in [-1, 1].
        scale: lambda; 0 is the text-only model.
        prompt: a caption of the vocabulary, "" for the empty prompt.
        w: classifier-free guidance scale (1 none).

    Returns:
        (n, 3, H, W) float32 on the CPU.
    """
    model = _check_model(model)
    check_schedule("schedule", schedule)
    if not isinstance(reference, torch.Tensor) or reference.ndim != 3:
        raise ValueError(f"reference: expected one image (3, H, W), got "
                         f"{tuple(reference.shape) if isinstance(reference, torch.Tensor) else type(reference).__name__}")
    scale = check_number("scale", scale)
    prompt = check_prompt(model.tokenizer, prompt)
    w = check_number("w", w)
    check_positive("n", n, integer=True)
    check_positive("steps", steps, integer=True)
    device = model_device(model)
    cond = model.cond([prompt] * n, reference[None].to(device))
    x_T = seeded_noise((n, 3, *reference.shape[1:]), seed, device=device)
    before = model.scale
    try:
        x = sample_ddim(model.set_scale(scale), x_T, schedule, steps, cond=cond, guidance_scale=w,
                        prediction_type=prediction_type, progress=False)
    finally:
        model.set_scale(before)
    return x.float().cpu()


def image_prompt_explorer(model, schedule: NoiseSchedule, references: torch.Tensor, *, names=None,
                          prediction_type: str = "v_prediction", judge=None, index: int = 0, scale: float = 1.0,
                          prompt: str = "", w: float = 1.0, n: int = 8, seed: int = 0, steps: int | None = None,
                          display_size: int = 520):
    """Pick a reference image, slide lambda from 0 to 1, type a prompt: samples beside the reference.

    Args:
        model, schedule, prediction_type, w, n, seed: as in :func:`image_prompt_samples`.
        references: (N, 3, H, W) the images to choose from, in [-1, 1].
        names: a name per reference for the menu (its caption, say); "reference i" by default.
        judge: optional ``dlcourse.judge.Judge``: the caption then says in how many samples the
            judge reads the reference's shape and colour (read from the reference by the judge too).
        index, scale, prompt: the starting reference, lambda and prompt.
        steps: DDIM steps (20, or 4 in fast mode, by default).

    Returns:
        An ``ipywidgets.VBox`` with attributes ``picker``, ``slider``, ``text``, ``button``, ``label``,
        ``image`` and ``redraw()``; None while nbgrader executes the notebook.
    """
    if skip_while_grading():
        return None
    import ipywidgets as widgets

    model = _check_model(model)
    if not isinstance(references, torch.Tensor) or references.ndim != 4 or references.shape[0] < 1:
        raise ValueError(f"references: expected (N, 3, H, W) images, got "
                         f"{tuple(references.shape) if isinstance(references, torch.Tensor) else type(references).__name__}")
    N = references.shape[0]
    names = [f"reference {i}" for i in range(N)] if names is None else [str(s) for s in names]
    if len(names) != N:
        raise ValueError(f"names: expected {N} names, one per reference, got {len(names)}")
    index = check_int("index", index, minimum=0, maximum=N - 1)
    scale = check_number("scale", scale, minimum=0.0, maximum=1.0)
    check_prompt(model.tokenizer, prompt)
    steps = pick(20, 4) if steps is None else steps
    picker = widgets.Dropdown(options=[(name, i) for i, name in enumerate(names)], value=index,
                              description="reference", layout=widgets.Layout(width="420px"))
    slider = widgets.FloatSlider(value=scale, min=0.0, max=1.0, step=0.1, description="lambda",
                                 continuous_update=False, readout_format=".1f")
    text = widgets.Text(value=prompt, description="prompt", placeholder="(the empty prompt)",
                        layout=widgets.Layout(width="420px"))
    button = widgets.Button(description="Generate", button_style="primary")
    label = widgets.Label()
    image = image_widget()

    def redraw(_=None):
        reference = references[int(picker.value)]
        try:
            x = image_prompt_samples(model, schedule, reference, float(slider.value), prompt=text.value, w=w, n=n,
                                     seed=seed, steps=steps, prediction_type=prediction_type)
        except ValueError as error:
            label.value = str(error)
            return
        grid = image_grid(torch.cat([reference[None].cpu().float(), torch.ones_like(reference[None]).cpu(), x]),
                          nrow=n + 2)
        set_png(image, png_bytes(grid, display_size))
        said = check_prompt(model.tokenizer, text.value) or "the empty prompt"
        caption = f"left: the reference; right: {n} samples at lambda = {slider.value:g} with {said}"
        if judge is not None:
            ref, out = judge.predict(reference[None].to(torch.float32)), judge.predict(x)
            same_shape = out["shape_probs"].argmax(1) == ref["shape_probs"].argmax(1)
            same_color = out["color_probs"].argmax(1) == ref["color_probs"].argmax(1)
            caption += (f"; the judge reads the reference's shape in {int(same_shape.sum())} of {n}, "
                        f"its colour in {int(same_color.sum())}")
        label.value = caption

    picker.observe(redraw, names="value")
    slider.observe(redraw, names="value")
    button.on_click(redraw)
    redraw()
    box = widgets.VBox([widgets.HBox([picker, slider]), widgets.HBox([text, button]), label, image])
    box.picker, box.slider, box.text, box.button, box.label, box.image, box.redraw = (
        picker, slider, text, button, label, image, redraw)
    return box
