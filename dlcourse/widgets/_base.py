"""What every widget shares: skipping while grading, the image check, PNGs of images and figures.

    skip_while_grading()          True (after printing SKIPPED) while nbgrader executes a notebook
    check_image(name, x)          a (C, H, W) float image, detached, on the CPU
    png_bytes(image, size)        an image as PNG bytes, enlarged by whole pixels, at most ``size`` across
    png_size(png)                 (width, height) of PNG bytes
    image_widget(png)             an ``ipywidgets.Image`` shown at the PNG's own size, never stretched
    set_png(widget, png)          put new PNG bytes in such a widget, its displayed size following
    figure_png(fig)               a matplotlib figure as PNG bytes (figures are ``matplotlib.figure.Figure``,
                                  never pyplot's: a pyplot figure left open is displayed a second time)
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
    """PNG of an image, enlarged by the largest whole factor that keeps it within ``display_size`` pixels.

    ``image`` is a (C, H, W) tensor in [-1, 1], or the uint8 array ``to_uint8`` makes of one.
    An image already larger than ``display_size`` keeps its own size.
    """
    from PIL import Image

    pil = Image.fromarray(image if isinstance(image, np.ndarray) else to_uint8(image))
    k = max(1, display_size // max(pil.size))
    pil = pil.resize((pil.width * k, pil.height * k), Image.NEAREST)  # crisp pixels, no blur
    buf = io.BytesIO()
    pil.save(buf, format="png")
    return buf.getvalue()


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) in pixels of PNG bytes (or a memoryview of them), read from the PNG header."""
    data = bytes(png[:24]) if isinstance(png, (bytes, bytearray, memoryview)) else None
    if data is None or len(data) < 24 or data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"png: expected PNG bytes, got {type(png).__name__}"
                         + ("" if data is None else f" starting {data[:8]!r}"))
    png = data
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def set_png(image, png: bytes) -> None:
    """Show ``png`` in the ``ipywidgets.Image`` ``image`` at one screen pixel per PNG pixel.

    Without a size of its own, JupyterLab stretches an image widget to the output's full width
    (a 256 px picture shown 930 px wide, blurred, the controls pushed off the screen). The
    layout's width and height are set to the PNG's; on a narrower output it shrinks, keeping
    its proportions (``object-fit: contain``).
    """
    width, height = png_size(png)
    image.value = png
    image.layout.width, image.layout.height = f"{width}px", f"{height}px"


def image_widget(png: bytes | None = None):
    """An ``ipywidgets.Image`` shown at its PNG's own size (see :func:`set_png`)."""
    import ipywidgets as w

    image = w.Image(format="png", layout=w.Layout(max_width="100%", object_fit="contain", flex="0 0 auto"))
    if png is not None:
        set_png(image, png)
    return image


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
