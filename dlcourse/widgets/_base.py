"""What every widget shares: skipping while grading, the image check, PNGs of images and figures.

    skip_while_grading()          True (after printing SKIPPED) while nbgrader executes a notebook
    check_image(name, x)          a (C, H, W) float image, detached, on the CPU
    png_bytes(image, size)        an image as PNG bytes, enlarged by whole pixels
    figure_png(fig)               a matplotlib figure as PNG bytes
    figure_output(fig, text)      a figure as a notebook display_data output
    show(widget)                  display a widget, or nothing for None
"""

from __future__ import annotations

import base64
import io

import numpy as np
import torch

from ..fast import grading
from ..plotting import to_uint8
from ..validation import check_tensor

SKIPPED = "(interactive widget skipped while grading)"


def skip_while_grading() -> bool:
    """True while nbgrader executes the notebook (``dlcourse.fast.grading()``), after printing ``SKIPPED``.

    Every builder starts with ``if skip_while_grading(): return None``: a graded run builds nothing.
    """
    if grading():
        print(SKIPPED)
        return True
    return False


def check_image(name: str, x, *, channels=(1, 3)) -> torch.Tensor:
    """Check that ``x`` is one (C, H, W) floating-point image; return it detached, on the CPU.

    Args:
        name: the argument's name, used in the error message.
        x: the value to check.
        channels: the allowed C (1 grey, 3 colour), or None for any.
    """
    check_tensor(name, x, ndim=3, floating=True)
    if channels is not None and x.shape[0] not in channels:
        allowed = " or ".join(str(c) for c in channels)
        raise ValueError(f"{name}: expected an image (C, H, W) with C = {allowed}, got shape {tuple(x.shape)}")
    return x.detach().cpu()


def png_bytes(image, display_size: int = 256) -> bytes:
    """PNG of an image, enlarged by whole pixels to about ``display_size``.

    ``image`` is a (C, H, W) tensor in [-1, 1], or the uint8 array ``to_uint8`` makes of one.
    """
    from PIL import Image

    pil = Image.fromarray(image if isinstance(image, np.ndarray) else to_uint8(image))
    k = max(1, round(display_size / max(pil.size)))
    pil = pil.resize((pil.width * k, pil.height * k), Image.NEAREST)  # crisp pixels, no blur
    buf = io.BytesIO()
    pil.save(buf, format="png")
    return buf.getvalue()


def figure_png(fig, dpi: int = 80) -> bytes:
    """A matplotlib figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def figure_output(fig, text: str = "<figure>") -> dict:
    """A notebook display_data output holding the figure as a PNG (for ``ipywidgets.Output.outputs``)."""
    return {"output_type": "display_data", "metadata": {},
            "data": {"image/png": base64.b64encode(figure_png(fig)).decode("ascii"), "text/plain": text}}


def show(widget) -> None:
    """Display a widget built here; does nothing for None (skipped while grading)."""
    if widget is not None:
        from IPython.display import display

        display(widget)
