"""A natural photograph for the forward-process demos, with no download.

Matplotlib ships a few sample files with its installation; one of them is a portrait
of Grace Hopper. ``load_photo`` crops it to a centred square and resizes it.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from ..validation import check_bool, check_positive

PHOTO_FILE = "grace_hopper.jpg"


def _sample_path() -> str:
    """Where matplotlib keeps its sample photograph (the file may be missing)."""
    from matplotlib import cbook       # imported here: matplotlib is slow to import

    return str(cbook.get_sample_data(PHOTO_FILE, asfileobj=False))


def load_photo(size: int = 64, *, gray: bool = False) -> torch.Tensor:
    """Load matplotlib's sample photograph as an image tensor.

    The photo is cropped to the largest centred square, then resized with an
    antialiasing (Lanczos) filter.

    Args:
        size: side of the square image in pixels.
        gray: return one luminance channel instead of three colour channels.

    Returns:
        (3, size, size) float32 in [-1, 1], or (1, size, size) when ``gray``.

    Raises:
        FileNotFoundError: matplotlib's sample data is not installed.
    """
    check_positive("size", size, integer=True)
    check_bool("gray", gray)
    from PIL import Image              # Pillow is a dependency of matplotlib

    path = _sample_path()
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"load_photo: the sample photograph was not found at {path} (it comes with "
            f"matplotlib's sample data). Use the built-in procedural images instead: "
            f"dlcourse.data.make_shapes(n, size).")
    with Image.open(path) as photo:
        photo = photo.convert("L" if gray else "RGB")
        w, h = photo.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        photo = photo.crop((left, top, left + side, top + side))
        photo = photo.resize((size, size), Image.Resampling.LANCZOS)
        pixels = np.asarray(photo, dtype=np.float32)                # (H, W) or (H, W, 3)
    x = torch.from_numpy(pixels.copy())
    x = x.unsqueeze(0) if gray else x.permute(2, 0, 1)              # (C, H, W)
    return x / 127.5 - 1.0
