"""Data for the course, all offline by default.

- ``make_toy``: 2-D toy distributions (two moons, swiss roll, 8 Gaussians, checkerboard).
- ``make_shapes``: procedural images of coloured shapes with labels, captions and edge maps.
- ``load_photo``: the natural photograph that ships with matplotlib.
- ``load_mnist``: MNIST / Fashion-MNIST, downloaded only when asked (``download=True``).
"""

from .download import DownloadError, fetch, load_mnist, read_idx
from .photo import load_photo
from .shapes import COLOR_NAMES, POSITION_NAMES, SCALE_NAMES, SHAPE_NAMES, ShapesData, ShapesDataset, make_shapes
from .toys import TOY_NAMES, make_toy

__all__ = [
    "make_toy", "TOY_NAMES",
    "make_shapes", "ShapesData", "ShapesDataset",
    "SHAPE_NAMES", "COLOR_NAMES", "SCALE_NAMES", "POSITION_NAMES",
    "load_photo",
    "load_mnist", "fetch", "read_idx", "DownloadError",
]
