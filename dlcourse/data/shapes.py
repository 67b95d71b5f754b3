"""The "shapes" image set: coloured shapes on a dark background, made from a seed.

Each image shows one shape (a class label), in one colour, at one of two scales and
one of nine places, so every image also has an exact caption ("a small red circle at
the top left") and an edge map of its outline (for ControlNet). Nothing is
downloaded: the images are drawn with a few array operations, deterministically for a
seed, and fast enough to make on the fly (``bench/README.md`` has the timing).

Drawing: every shape is a signed distance to its outline (negative inside), evaluated
on a grid 4 times finer than the image (supersampling). Averaging "is it inside?" over
each 4 x 4 block gives the fraction of the pixel the shape covers, which makes the
edges smooth (anti-aliased); averaging "is it within half a pixel of the outline?"
the same way gives the edge map.

Example:
    >>> data = make_shapes(1000, size=16, seed=0)
    >>> data.images.shape, data.captions[0]
    (torch.Size([1000, 3, 16, 16]), 'a large green circle at the top right')
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..validation import check_int, check_positive

SHAPE_NAMES = ("circle", "square", "triangle", "cross")
COLOR_NAMES = ("red", "green", "blue", "yellow", "magenta", "cyan")
SCALE_NAMES = ("small", "large")
POSITION_NAMES = ("at the top left", "at the top", "at the top right",
                  "on the left", "in the centre", "on the right",
                  "at the bottom left", "at the bottom", "at the bottom right")

# RGB in [0, 1]: saturated colours that stay distinct, on a dark grey-blue background.
_RGB = torch.tensor([[0.90, 0.15, 0.15],    # red
                     [0.15, 0.80, 0.20],    # green
                     [0.20, 0.35, 1.00],    # blue
                     [0.95, 0.85, 0.10],    # yellow
                     [0.90, 0.20, 0.85],    # magenta
                     [0.10, 0.85, 0.90]])   # cyan
BACKGROUND = (0.08, 0.08, 0.10)

_RADIUS = (0.19, 0.29)       # half-width of a small / large shape, as a fraction of the image
_SUPERSAMPLE = 4             # sub-pixels per pixel along each axis


@dataclass(frozen=True)
class ShapesData:
    """A batch of shape images with everything known about them.

    Attributes:
        images: (n, 3, size, size) float32 in [-1, 1].
        labels: (n,) int64, index into ``SHAPE_NAMES``.
        colors: (n,) int64, index into ``COLOR_NAMES``.
        scales: (n,) int64, index into ``SCALE_NAMES`` (small or large).
        positions: (n,) int64, index into ``POSITION_NAMES`` (row * 3 + column).
        captions: n strings such as "a small red circle at the top left".
        edges: (n, 1, size, size) float32 in [-1, 1]; +1 on the outline (a band one
            pixel wide, anti-aliased), -1 elsewhere.
        masks: (n, 1, size, size) float32 in [0, 1]; the fraction of each pixel the
            shape covers (a coverage map, not an image).
        centers: (n, 2) float32, the shape's centre (x, y) in pixels from the top left.
        radii: (n,) float32, the shape's half-width in pixels.
        size: the image side in pixels.
    """

    images: torch.Tensor
    labels: torch.Tensor
    colors: torch.Tensor
    scales: torch.Tensor
    positions: torch.Tensor
    captions: list[str]
    edges: torch.Tensor
    masks: torch.Tensor
    centers: torch.Tensor
    radii: torch.Tensor
    size: int

    def __len__(self) -> int:
        return self.labels.shape[0]


def _distance(label: int, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Signed distance from (u, v) to the outline of shape ``label``: < 0 inside.

    The shape fills the box [-1, 1]^2; u: (B, 1, S) horizontal and v: (B, S, 1)
    vertical offsets from its centre in units of its radius (v grows downwards).
    Returns (B, S, S). Straight sides use the distance to their line, so a polygon
    is the max over its sides (all inside) and a union of two is the min.
    """
    name = SHAPE_NAMES[label]
    if name == "circle":
        return torch.sqrt(u**2 + v**2) - 1.0
    if name == "square":
        return torch.maximum(u.abs(), v.abs()) - 0.9
    if name == "triangle":                       # apex (0, -1) at the top, base at v = 0.85
        slope = 1.85                             # the sides are |u| * 1.85 = v + 1
        side = (slope * u.abs() - v - 1.0) / (slope**2 + 1) ** 0.5
        return torch.maximum(side, v - 0.85)
    if name == "cross":                          # a plus sign: two bars 0.72 wide
        arm = 0.36
        bar_h = torch.maximum(u.abs() - 1.0, v.abs() - arm)
        bar_v = torch.maximum(u.abs() - arm, v.abs() - 1.0)
        return torch.minimum(bar_h, bar_v)
    raise AssertionError(name)


