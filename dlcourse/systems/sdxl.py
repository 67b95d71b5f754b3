"""SDXL's micro-conditioning on the crop, in miniature: train on random crops, then ask for "no crop".

Training on random crops teaches a model to draw objects cut off by the frame: a crop of a photograph often
slices through its subject, and the model learns that this is what images look like. SDXL (Podell et al. 2023,
"SDXL: Improving Latent Diffusion Models for High-Resolution Image Synthesis", sec. 2.2) keeps the crops but
tells the network where each one came from: the crop's top-left corner ``(c_top, c_left)`` (in pixels of the
resized image) is embedded with Fourier features, like the timestep, and added to the time embedding. At
sampling it asks for ``(0, 0)``, the position of an uncropped image, which removes most cut-off objects; a large
offset asks for them. SDXL conditions on the original image size the same way; this miniature keeps the crop.

- ``crop_embedding(crops_coords_top_left, dim)``: the Fourier features, (B, 2) -> (B, 2 * dim).
- ``MicroConditioning(net)``: a wrapper around any ``dlcourse.models`` network with a ``time_embed`` (the U-Net,
  the DiT); an MLP of those features is added to the time embedding through a forward hook (the pattern of
  ``dlcourse.consistency.GuidanceInput``). Its last layer starts at zero, so a new wrapper is exactly the
  wrapped network at every crop: fine-tuning starts from it. The crop rides in ``cond`` as a dict,
  ``{"crops_coords_top_left": (B, 2), "cond": the network's own cond}`` (diffusers' argument name), so the
  course's losses and samplers pass it through unchanged; ``wrapper.at((0, 0))`` fixes one crop for a sampler.
- ``random_crops(images, crop_size, generator)``: the training data, with each crop's ``(top, left)``.
- ``cut_off(images)``: whether the shape in a shapes image touches the frame, read from the pixels alone, to
  measure the effect (``bench/sdxl_crops.py``; recipe and figures in ``scripts/train_sdxl_crops.py``).
"""

from __future__ import annotations

import torch
from torch import nn

from ..data.shapes import BACKGROUND
from ..models.embeddings import timestep_embedding
from ..validation import check_int, check_number, check_positive, check_tensor

__all__ = ["MicroConditioning", "crop_embedding", "cut_off", "random_crops"]


def crop_embedding(crops_coords_top_left: torch.Tensor, dim: int = 32, max_period: float = 10000.0) -> torch.Tensor:
    """Fourier features of crop corners: each coordinate's sinusoidal embedding, concatenated.

    Args:
        crops_coords_top_left: (B, 2) ``(c_top, c_left)`` in pixels (ints or floats).
        dim: features per coordinate (sines then cosines, as ``timestep_embedding``).
        max_period: the longest period is ``2 pi max_period``.

    Returns:
        (B, 2 * dim) float32: ``[emb(c_top), emb(c_left)]``.
    """
    check_tensor("crops_coords_top_left", crops_coords_top_left, ndim=2)
    if crops_coords_top_left.shape[1] != 2:
        raise ValueError(f"crops_coords_top_left: expected shape (B, 2) of (c_top, c_left), "
                         f"got {tuple(crops_coords_top_left.shape)}")
    check_positive("dim", dim, integer=True)
    c = crops_coords_top_left.float()
    return torch.cat([timestep_embedding(c[:, 0], dim, max_period),
                      timestep_embedding(c[:, 1], dim, max_period)], dim=1)          # (B, 2 dim)


def _coords(value, batch_size: int, device) -> torch.Tensor:
    """A crop given as ``(top, left)`` (for every sample) or (B, 2), as a (B, 2) float tensor on ``device``."""
    c = torch.as_tensor(value, dtype=torch.float32, device=device)
    if c.ndim == 1:
        if c.shape[0] != 2:
            raise ValueError(f"crops_coords_top_left: expected (c_top, c_left) or shape (B, 2), got shape "
                             f"{tuple(c.shape)}")
        c = c.expand(batch_size, 2)
    return check_tensor("crops_coords_top_left", c, shape=(batch_size, 2))


