"""Two images, one slider: the way between them in pixel space and in a VAE's latent space (notebook 06).

A plain, tested computation sits under a one-line builder:

    latent_interpolation(vae, x_a, x_b, n)   -> Interpolation: n frames of each path, and both latents
    latent_explorer(vae, images)             -> two image pickers and a slider from one image to the other;
                                                given {name: autoencoder}, a menu switches between them

The pixel path cross-fades, ``(1 - a) x_a + a x_b``: halfway, both shapes show at half strength.
The latent path mixes the encoder's means, ``z = (1 - a) mu_a + a mu_b``, and decodes ``z``: what the
decoder makes of a point between two codes. Whether that point still decodes to one clean shape is
what a notebook measures with the judge. The latent's channels are shown too, each as a small
grey image. While nbgrader executes a notebook the builder builds nothing: it prints one line and
returns None.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..device import model_device
from ..plotting import image_grid
from ..tensors import eval_mode
from ..validation import check_int, check_number
from ._base import check_image, image_widget, png_bytes, set_png, skip_while_grading

__all__ = ["Interpolation", "latent_explorer", "latent_interpolation"]


@dataclass(frozen=True)
class Interpolation:
    """Both paths from ``x_a`` to ``x_b``.

    Attributes:
        a: (n,) the mixing weights, 0 (x_a) to 1 (x_b).
        pixel: (n, C, H, W) the cross-fades ``(1 - a) x_a + a x_b``.
        latent: (n, C, H, W) the decoded mixes of the encoder's means, clamped to [-1, 1].
        z_a, z_b: (C_z, h, w) the encoder's means of the two images.
    """

    a: torch.Tensor
    pixel: torch.Tensor
    latent: torch.Tensor
    z_a: torch.Tensor
    z_b: torch.Tensor


@torch.no_grad()
def latent_interpolation(vae, x_a: torch.Tensor, x_b: torch.Tensor, n: int = 9) -> Interpolation:
    """``n`` evenly spaced frames of the pixel path and of the latent path from ``x_a`` to ``x_b``.

    Args:
        vae: a VAE with ``encode(x) -> (mean, logvar)`` and ``decode(z)`` (``dlcourse.models.VAE``).
        x_a, x_b: (C, H, W) images in [-1, 1], the same shape.
        n: number of frames, at least 2 (the two ends included).

    Returns:
        An ``Interpolation``, every tensor on the CPU.
    """
    x_a, x_b = check_image("x_a", x_a), check_image("x_b", x_b)
    if x_a.shape != x_b.shape:
        raise ValueError(f"x_b: expected the shape of x_a, {tuple(x_a.shape)}, got {tuple(x_b.shape)}")
    n = check_int("n", n, minimum=2)
    device = model_device(vae)
    a = torch.linspace(0, 1, n)                                                 # (n,)
    w = a.view(n, 1, 1, 1)
    pixel = (1 - w) * x_a + w * x_b                                             # (n, C, H, W)
    with eval_mode(vae):
        mean, _ = vae.encode(torch.stack([x_a, x_b]).to(device))                # (2, C_z, h, w)
        z_a, z_b = mean.float().cpu()
        z = (1 - w) * z_a + w * z_b                                             # (n, C_z, h, w)
        latent = vae.decode(z.to(device)).float().cpu().clamp(-1, 1)            # (n, C, H, W)
    return Interpolation(a, pixel, latent, z_a, z_b)


def _channels_png(z: torch.Tensor, display_size: int) -> bytes:
    """The latent's channels (C_z, h, w) side by side as grey images, each scaled to its own range."""
    lo = z.amin(dim=(1, 2), keepdim=True)
    hi = z.amax(dim=(1, 2), keepdim=True)
    grey = ((z - lo) / (hi - lo).clamp_min(1e-8)) * 2 - 1                       # (C_z, h, w) in [-1, 1]
    return png_bytes(image_grid(grey[:, None].expand(-1, 3, -1, -1), nrow=z.shape[0]), display_size)


