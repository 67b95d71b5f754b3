"""Few-step samplers side by side, one slider for the number of network calls (notebook 08).

A plain, tested computation sits under a one-line builder:

    few_step_samples(samplers, x_T, calls)             -> {name: (N, 2) samples} after that many calls
    few_step_figure(samples, quality)                  -> a PNG: one scatter plot per sampler, with its quality
    few_step_explorer(samplers, x_T, quality)          -> a slider over 1, 2, 4, 8 calls and the figure

A sampler is any function ``sampler(x_T, calls) -> samples`` of 2-D points: a flow's Euler steps
(``dlcourse.rectified_flow.sample_flow``), a consistency model's multistep sampling
(``dlcourse.consistency.multistep_sample``). All start from the same noise, so what differs between
the panels is the sampler alone. While nbgrader executes a notebook the builder builds nothing: it
prints one line and returns None.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..plotting import plot_2d
from ..validation import check_int, check_tensor
from ._base import figure_png, image_widget, set_png, skip_while_grading

__all__ = ["few_step_explorer", "few_step_figure", "few_step_samples"]

CALLS = (1, 2, 4, 8)


def _check_samplers(samplers) -> dict:
    if not isinstance(samplers, dict) or not samplers or not all(callable(f) for f in samplers.values()):
        raise ValueError(f"samplers: expected a non-empty dict {{name: sampler(x_T, calls)}}, got "
                         f"{type(samplers).__name__}" + (f" with {len(samplers)} entries" if isinstance(samplers, dict)
                                                         else ""))
    return samplers


@torch.no_grad()
def few_step_samples(samplers: dict[str, Callable], x_T: torch.Tensor, calls: int) -> dict[str, torch.Tensor]:
    """Each sampler's samples from the same noise after ``calls`` network calls.

    Args:
        samplers: ``{name: sampler(x_T, calls) -> (N, 2)}``.
        x_T: (N, 2) the starting noise, shared by all.
        calls: network calls each sampler may spend, >= 1.

    Returns:
        ``{name: (N, 2) samples on the CPU}``, in the order of ``samplers``.
    """
    _check_samplers(samplers)
    check_tensor("x_T", x_T, ndim=2, floating=True)
    calls = check_int("calls", calls, minimum=1)
    out = {}
    for name, sampler in samplers.items():
        samples = sampler(x_T, calls)
        if not isinstance(samples, torch.Tensor) or samples.shape != x_T.shape:
            got = tuple(samples.shape) if isinstance(samples, torch.Tensor) else type(samples).__name__
            raise ValueError(f"samplers[{name!r}]: expected samples shaped like x_T {tuple(x_T.shape)}, got {got}")
        out[name] = samples.detach().float().cpu()
    return out


def few_step_figure(samples: dict[str, torch.Tensor], quality: Callable | None = None, *, calls: int | None = None,
                    lim: float = 2.5, size: float = 3.2) -> bytes:
    """One scatter plot per sampler, titled with its name and, given ``quality(samples) -> float``, its score."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size * len(samples), size + 0.4), layout="constrained")
    axes = fig.subplots(1, len(samples), squeeze=False)[0]
    for ax, (name, x) in zip(axes, samples.items()):
        title = name if calls is None else f"{name}, {calls} call{'s' * (calls > 1)}"
        if quality is not None:
            title += f"\n{quality(x):.1f}x the floor"
        plot_2d(x, ax=ax, title=title, s=2, alpha=0.5)
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim), xticks=[], yticks=[])
    return figure_png(fig)


def few_step_explorer(samplers: dict[str, Callable], x_T: torch.Tensor, quality: Callable | None = None, *,
                      calls: int = 1, lim: float = 2.5):
    """A slider over 1, 2, 4 and 8 network calls, and every sampler's samples from the same noise.

    Args:
        samplers: ``{name: sampler(x_T, calls) -> (N, 2)}``, e.g. a flow's Euler steps and a consistency
            model's multistep sampling.
        x_T: (N, 2) the starting noise.
        quality: ``quality(samples) -> float`` shown under each panel (the energy distance as a
            multiple of its floor, say); None to show none.
        calls: the slider's first value, one of 1, 2, 4, 8.
        lim: the plots show [-lim, lim]^2.

    Returns:
        An ``ipywidgets.VBox`` with attributes ``slider``, ``image``, ``redraw()`` and ``last`` (the
        latest samples); None while nbgrader executes the notebook.
    """
    if skip_while_grading():
        return None
    import ipywidgets as widgets

    _check_samplers(samplers)
    check_tensor("x_T", x_T, ndim=2, floating=True)
    if calls not in CALLS:
        raise ValueError(f"calls: expected one of {CALLS}, got {calls!r}")
    slider = widgets.SelectionSlider(options=list(CALLS), value=calls, description="network calls",
                                     continuous_update=False)
    image = image_widget()
    box = widgets.VBox([slider, image])
    cache = {}

    def redraw(_=None):
        k = int(slider.value)
        if k not in cache:
            cache[k] = few_step_samples(samplers, x_T, k)
        set_png(image, few_step_figure(cache[k], quality, calls=k, lim=lim))
        box.last = cache[k]

    slider.observe(redraw, names="value")
    redraw()
    box.slider, box.image, box.redraw = slider, image, redraw
    return box
