"""Schedules side by side: toggle linear, cosine, learned (and yours), slide t (notebook 02).

A plain, tested computation sits under a one-line builder:

    schedule_curves(schedules)             -> alpha_bar_t and log-SNR of each, as NumPy arrays
    collect_schedules(schedules, T)        -> the explorer's schedules: linear, cosine, learned, yours
    schedule_figure(image, schedules, ...) -> the explorer's drawing: both curves and the noised image
    schedule_explorer(image)               -> toggle buttons for the schedule, a slider for t

The image is noised in closed form, ``x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps``
(Ho et al. 2020, eq. 4), with one fixed eps for every schedule and t, so what changes is the
schedule's doing alone. While nbgrader executes a notebook the builder builds nothing.
"""

from __future__ import annotations

import numpy as np
import torch

from ..forward import q_sample
from ..learned_schedule import LearnedSchedule
from ..plotting import to_uint8
from ..schedules import NoiseSchedule, cosine_schedule, linear_schedule
from ..tensors import seeded_noise
from ..validation import check_choice, check_int, check_positive, check_schedule, check_tensor
from ._base import check_image, figure_output, skip_while_grading

__all__ = ["collect_schedules", "schedule_curves", "schedule_explorer", "schedule_figure"]


def schedule_curves(schedules: dict) -> dict:
    """Plain NumPy curves of each schedule, for plotting.

    Args:
        schedules: ``{name: NoiseSchedule}``.

    Returns:
        ``{name: {"t": (T,) int, "alpha_bar": (T,) float, "log_snr": (T,) float}}``.
    """
    if not isinstance(schedules, dict) or not schedules:
        raise TypeError(f"schedules: expected a non-empty dict {{name: NoiseSchedule}}, got {schedules!r:.80}")
    curves = {}
    for name, s in schedules.items():
        s = check_schedule(f"schedules[{name!r}]", s)
        curves[name] = {"t": np.arange(s.T),
                        "alpha_bar": s.alphas_cumprod.detach().cpu().double().numpy(),
                        "log_snr": s.log_snr.detach().cpu().double().numpy()}
    return curves


def collect_schedules(schedules=None, T: int = 1000) -> dict:
    """The explorer's schedules: linear and cosine with ``T`` steps, a learned one, and yours.

    ``schedules`` may be None, a ``LearnedSchedule`` module (used as "learned"), a
    ``NoiseSchedule`` (added under its name), or a dict ``{name: NoiseSchedule or
    LearnedSchedule}`` (added, replacing defaults of the same name). Without a learned
    one, a freshly initialised ``LearnedSchedule`` (seed 0) stands in: a straight line in
    log-SNR before training.
    """
    check_positive("T", T, integer=True)
    out = {"linear": linear_schedule(T), "cosine": cosine_schedule(T)}
    if isinstance(schedules, (LearnedSchedule, NoiseSchedule)):
        schedules = {"learned" if isinstance(schedules, LearnedSchedule) else schedules.name: schedules}
    if schedules is not None and not isinstance(schedules, dict):
        raise TypeError(f"schedules: expected None, a NoiseSchedule, a LearnedSchedule or a dict of them, "
                        f"got {type(schedules).__name__}")
    for name, s in (schedules or {}).items():
        if isinstance(s, LearnedSchedule):
            s = s.to_schedule(T)
        s = check_schedule(f"schedules[{name!r}]", s)
        if s.T != T:
            raise ValueError(f"schedules[{name!r}]: expected T = {T} timesteps like the others "
                             f"(pass T={s.T} to use it), got {s.T}")
        out[str(name)] = s
    if "learned" not in out and not any(s.name == "learned" for s in out.values()):
        with torch.random.fork_rng(devices=[]):  # same fresh network every time, global RNG untouched
            torch.manual_seed(0)
            out["learned"] = LearnedSchedule().to_schedule(T)
    return out


