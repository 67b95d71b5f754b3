"""Watching a denoiser work: pick t, see x_t and the model's guess of x_0 (notebook 03).

A plain, tested computation sits under a one-line builder:

    denoise_preview(model, x_0, schedule, t)        -> (x_t, x0_guess)       one image, one t
    denoise_strip(model, x_0, schedule, timesteps)  -> (x_t, x0_guesses)     one image, several t
    denoise_explorer(model, images, schedule)       -> a slider for t and a selector for the image

The noise ``eps`` is drawn from ``seed`` and is the same for every t, so moving t only
changes how much of that one noise is mixed in. The model's output is read as a guess
of x_0 with ``dlcourse.parameterization.to_x0_eps``, whatever it predicts. While
nbgrader executes a notebook (``dlcourse.fast.grading()``) the builder builds nothing:
it prints one line and returns None.
"""

from __future__ import annotations

import torch

from ..device import model_device
from ..forward import q_sample
from ..parameterization import PREDICTION_TYPES, to_x0_eps
from ..schedules import NoiseSchedule
from ..tensors import eval_mode, seeded_noise
from ..validation import check_choice, check_int, check_schedule, check_tensor, check_timesteps
from ._base import check_image, image_widget, png_bytes, png_size, set_png, skip_while_grading

__all__ = ["denoise_explorer", "denoise_preview", "denoise_strip"]


@torch.no_grad()
def denoise_strip(model, x_0: torch.Tensor, schedule: NoiseSchedule, timesteps, seed: int = 0,
                  prediction_type: str = "epsilon"):
    """Noise one image to several timesteps with the same eps, and ask the model for x_0 at each.

    ``x_t = sqrt(ab_t) x_0 + sqrt(1 - ab_t) eps`` (``dlcourse.forward.q_sample``) with
    ``eps ~ N(0, I)`` drawn from ``seed``; the guess is the model's output at ``(x_t, t)``
    converted to x_0 (``to_x0_eps``), not clipped.

    Args:
        model: a denoiser ``model(x_t, t, cond=None)``; run in eval mode (its mode is restored)
            on its own device (``dlcourse.device.model_device``): x_t and t are moved there.
        x_0: (C, H, W) clean image.
        schedule: the schedule the model was trained with.
        timesteps: an int or a sequence / 1-D tensor of N ints in 0..T-1.
        seed: seed of eps.
        prediction_type: what the model predicts: "epsilon", "sample" or "v_prediction".

    Returns:
        ``(x_t, x0_guess)``, each (N, C, H, W) float32 on the CPU.
    """
    x_0 = check_image("x_0", x_0, channels=None).float()                        # (C, H, W) on the CPU
    schedule = check_schedule("schedule", schedule).to("cpu")
    check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
    t = check_timesteps("timesteps", torch.as_tensor(timesteps), schedule.T).cpu().reshape(-1)  # (N,)
    if t.numel() == 0:
        raise ValueError("timesteps: expected at least one timestep, got none")
    N = t.shape[0]
    eps = seeded_noise(x_0.shape, seed)                                         # (C, H, W), the same for every t
    x_t = q_sample(x_0.expand(N, -1, -1, -1), t, schedule, eps.expand(N, -1, -1, -1))  # (N, C, H, W)
    device = model_device(model)
    with eval_mode(model):
        out = model(x_t.to(device), t.to(device)).float().cpu()                 # (N, C, H, W)
    guess, _ = to_x0_eps(out, x_t, schedule.alphas_cumprod[t].float(), prediction_type)
    return x_t, guess


def denoise_preview(model, x_0: torch.Tensor, schedule: NoiseSchedule, t: int, seed: int = 0,
                    prediction_type: str = "epsilon"):
    """The explorer's computation for one timestep: ``(x_t, x0_guess)``, each (C, H, W) on the CPU.

    See :func:`denoise_strip`, of which this is the one-timestep case.
    """
    if isinstance(t, bool) or not isinstance(t, int):
        raise TypeError(f"t: expected an int timestep, got {t!r}")          # range: checked as ``timesteps``
    x_t, guess = denoise_strip(model, x_0, schedule, [t], seed=seed, prediction_type=prediction_type)
    return x_t[0], guess[0]


