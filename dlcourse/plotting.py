"""Figures for the course: images as uint8 arrays, image grids, 2-D scatter plots.

Images follow the course convention: float tensors in [-1, 1], one image (C, H, W)
or a batch (B, C, H, W), with C = 1 (grey) or C = 3 (RGB). Values outside [-1, 1]
(a noisy x_t, say) are clamped for display.

    show_images(data.images[:16], nrow=8, title="training data")
    plot_2d([x_0, samples], labels=["data", "model"], title="two moons")
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .validation import check_int, check_positive

_CHANNELS = (1, 3)


def _as_tensor(name: str, x) -> torch.Tensor:
    """Accept a tensor or a NumPy array; return a float tensor on the CPU."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor or a NumPy array, got {type(x).__name__}")
    return x.detach().cpu().float()


def _as_batch(name: str, images) -> torch.Tensor:
    """A single image (C, H, W) or a batch (B, C, H, W) -> a batch (B, C, H, W)."""
    x = _as_tensor(name, images)
    if x.ndim == 3:
        x = x[None]  # (C, H, W) -> (1, C, H, W)
    if x.ndim != 4:
        raise ValueError(f"{name}: expected an image (C, H, W) or a batch (B, C, H, W), "
                         f"got shape {tuple(x.shape)}")
    if x.shape[1] not in _CHANNELS:
        raise ValueError(f"{name}: expected 1 or 3 channels in dimension 1 of (B, C, H, W), "
                         f"got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name}: expected at least one image, got an empty batch")
    return x


def to_uint8(x) -> np.ndarray:
    """Convert an image in [-1, 1] to a uint8 array for display or saving.

    Args:
        x: (C, H, W) tensor or array, C = 1 or 3, or a batch (B, C, H, W) of them;
            values are clamped to [-1, 1].

    Returns:
        (H, W, 3) uint8 for colour, (H, W) uint8 for grey (with a leading B for a
        batch); -1 -> 0, 0 -> 128, 1 -> 255.
    """
    x = _as_tensor("x", x)
    if x.ndim not in (3, 4) or x.shape[-3] not in _CHANNELS:
        raise ValueError(f"x: expected an image (C, H, W) or a batch (B, C, H, W) with C = 1 or 3, "
                         f"got shape {tuple(x.shape)}")
    x = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)  # [-1, 1] -> {0, ..., 255}
    x = x.movedim(-3, -1).numpy()  # (..., C, H, W) -> (..., H, W, C)
    return x[..., 0] if x.shape[-1] == 1 else x