def _render(labels: torch.Tensor, centers: torch.Tensor, radii: torch.Tensor,
            size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Coverage and outline of each shape, both (B, 1, size, size) in [0, 1].

    centers: (B, 2) and radii: (B,) as fractions of the image side. The outline is
    the band of points within half a pixel of the shape's boundary.
    """
    B, S = labels.shape[0], size * _SUPERSAMPLE
    grid = (torch.arange(S, dtype=torch.float32) + 0.5) / S        # sub-pixel centres
    u = (grid.view(1, 1, S) - centers[:, 0].view(B, 1, 1)) / radii.view(B, 1, 1)  # (B, 1, S)
    v = (grid.view(1, S, 1) - centers[:, 1].view(B, 1, 1)) / radii.view(B, 1, 1)  # (B, S, 1)
    dist = torch.empty(B, S, S)
    for label in range(len(SHAPE_NAMES)):                           # each shape on its images
        idx = (labels == label).nonzero().squeeze(1)
        if idx.numel():
            dist[idx] = _distance(label, u[idx], v[idx])
    half_pixel = (0.5 / (size * radii)).view(B, 1, 1)               # in units of the radius
    inside = (dist <= 0).float().unsqueeze(1)                       # (B, 1, S, S)
    band = (dist.abs() <= half_pixel).float().unsqueeze(1)
    coverage = F.avg_pool2d(inside, _SUPERSAMPLE)                   # (B, 1, size, size)
    outline = F.avg_pool2d(band, _SUPERSAMPLE)
    return coverage, outline


def make_shapes(n: int, size: int = 16, seed: int = 0) -> ShapesData:
    """Draw ``n`` images of coloured shapes, deterministically for ``seed``.

    Shape, colour, scale and place are drawn uniformly and independently; the centre
    jitters a little around its place, and every shape lies fully inside the frame.
    The same ``seed`` gives the same shapes at every ``size``.

    Args:
        n: number of images.
        size: image side in pixels, 8 to 128 (16 or 32 train quickly on a CPU).
        seed: seed of the local random generator.

    Returns:
        A ``ShapesData`` with images (n, 3, size, size) in [-1, 1], labels, colours,
        captions, edge maps and the geometry of each shape.
    """
    check_positive("n", n, integer=True)
    check_int("size", size, minimum=8, maximum=128)
    check_int("seed", seed)

    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(len(SHAPE_NAMES), (n,), generator=g)
    colors = torch.randint(len(COLOR_NAMES), (n,), generator=g)
    scales = torch.randint(len(SCALE_NAMES), (n,), generator=g)
    rowcol = torch.randint(3, (n, 2), generator=g)                  # (row, column) of the place
    radii = torch.tensor(_RADIUS)[scales] * (0.9 + 0.2 * torch.rand(n, generator=g))
    jitter = 0.04 * (2 * torch.rand(n, 2, generator=g) - 1)

    # Places 0, 1, 2 spread the centre over the range that keeps the shape in the
    # frame with half a pixel to spare; the jitter is clamped to that range.
    lo = radii + 0.5 / size                                         # (n,)
    xy = rowcol.flip(1).float()                                     # (column, row) = (x, y)
    centers = lo[:, None] + (1 - 2 * lo[:, None]) * xy / 2 + jitter
    centers = torch.minimum(torch.maximum(centers, lo[:, None]), 1 - lo[:, None])

    chunk = max(1, 2**20 // (size * _SUPERSAMPLE) ** 2)             # bound the memory used
    parts = [_render(labels[i:i + chunk], centers[i:i + chunk], radii[i:i + chunk], size)
             for i in range(0, n, chunk)]
    masks = torch.cat([c for c, _ in parts])                        # (n, 1, size, size)
    outline = torch.cat([e for _, e in parts])

    background = torch.tensor(BACKGROUND).view(1, 3, 1, 1)
    color = _RGB[colors].view(n, 3, 1, 1)
    images = background + masks * (color - background)              # (n, 3, size, size) in [0, 1]
    positions = rowcol[:, 0] * 3 + rowcol[:, 1]
    captions = [f"a {SCALE_NAMES[s]} {COLOR_NAMES[c]} {SHAPE_NAMES[l]} {POSITION_NAMES[p]}"
                for s, c, l, p in zip(scales.tolist(), colors.tolist(),
                                      labels.tolist(), positions.tolist())]
    return ShapesData(images=images * 2 - 1, labels=labels, colors=colors, scales=scales,
                      positions=positions, captions=captions, edges=outline * 2 - 1,
                      masks=masks, centers=centers * size, radii=radii * size, size=size)


class ShapesDataset(torch.utils.data.Dataset):
    """A ``ShapesData`` as a PyTorch dataset of ``(image, label)`` pairs.

    Example:
        >>> dataset = ShapesDataset(make_shapes(5000, size=16))
        >>> image, label = dataset[0]            # (3, 16, 16) float32, int64 scalar
    """

    def __init__(self, data: ShapesData):
        if not isinstance(data, ShapesData):
            raise TypeError(f"data: expected a ShapesData (from make_shapes), "
                            f"got {type(data).__name__}")
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.data.images[i], self.data.labels[i]