def denoise_explorer(model, images: torch.Tensor, schedule: NoiseSchedule, *, t: int | None = None, seed: int = 0,
                     prediction_type: str = "epsilon", labels=None, display_size: int = 160):
    """Slide t and pick an image: x_0, x_t and the model's guess of x_0, side by side.

    Args:
        model: a trained denoiser ``model(x_t, t, cond=None)``.
        images: (N, C, H, W) clean images to choose from, C = 1 or 3, values in [-1, 1].
        schedule: the schedule the model was trained with.
        t: the starting timestep (T // 2 by default).
        seed: seed of the fixed noise eps.
        prediction_type: what the model predicts.
        labels: N names for the image selector (default "image 0", "image 1", ...).
        display_size: each picture is enlarged to about this many pixels.

    Returns:
        An ``ipywidgets.VBox`` with attributes ``slider`` (t), ``selector`` (the image's
        index), ``label``, ``images`` (three ``Image`` widgets: x_0, x_t, guess) and
        ``redraw()``; None while nbgrader executes the notebook.
    """
    if skip_while_grading():
        return None
    import ipywidgets as w

    check_tensor("images", images, ndim=4, floating=True)
    if images.shape[0] == 0 or images.shape[1] not in (1, 3):
        raise ValueError(f"images: expected a batch (N, C, H, W) with N >= 1 and C = 1 or 3, "
                         f"got shape {tuple(images.shape)}")
    schedule = check_schedule("schedule", schedule)
    check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
    T = schedule.T
    t = check_int("t", T // 2 if t is None else t, minimum=0, maximum=T - 1)
    labels = [f"image {i}" for i in range(len(images))] if labels is None else [str(x) for x in labels]
    if len(labels) != len(images):
        raise ValueError(f"labels: expected {len(images)} names, one per image, got {len(labels)}")
    images = images.detach().float().cpu()

    slider = w.IntSlider(value=t, min=0, max=T - 1, step=1, description="t", continuous_update=True)
    selector = w.Dropdown(options=[(name, i) for i, name in enumerate(labels)], value=0, description="image")
    pictures = [image_widget() for _ in range(3)]
    # One column per picture, each as wide as the pictures (all N images share one size): the
    # captions wrap inside it instead of widening their column, so the three pictures show at
    # one size, side by side, their captions starting at one height.
    width = png_size(png_bytes(images[0], display_size))[0]
    captions = [w.HTML(value=f"<div style='line-height: 1.3; text-align: center'>{c}</div>",
                       layout=w.Layout(width=f"{width}px"))
                for c in ("clean x_0", "noisy x_t (the model's input)", "the model's guess of x_0")]
    label = w.Label()
    ab = schedule.alphas_cumprod.cpu()

    def redraw(_=None):
        x_0 = images[selector.value]
        x_t, guess = denoise_preview(model, x_0, schedule, int(slider.value), seed=seed,
                                     prediction_type=prediction_type)
        for picture, x in zip(pictures, (x_0, x_t, guess)):
            set_png(picture, png_bytes(x, display_size))
        err = float((guess.clamp(-1, 1) - x_0).square().mean())
        label.value = (f"t = {slider.value} / {T - 1}, alpha_bar_t = {float(ab[slider.value]):.4g}; "
                       f"mean squared error of the guess: {err:.4f}")

    slider.observe(redraw, names="value")
    selector.observe(redraw, names="value")
    redraw()
    column = w.Layout(width=f"{width}px", align_items="center", margin="0 12px 0 0")
    columns = w.HBox([w.VBox([p, c], layout=column) for p, c in zip(pictures, captions)],
                     layout=w.Layout(align_items="flex-start"))
    box = w.VBox([w.HBox([selector, slider]), label, columns])
    box.slider, box.selector, box.label, box.images, box.redraw = slider, selector, label, pictures, redraw
    box.captions = captions
    return box