class MicroConditioning(nn.Module):
    """SDXL's crop conditioning for a network that cannot take it: ``wrapper(x, t, cond)``.

    ``cond`` is ``{"crops_coords_top_left": (B, 2) or (2,), "cond": the network's cond}`` or, as for the
    network alone, anything else (then the crop is ``(0, 0)``). ``MLP(crop_embedding(c))`` is added to the
    network's time embedding, which every block reads. The MLP's last layer starts at zero.

    Args:
        net: the network; its ``time_embed`` must return (B, dim) vectors.
        dim: that width; None reads it from the last ``nn.Linear`` of ``net.time_embed``.
        fourier_dim: Fourier features per coordinate (``crop_embedding``).
    """

    def __init__(self, net: nn.Module, dim: int | None = None, fourier_dim: int = 32):
        super().__init__()
        if not hasattr(net, "time_embed"):
            raise TypeError(f"net: expected a network with a time_embed module (a dlcourse.models UNet or DiT), "
                            f"got {type(net).__name__}")
        if dim is None:
            dim = [m for m in net.time_embed.modules() if isinstance(m, nn.Linear)][-1].out_features
        check_positive("dim", dim, integer=True)
        check_positive("fourier_dim", fourier_dim, integer=True)
        self.net, self.dim, self.fourier_dim = net, dim, fourier_dim
        self.crop_embed = nn.Sequential(nn.Linear(2 * fourier_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        nn.init.zeros_(self.crop_embed[2].weight)
        nn.init.zeros_(self.crop_embed[2].bias)

    def forward(self, x_t: torch.Tensor, t, cond=None) -> torch.Tensor:
        """``net(x_t, t, cond["cond"])`` with the crop's embedding added to the time embedding."""
        B = x_t.shape[0]
        if isinstance(cond, dict) and "crops_coords_top_left" in cond:
            coords, inner = _coords(cond["crops_coords_top_left"], B, x_t.device), cond.get("cond")
        else:
            coords, inner = torch.zeros(B, 2, device=x_t.device), cond
        emb = self.crop_embed(crop_embedding(coords, self.fourier_dim))              # (B, 2 F) -> (B, dim)
        hook = self.net.time_embed.register_forward_hook(lambda module, args, out: out + emb.to(out.dtype))
        try:
            return self.net(x_t, t, inner)
        finally:
            hook.remove()

    def at(self, crops_coords_top_left) -> "AtCrop":
        """This wrapper with the crop fixed (``(c_top, c_left)`` or (B, 2)): ``model(x, t, cond)`` for a sampler."""
        return AtCrop(self, crops_coords_top_left)


class AtCrop(nn.Module):
    """``MicroConditioning`` with one crop for every call (see ``MicroConditioning.at``)."""

    def __init__(self, micro: MicroConditioning, crops_coords_top_left):
        super().__init__()
        c = torch.as_tensor(crops_coords_top_left, dtype=torch.float32)
        if c.ndim not in (1, 2) or c.shape[-1] != 2:
            raise ValueError(f"crops_coords_top_left: expected (c_top, c_left) or shape (B, 2), got shape "
                             f"{tuple(c.shape)}")
        self.micro, self.crops_coords_top_left = micro, c

    def forward(self, x_t: torch.Tensor, t, cond=None) -> torch.Tensor:
        return self.micro(x_t, t, {"crops_coords_top_left": self.crops_coords_top_left, "cond": cond})


def random_crops(images: torch.Tensor, crop_size: int, generator: torch.Generator | None = None):
    """One random square crop of each image, its corner drawn uniformly over every position that fits.

    Args:
        images: (N, C, H, W).
        crop_size: the crop's side s, at most min(H, W).
        generator: draws the corners (CPU generator).

    Returns:
        ``(crops, crops_coords_top_left)``: (N, C, s, s) and (N, 2) int64 ``(top, left)``, with
        ``crops[i] == images[i, :, top:top + s, left:left + s]``.
    """
    check_tensor("images", images, ndim=4)
    N, C, H, W = images.shape
    check_int("crop_size", crop_size, minimum=1, maximum=min(H, W))
    top = torch.randint(H - crop_size + 1, (N,), generator=generator)
    left = torch.randint(W - crop_size + 1, (N,), generator=generator)
    ar = torch.arange(crop_size)
    rows = (top[:, None] + ar).to(images.device)                                     # (N, s)
    cols = (left[:, None] + ar).to(images.device)                                    # (N, s)
    n = torch.arange(N, device=images.device)[:, None, None]
    crops = images.permute(0, 2, 3, 1)[n, rows[:, :, None], cols[:, None, :]]         # (N, s, s, C)
    return crops.permute(0, 3, 1, 2).contiguous(), torch.stack([top, left], dim=1)


def cut_off(images: torch.Tensor, *, level: float = 0.75, min_pixels: int = 2) -> torch.Tensor:
    """Whether the shape in each shapes image is cut off by the frame, read from the pixels alone.

    A pixel's coverage is its distance from the background colour (the largest over channels) over the image's
    largest such distance (the shape's own colour). The shape is cut off when at least ``min_pixels`` pixels of
    the outer ring have coverage >= ``level``: a shape inside the frame comes within half a pixel of it at most
    (``make_shapes``), so its outline shades a border pixel only partly. An image with no pixel 0.3 from the
    background (no shape) is not cut off.

    Args:
        images: (N, 3, H, W) in [-1, 1].
        level: coverage in (0, 1] that counts a border pixel as the shape's.
        min_pixels: border pixels needed.

    Returns:
        (N,) bool.
    """
    check_tensor("images", images, ndim=4, floating=True)
    if images.shape[1] != 3:
        raise ValueError(f"images: expected 3 channels (N, 3, H, W), got shape {tuple(images.shape)}")
    check_number("level", level, minimum=0)
    if not 0 < level <= 1:
        raise ValueError(f"level: expected a value in (0, 1], got {level}")
    check_int("min_pixels", min_pixels, minimum=1)
    bg = (torch.tensor(BACKGROUND, device=images.device) * 2 - 1).view(1, 3, 1, 1)
    d = (images.float() - bg).abs().amax(dim=1)                                      # (N, H, W)
    peak = d.flatten(1).amax(dim=1)                                                  # (N,)
    coverage = d / peak.clamp_min(1e-6)[:, None, None]
    ring = torch.ones_like(coverage[0], dtype=torch.bool)
    ring[1:-1, 1:-1] = False                                                         # (H, W) the outer ring
    count = (coverage[:, ring] >= level).sum(dim=1)                                  # (N,)
    return (peak > 0.3) & (count >= min_pixels)