def schedule_figure(image: torch.Tensor, schedules: dict, selected: str, t: int, eps: torch.Tensor | None = None):
    """The explorer's figure: alpha_bar_t and log-SNR for every schedule, and the noised image.

    Args:
        image: (C, H, W) clean image in [-1, 1].
        schedules: ``{name: NoiseSchedule}``, all with the same T.
        selected: the highlighted schedule, used to noise the image.
        t: timestep in 0..T-1, marked on the curves.
        eps: (C, H, W) fixed noise; drawn with seed 0 if None.

    Returns:
        A ``matplotlib.figure.Figure`` with three panels (not a pyplot figure: nothing to close).
    """
    import matplotlib
    from matplotlib.figure import Figure

    image = check_image("image", image)                                         # (C, H, W) on the CPU
    curves = schedule_curves(schedules)
    check_choice("selected", selected, schedules)
    sched = schedules[selected].to("cpu")
    t = check_int("t", t, minimum=0, maximum=sched.T - 1)
    if eps is None:
        eps = seeded_noise(image.shape, 0)
    check_tensor("eps", eps, shape=image.shape)
    x_t = q_sample(image[None], t, sched, eps[None].to("cpu", image.dtype))[0]  # (C, H, W)

    # 11 x 3.5 inches, 880 x 280 px at figure_png's 80 dpi: the whole width of a laptop's notebook, unscaled
    fig = Figure(figsize=(11, 3.5), layout="constrained")
    axes = fig.subplots(1, 3, width_ratios=[1, 1, 0.8])
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, key, ylabel in [(axes[0], "alpha_bar", r"$\bar\alpha_t$ (share of signal variance kept)"),
                            (axes[1], "log_snr", r"log-SNR $= \log\,\bar\alpha_t / (1-\bar\alpha_t)$")]:
        for i, (name, c) in enumerate(curves.items()):
            on = name == selected
            ax.plot(c["t"], c[key], color=colors[i % len(colors)], lw=2.6 if on else 1.2,
                    alpha=1.0 if on else 0.45, label=name, zorder=3 if on else 2)
        ax.axvline(t, color="0.5", ls=":", lw=1)
        y = curves[selected][key][t]
        ax.plot([t], [y], "o", color="k", ms=7, zorder=4)
        ax.annotate(f"{y:.3g}", (t, y), textcoords="offset points", xytext=(6, 6))
        ax.set_xlabel(f"timestep t (of T = {sched.T})")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].set_title(r"signal kept: $\bar\alpha_t$")
    axes[1].set_title("signal-to-noise ratio (log scale)")
    axes[0].legend(loc="upper right", fontsize=9)
    img = to_uint8(x_t)
    axes[2].imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
    axes[2].set_xticks([])
    axes[2].set_yticks([])
    axes[2].set_title(f"{selected}, t = {t}: " + r"$\sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon$")
    return fig


def schedule_explorer(image: torch.Tensor, schedules=None, T: int = 1000, t: int | None = None, seed: int = 0):
    """Toggle between schedules and slide t: curves and the noised image, redrawn.

    Args:
        image: (C, H, W) clean image in [-1, 1].
        schedules: extra or replacement schedules, see :func:`collect_schedules`.
        T: timesteps of the default schedules.
        t: the starting timestep (T // 2 by default).
        seed: seed of the fixed noise eps (the same for every schedule and t).

    Returns:
        An ``ipywidgets.VBox`` with attributes ``buttons``, ``slider``, ``output``,
        ``schedules`` and ``redraw()``; None while nbgrader executes the notebook.
    """
    if skip_while_grading():
        return None
    import ipywidgets as w

    image = check_image("image", image)
    scheds = collect_schedules(schedules, T)
    t = check_int("t", T // 2 if t is None else t, minimum=0, maximum=T - 1)
    eps = seeded_noise(image.shape, seed)                                       # (C, H, W), one for every redraw
    buttons = w.ToggleButtons(options=list(scheds), value="cosine" if "cosine" in scheds else next(iter(scheds)),
                              description="schedule")
    slider = w.IntSlider(value=t, min=0, max=T - 1, step=1, description="t",
                         continuous_update=False)  # a redraw takes ~0.2 s: draw on release
    output = w.Output()

    def redraw(_=None):
        fig = schedule_figure(image, scheds, buttons.value, slider.value, eps=eps)
        # replace, not append: one figure, no flicker
        output.outputs = (figure_output(fig, "<schedule explorer figure>"),)

    buttons.observe(redraw, names="value")
    slider.observe(redraw, names="value")
    redraw()
    box = w.VBox([buttons, slider, output])
    box.buttons, box.slider, box.output, box.schedules, box.redraw = buttons, slider, output, scheds, redraw
    return box
