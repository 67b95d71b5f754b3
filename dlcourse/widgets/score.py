"""A slider over noise levels: the score field and the samples at each level (notebook 09).

A plain, tested computation sits under a one-line builder:

    score_frames(score_fn, sigmas, samples)   -> one ScoreFrame per level: grid, score vectors, samples
    score_frame_png(frame, lim)               -> that frame drawn as a PNG
    score_explorer(score_fn, sigmas, samples) -> a slider over the levels showing the PNGs

``score_fn(x, sigma)`` is a score in the variance-exploding view, as ``dlcourse.score.model_score``
returns and ``dlcourse.score.annealed_langevin`` uses. It is called on CPU points (N, 2),
and what it returns is brought back to the CPU. While nbgrader executes a notebook
(``dlcourse.fast.grading()``) the builder builds nothing: it prints one line and returns None.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..plotting import grid_points, plot_vector_field
from ..validation import check_tensor
from ._base import figure_png, image_widget, set_png, skip_while_grading

__all__ = ["ScoreFrame", "score_explorer", "score_frame_png", "score_frames"]


@dataclass
class ScoreFrame:
    """One noise level: the score on a grid, and optionally the samples reached at that level.

    Attributes:
        sigma: the noise level.
        points: (n * n, 2) the grid (``dlcourse.plotting.grid_points``).
        vectors: (n * n, 2) ``score_fn(points, sigma)``.
        samples: (M, 2) points at this level, or None.
    """

    sigma: float
    points: torch.Tensor
    vectors: torch.Tensor
    samples: torch.Tensor | None = None


def score_frames(score_fn, sigmas, samples=None, *, lim: float = 2.5, n: int = 17) -> list[ScoreFrame]:
    """Evaluate ``score_fn`` on a grid at every noise level.

    Args:
        score_fn: ``score_fn(x, sigma) -> (N, 2)`` for x (N, 2) and a float sigma.
        sigmas: (L,) noise levels, in the order the slider shows them.
        samples: None, or one (M, 2) tensor per level (a list of L, or a dict {level index: tensor}).
        lim, n: the grid, n x n points over [-lim, lim]^2.

    Returns:
        L ``ScoreFrame``s, tensors on the CPU in float32.
    """
    sigmas = [float(s) for s in (sigmas.reshape(-1).tolist() if isinstance(sigmas, torch.Tensor) else sigmas)]
    if not sigmas:
        raise ValueError("sigmas: expected at least one noise level, got none")
    if samples is not None:
        if isinstance(samples, dict):
            samples = [samples.get(i) for i in range(len(sigmas))]
        samples = list(samples)
        if len(samples) != len(sigmas):
            raise ValueError(f"samples: expected one set of points per noise level ({len(sigmas)}), got {len(samples)}")
        for i, s in enumerate(samples):
            if s is not None:
                check_tensor(f"samples[{i}]", s, ndim=2, shape=(None, 2))
    points = grid_points(lim, n)
    frames = []
    for i, sigma in enumerate(sigmas):
        with torch.no_grad():
            vectors = score_fn(points, sigma)
        check_tensor("score_fn(points, sigma)", vectors, shape=(len(points), 2))
        s = None if samples is None or samples[i] is None else samples[i].detach().float().cpu()
        frames.append(ScoreFrame(sigma, points, vectors.detach().float().cpu(), s))
    return frames


def score_frame_png(frame: ScoreFrame, lim: float = 2.5, clim=None, title: str | None = None) -> bytes:
    """One frame drawn as a PNG: the score's directions (coloured by log10 length) and the samples."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 5), layout="constrained")
    ax = fig.add_subplot()
    if frame.samples is not None:
        ax.scatter(frame.samples[:, 0], frame.samples[:, 1], s=2, c="C1", alpha=0.6)
    plot_vector_field(frame.vectors, frame.points, ax=ax, clim=clim,
                      title=title or f"score at sigma = {frame.sigma:.3g}")
    ax.set(xlim=(-lim - 0.3, lim + 0.3), ylim=(-lim - 0.3, lim + 0.3), adjustable="box")
    return figure_png(fig)


def score_explorer(score_fn, sigmas, samples=None, *, lim: float = 2.5, n: int = 17):
    """Slide over the noise levels: the score field at each, and the samples reached there.

    Args:
        score_fn, sigmas, samples, lim, n: as in :func:`score_frames`.

    The slider counts levels from 1, as the figure's title does ("level 1 of L").

    Returns:
        An ``ipywidgets.VBox`` with attributes ``slider`` (the level, 1..L: ``frames[slider.value - 1]``),
        ``label``, ``image`` and ``frames``; None while nbgrader executes the notebook.
    """
    if skip_while_grading():
        return None
    import ipywidgets as w

    frames = score_frames(score_fn, sigmas, samples, lim=lim, n=n)
    lengths = torch.cat([f.vectors.norm(dim=1) for f in frames]).clamp_min(1e-12).log10()
    clim = (float(lengths.min()), float(lengths.max()))                 # one colour scale for every level
    pngs = [score_frame_png(f, lim, clim, title=f"level {i + 1} of {len(frames)}: sigma = {f.sigma:.3g}")
            for i, f in enumerate(frames)]
    slider = w.IntSlider(value=1, min=1, max=len(frames), step=1, description="level")
    label = w.Label()
    image = image_widget()

    def show(_=None):
        i = slider.value - 1                                            # level 1 is frames[0]
        f = frames[i]
        set_png(image, pngs[i])
        samples = "; orange: the samples at this level" if f.samples is not None else ""
        label.value = (f"level {i + 1} of {len(frames)}, sigma = {f.sigma:.4g}; arrows: directions of the score, coloured by log10 of its length "
                       f"(one scale for all levels){samples}")

    slider.observe(show, names="value")
    show()
    box = w.VBox([slider, label, image])
    box.slider, box.label, box.image, box.frames = slider, label, image, frames
    return box