def latent_explorer(vae, images: torch.Tensor, *, a: int = 0, b: int = 1, mix: float = 0.5, judge=None,
                    display_size: int = 160):
    """Pick two images and slide from one to the other, in pixel space and in latent space side by side.

    Args:
        vae: as in :func:`latent_interpolation`, or a dict ``{name: vae}`` of several (a VAE and a plain
            autoencoder, say): a menu then switches the latent path between them.
        images: (N, C, H, W) images in [-1, 1] to pick from (N >= 2).
        a, b: the indices of the two images shown first.
        mix: the slider's starting weight, 0 (image a) to 1 (image b).
        judge: optional ``dlcourse.judge.Judge``: the caption then says whether it accepts each mix
            as a clean image of one shape.
        display_size: each image is enlarged by whole pixels to at most this many pixels.

    Returns:
        An ``ipywidgets.VBox`` with attributes ``slider``, ``picker_a``, ``picker_b``, ``menu`` (the
        autoencoder's name), ``pixel``, ``latent``, ``channels``, ``label`` and ``redraw()``; None while
        nbgrader executes the notebook.
    """
    if skip_while_grading():
        return None
    import ipywidgets as widgets

    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[0] < 2:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images: expected (N, C, H, W) images with N >= 2, got {shape}")
    N = images.shape[0]
    a = check_int("a", a, minimum=0, maximum=N - 1)
    b = check_int("b", b, minimum=0, maximum=N - 1)
    mix = check_number("mix", mix, minimum=0.0, maximum=1.0)
    vaes = dict(vae) if isinstance(vae, dict) else {"autoencoder": vae}
    if not vaes:
        raise ValueError("vae: expected an autoencoder or a non-empty dict of them, got an empty dict")

    menu = widgets.Dropdown(options=list(vaes), description="latent of", layout=widgets.Layout(
        display=None if len(vaes) > 1 else "none"))
    picker_a = widgets.BoundedIntText(value=a, min=0, max=N - 1, description="image a")
    picker_b = widgets.BoundedIntText(value=b, min=0, max=N - 1, description="image b")
    slider = widgets.FloatSlider(value=mix, min=0.0, max=1.0, step=0.05, description="a -> b",
                                 continuous_update=False, readout_format=".2f")
    pixel, latent, channels = (image_widget() for _ in range(3))
    caption = widgets.Label()
    cache = {}

    def redraw(_=None):
        key = (menu.value, int(picker_a.value), int(picker_b.value))
        if key not in cache:
            cache.clear()
            cache[key] = latent_interpolation(vaes[key[0]], images[key[1]], images[key[2]], n=21)
        path = cache[key]
        k = round(float(slider.value) * 20)                                     # the frame nearest the slider
        set_png(pixel, png_bytes(path.pixel[k], display_size))
        set_png(latent, png_bytes(path.latent[k], display_size))
        set_png(channels, _channels_png((1 - path.a[k]) * path.z_a + path.a[k] * path.z_b, 2 * display_size))
        text = f"a = {float(path.a[k]):.2f}: pixel space (left) cross-fades, latent space (right) decodes a mix of codes"
        if judge is not None:
            valid = judge.predict(torch.stack([path.pixel[k], path.latent[k]]))["valid"].tolist()
            text += f"; the judge accepts: pixel {'yes' if valid[0] else 'no'}, latent {'yes' if valid[1] else 'no'}"
        caption.value = text

    for control in (menu, picker_a, picker_b, slider):
        control.observe(redraw, names="value")
    redraw()
    box = widgets.VBox([widgets.HBox([menu, picker_a, picker_b, slider]), caption, widgets.HBox([pixel, latent]),
                        widgets.Label("the latent's channels"), channels])
    box.slider, box.picker_a, box.picker_b, box.label, box.redraw = slider, picker_a, picker_b, caption, redraw
    box.menu = menu
    box.pixel, box.latent, box.channels = pixel, latent, channels
    return box