def image_grid(images, nrow: int = 8, padding: int = 1, pad_value: float = 1.0) -> torch.Tensor:
    """Tile images into one image, row by row, ``nrow`` images per row.

    Image ``k`` lands in row ``k // nrow``, column ``k % nrow``, with its top-left
    pixel at ``(padding + row * (H + padding), padding + col * (W + padding))``.

    Args:
        images: (B, C, H, W) batch, or a single image (C, H, W).
        nrow: images per row (fewer if there are fewer images).
        padding: pixels of ``pad_value`` around and between the images.
        pad_value: the border's value (1.0 is white in [-1, 1]).

    Returns:
        (C, H', W') with ``H' = rows * (H + padding) + padding`` and
        ``W' = cols * (W + padding) + padding``.
    """
    x = _as_batch("images", images)
    check_positive("nrow", nrow, integer=True)
    check_int("padding", padding, minimum=0)
    B, C, H, W = x.shape
    cols = min(nrow, B)
    rows = math.ceil(B / cols)
    grid = x.new_full((C, rows * (H + padding) + padding, cols * (W + padding) + padding), float(pad_value))
    for k in range(B):
        top = padding + (k // cols) * (H + padding)
        left = padding + (k % cols) * (W + padding)
        grid[:, top:top + H, left:left + W] = x[k]
    return grid


def show_images(images, nrow: int = 8, title: str | None = None, ax=None, scale: float = 1.0):
    """Draw images as a grid, without ticks, with a title.

    Args:
        images: (B, C, H, W) batch or a single image (C, H, W), values in [-1, 1].
        nrow: images per row.
        title: the axes' title; by default the number and size of the images.
        ax: a matplotlib Axes to draw into; a new figure is made if None.
        scale: inches per image in a new figure (the figure is at most 16 inches wide).

    Returns:
        The matplotlib Axes.
    """
    import matplotlib.pyplot as plt

    x = _as_batch("images", images)
    check_positive("scale", scale)
    B, C, H, W = x.shape
    grid = image_grid(x, nrow=nrow, padding=max(1, H // 16))
    if ax is None:
        cols, rows = min(nrow, B), math.ceil(B / min(nrow, B))
        width = min(16.0, cols * scale)
        _, ax = plt.subplots(figsize=(width, width * rows / cols + 0.4), layout="constrained")
    ax.imshow(to_uint8(grid), cmap="gray" if C == 1 else None, vmin=0, vmax=255, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title is None:
        title = f"{B} image{'s' if B > 1 else ''}, {H} x {W} px"
    ax.set_title(title)
    return ax


def plot_2d(points, labels=None, ax=None, title: str | None = None, s: float = 4.0, alpha: float = 0.6):
    """Scatter plot of 2-D points (the toy data sets, samples, trajectories' ends).

    Args:
        points: (N, 2) tensor or array, or a list of them (one colour each).
        labels: a legend label, or a list of one label per set.
        ax: a matplotlib Axes to draw into; a new figure is made if None.
        title: the axes' title.
        s, alpha: marker size and opacity.

    Returns:
        The matplotlib Axes.
    """
    import matplotlib.pyplot as plt

    single = isinstance(points, (torch.Tensor, np.ndarray))
    sets = [points] if single else list(points)
    if not sets:
        raise ValueError("points: expected an (N, 2) array or a non-empty list of them, got an empty list")
    arrays = []
    for i, p in enumerate(sets):
        name = "points" if single else f"points[{i}]"
        p = _as_tensor(name, p)
        if p.ndim != 2 or p.shape[1] != 2:
            raise ValueError(f"{name}: expected shape (N, 2), got {tuple(p.shape)}")
        arrays.append(p.numpy())
    if labels is not None:
        labels = [labels] if isinstance(labels, str) else list(labels)
        if len(labels) != len(arrays):
            raise ValueError(f"labels: expected {len(arrays)} label(s), one per set of points, got {len(labels)}")
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4.5), layout="constrained")
    for i, p in enumerate(arrays):
        ax.scatter(p[:, 0], p[:, 1], s=s, alpha=alpha, label=None if labels is None else labels[i])
    if labels is not None:
        ax.legend(markerscale=3)
    return _finish_2d_axes(ax, title)


def _finish_2d_axes(ax, title: str | None):
    """Equal scales, axis labels x_1 and x_2, and the title, on a 2-D plot's Axes; returns ax."""
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    if title is not None:
        ax.set_title(title)
    return ax


def grid_points(lim: float = 2.5, n: int = 21) -> torch.Tensor:
    """(n * n, 2) points of a square grid over [-lim, lim]^2, row by row (x_1 varies fastest)."""
    check_positive("lim", lim)
    check_int("n", n, minimum=2)                                        # points per side
    side = torch.linspace(-lim, lim, n)
    x_2, x_1 = torch.meshgrid(side, side, indexing="ij")                 # (n, n) each
    return torch.stack([x_1.reshape(-1), x_2.reshape(-1)], dim=1)


def plot_vector_field(field, points=None, *, lim: float = 2.5, n: int = 21, ax=None, title: str | None = None,
                      normalize: bool = True, color: str = "C0", scale: float | None = None,
                      clim: tuple[float, float] | None = None):
    """Quiver plot of a 2-D vector field, such as a score ``grad_x log p(x)``.

    Args:
        field: a function ``(N, 2) -> (N, 2)``, evaluated on ``grid_points(lim, n)``; or an
            (N, 2) tensor or array of vectors at ``points``.
        points: (N, 2) where the vectors of ``field`` sit (only with an array ``field``).
        lim, n: the grid for a function ``field``: n x n points over [-lim, lim]^2.
        ax: a matplotlib Axes to draw into; a new figure is made if None.
        title: the axes' title.
        normalize: draw every arrow with the same length and colour it by log10 of its
            length (scores near data are far longer than elsewhere); False draws the
            vectors as they are, in ``color``.
        color: the arrows' colour when ``normalize`` is False.
        scale: matplotlib's quiver ``scale`` (data units per arrow length); automatic if None.
        clim: ``(low, high)`` of log10 length for the colours (with ``normalize``), so that several
            panels share one colour scale; from the data if None.

    Returns:
        The matplotlib Axes; its ``ax.collections[-1]`` is the quiver.
    """
    import matplotlib.pyplot as plt

    if callable(field):
        if points is not None:
            raise ValueError("points: give points only with an array of vectors, not with a function")
        points = grid_points(lim, n)
        with torch.no_grad():
            vectors = field(points)
        vectors = _as_tensor("field(points)", vectors)
    else:
        if points is None:
            raise ValueError("points: expected the (N, 2) points where the vectors of field sit, got None")
        vectors = _as_tensor("field", field)
    points = _as_tensor("points", points)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points: expected shape (N, 2), got {tuple(points.shape)}")
    if tuple(vectors.shape) != tuple(points.shape):
        raise ValueError(f"field: expected vectors of shape {tuple(points.shape)}, one per point, "
                         f"got {tuple(vectors.shape)}")
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4.5), layout="constrained")
    p, v = points.numpy(), vectors.numpy()
    if normalize:
        length = np.linalg.norm(v, axis=1)
        unit = v / np.maximum(length, 1e-12)[:, None]
        q = ax.quiver(p[:, 0], p[:, 1], unit[:, 0], unit[:, 1], np.log10(np.maximum(length, 1e-12)),
                      cmap="viridis", angles="xy", scale_units="xy",
                      scale=scale if scale is not None else 1.6 / _spacing(p), width=0.004)
        if clim is not None:
            q.set_clim(*clim)
    else:
        ax.quiver(p[:, 0], p[:, 1], v[:, 0], v[:, 1], color=color, angles="xy",
                  scale_units="xy" if scale is not None else None, scale=scale, width=0.004)
    return _finish_2d_axes(ax, title)


def _spacing(p: np.ndarray) -> float:
    """A typical distance between neighbouring points (for arrows that do not overlap)."""
    span = float(np.ptp(p[:, 0]) + np.ptp(p[:, 1])) / 2
    return max(span, 1e-12) / max(math.sqrt(len(p)) - 1, 1)
