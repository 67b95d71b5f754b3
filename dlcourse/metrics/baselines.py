"""Images that look a little like the data but are not: the reference points of quality figures.

A quality number means little alone. Next to it we report what the same number gives
for noise with the data's per-pixel mean and spread (the *noise baseline*), and a judge
must be shown to reject such images: measured in this course, a classifier trained
only on real images gave confidence > 0.9 to half of such noise on digits.

Each function makes one kind of impostor from real images. ``dlcourse.judge`` trains
its "real or not" head on all of them, and the tests check that it rejects them.
Images are (B, C, H, W) in [-1, 1]; randomness comes from a local ``torch.Generator``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..data.shapes import COLOR_NAMES, ShapesData
from ..validation import check_positive, check_tensor


def _generator(seed) -> torch.Generator:
    return seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)


def matched_noise(reference: torch.Tensor, n: int, *, seed=0, clamp: bool = True) -> torch.Tensor:
    """Gaussian noise with the per-pixel mean and standard deviation of ``reference``.

    Every pixel and channel is drawn independently, so the noise has the data's
    average image and spread but none of its structure: the noise baseline.

    Args:
        reference: (N, C, H, W) real images.
        n: number of noise images.
        seed: int or ``torch.Generator``.
        clamp: clip to [-1, 1], the range of real images.

    Returns:
        (n, C, H, W) float32.
    """
    check_tensor("reference", reference, ndim=4, floating=True)
    check_positive("n", n, integer=True)
    mean = reference.mean(0)                                         # (C, H, W)
    std = reference.std(0)
    eps = torch.randn((n, *reference.shape[1:]), generator=_generator(seed))
    x = mean.cpu() + std.cpu() * eps
    return (x.clamp(-1, 1) if clamp else x).to(reference.device)


def color_noise(reference: torch.Tensor, n: int, *, cell: int = 1, seed=0) -> torch.Tensor:
    """A grid of colour cells, each the colour of a random pixel of a random real image.

    The colours and their proportions are the data's (mostly background, some pure
    shape colours), the arrangement is random. ``cell`` is the side of a cell in pixels.

    Returns:
        (n, C, H, W) with the shape of ``reference``'s images.
    """
    check_tensor("reference", reference, ndim=4, floating=True)
    check_positive("n", n, integer=True)
    check_positive("cell", cell, integer=True)
    N, C, H, W = reference.shape
    g = _generator(seed)
    h, w = math.ceil(H / cell), math.ceil(W / cell)
    pixels = reference.permute(0, 2, 3, 1).reshape(-1, C)           # (N H W, C) every pixel's colour
    pick = torch.randint(pixels.shape[0], (n * h * w,), generator=g).to(reference.device)
    grid = pixels[pick].reshape(n, h, w, C).permute(0, 3, 1, 2)     # (n, C, h, w)
    return grid.repeat_interleave(cell, 2).repeat_interleave(cell, 3)[:, :, :H, :W].contiguous()


def blend(images_a: torch.Tensor, images_b: torch.Tensor, weight=0.5) -> torch.Tensor:
    """Average of two images, ``(1 - weight) a + weight b``; ``weight`` a number or (B,) tensor."""
    check_tensor("images_a", images_a, ndim=4, floating=True)
    check_tensor("images_b", images_b, shape=tuple(images_a.shape), floating=True)
    w = torch.as_tensor(weight, dtype=images_a.dtype, device=images_a.device)
    w = w.view(-1, 1, 1, 1) if w.ndim == 1 else w
    return (1 - w) * images_a + w * images_b


def overlay(images_a: torch.Tensor, images_b: torch.Tensor, masks_b: torch.Tensor) -> torch.Tensor:
    """Paint the shape of ``images_b`` (its coverage ``masks_b``, (B, 1, H, W)) over ``images_a``.

    With shapes at different places the result shows two shapes: not a data image.
    """
    check_tensor("images_b", images_b, shape=tuple(images_a.shape), floating=True)
    return images_a + masks_b * (images_b - images_a)


def palette(data: ShapesData, n: int = 2000) -> torch.Tensor:
    """The data's shape colours (len(COLOR_NAMES), 3) in [-1, 1], read off the fully covered
    pixels of the first ``n`` images."""
    full = data.masks[:n, 0] > 0.999                                              # (n, H, W)
    pixels = data.images[:n].permute(0, 2, 3, 1)[full]                           # (P, 3)
    owner = data.colors[:n, None, None].expand(full.shape)[full]                 # (P,)
    return torch.stack([pixels[owner == c].mean(0) for c in range(len(COLOR_NAMES))])


def off_palette_colors(colors: torch.Tensor, n: int, *, seed=0, min_distance: float = 0.25) -> torch.Tensor:
    """``n`` random colours (n, 3) in [-1, 1], each at least ``min_distance`` (Euclidean, in RGB
    units of [0, 1]) from every colour in ``colors`` (K, 3) in [-1, 1], e.g. ``palette(data)``."""
    g = _generator(seed)
    palette_01 = (colors.cpu() + 1) / 2
    rgb = torch.rand(n, 3, generator=g)
    while bool((redo := torch.cdist(rgb, palette_01).amin(1) < min_distance).any()):   # redraw the near ones
        rgb[redo] = torch.rand(int(redo.sum()), 3, generator=g)
    return 2 * rgb - 1


def recolor(images: torch.Tensor, masks: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
    """Paint each shape (coverage ``masks`` (B, 1, H, W)) in a new colour ``rgb`` (B, 3) in [-1, 1].

    With colours far from every colour of the data, this is a shape no data image shows.
    """
    check_tensor("rgb", rgb, shape=(images.shape[0], images.shape[1]), floating=True)
    return images + masks * (rgb[:, :, None, None] - images)


def gaussian_blur(x: torch.Tensor, sigma) -> torch.Tensor:
    """Blur each image with a Gaussian of standard deviation ``sigma`` pixels (a number or (B,)).

    A separable 2-D convolution; the border is extended by reflection.
    """
    check_tensor("x", x, ndim=4, floating=True)
    B, C, H, W = x.shape
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(B).clamp(min=1e-3)
    radius = max(1, min(int(math.ceil(3 * float(sigma.max()))), min(H, W) - 1))
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-offsets.square() / (2 * sigma.view(B, 1).square()))   # (B, K)
    kernel = kernel / kernel.sum(1, keepdim=True)
    # One group per (image, channel) so every image gets its own kernel.
    k = kernel.repeat_interleave(C, 0)                                # (B C, K)
    y = x.reshape(1, B * C, H, W)
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="reflect"), k.view(B * C, 1, 1, -1), groups=B * C)
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="reflect"), k.view(B * C, 1, -1, 1), groups=B * C)
    return y.reshape(B, C, H, W)


def patch_shuffle(x: torch.Tensor, patch: int = 4, *, seed=0) -> torch.Tensor:
    """Cut each image into ``patch`` x ``patch`` tiles and put them back in a random order.

    Colours and local texture stay, the shape is broken. H and W must be multiples of ``patch``.
    """
    check_tensor("x", x, ndim=4, floating=True)
    B, C, H, W = x.shape
    if H % patch or W % patch:
        raise ValueError(f"patch: the image side ({H} x {W}) must be a multiple of it, got {patch}")
    h, w = H // patch, W // patch
    tiles = x.reshape(B, C, h, patch, w, patch).permute(0, 2, 4, 1, 3, 5).reshape(B, h * w, C, patch, patch)
    order = torch.argsort(torch.rand(B, h * w, generator=_generator(seed)), dim=1).to(x.device)
    tiles = tiles[torch.arange(B, device=x.device)[:, None], order]  # (B, h w, C, p, p) shuffled
    return tiles.reshape(B, h, w, C, patch, patch).permute(0, 3, 1, 4, 2, 5).reshape(B, C, H, W)
