"""SDXL's micro-conditioning on the crop, in miniature: train on random crops, then ask for "no crop".

Training on random crops teaches a model to draw objects cut off by the frame: a crop of a photograph often
slices through its subject, and the model learns that this is what images look like. SDXL (Podell et al. 2023,
"SDXL: Improving Latent Diffusion Models for High-Resolution Image Synthesis", sec. 2.2) keeps the crops but
tells the network where each one came from: the crop's top-left corner ``(c_top, c_left)`` (in pixels of the
resized image) is embedded with Fourier features, like the timestep, and added to the time embedding. At
sampling it asks for ``(0, 0)``, the position of an uncropped image, which removes most cut-off objects; a large
offset asks for them. SDXL conditions on the original image size ``(h_original, w_original)`` the same way: a
small image upscaled to the training size is blurry, and a model told the size each image had before it was resized
learns which blur belongs to which size; at sampling it asks for a large one.

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
import torch.nn.functional as F
from torch import nn

from ..data.shapes import BACKGROUND
from ..models.common import register_model
from ..models.embeddings import timestep_embedding
from ..models.unet import UNet
from ..samplers import sample_ddim
from ..validation import check_int, check_number, check_positive, check_tensor

__all__ = ["MicroConditioning", "RefinerSwitch", "crop_embedding", "cut_off", "high_frequency_energy",
           "random_crops", "sample_with_refiner", "shrink", "size_embedding"]


def crop_embedding(crops_coords_top_left: torch.Tensor, dim: int = 32, max_period: float = 10000.0) -> torch.Tensor:
    """Fourier features of crop corners: each coordinate's sinusoidal embedding, concatenated.

    Args:
        crops_coords_top_left: (B, 2) ``(c_top, c_left)`` in pixels (ints or floats).
        dim: features per coordinate (sines then cosines, as ``timestep_embedding``).
        max_period: the longest period is ``2 pi max_period``.

    Returns:
        (B, 2 * dim) float32: ``[emb(c_top), emb(c_left)]``.
    """
    return _pair_embedding("crops_coords_top_left", crops_coords_top_left, dim, max_period)


def size_embedding(original_size: torch.Tensor, dim: int = 32, max_period: float = 10000.0) -> torch.Tensor:
    """Fourier features of original sizes: ``[emb(h_original), emb(w_original)]``, as ``crop_embedding``.

    Args:
        original_size: (B, 2) ``(h_original, w_original)`` in pixels, before the image was resized.
        dim: features per coordinate.
        max_period: the longest period is ``2 pi max_period``.

    Returns:
        (B, 2 * dim) float32.
    """
    return _pair_embedding("original_size", original_size, dim, max_period)


def _pair_embedding(name: str, pairs: torch.Tensor, dim: int, max_period: float) -> torch.Tensor:
    """(B, 2) pixel pairs -> (B, 2 * dim): each coordinate's sinusoidal embedding, concatenated."""
    check_tensor(name, pairs, ndim=2)
    if pairs.shape[1] != 2:
        raise ValueError(f"{name}: expected shape (B, 2) of {_EXPECTED[name]}, got {tuple(pairs.shape)}")
    check_positive("dim", dim, integer=True)
    p = pairs.float()
    return torch.cat([timestep_embedding(p[:, 0], dim, max_period),
                      timestep_embedding(p[:, 1], dim, max_period)], dim=1)          # (B, 2 dim)


_EXPECTED = {"crops_coords_top_left": "(c_top, c_left)", "original_size": "(h_original, w_original)"}


def _coords(value, batch_size: int, device, name: str = "crops_coords_top_left") -> torch.Tensor:
    """A pair given once (for every sample) or as (B, 2), as a (B, 2) float tensor on ``device``."""
    c = torch.as_tensor(value, dtype=torch.float32, device=device)
    if c.ndim == 1:
        if c.shape[0] != 2:
            raise ValueError(f"{name}: expected {_EXPECTED[name]} or shape (B, 2), got shape {tuple(c.shape)}")
        c = c.expand(batch_size, 2)
    return check_tensor(name, c, shape=(batch_size, 2))


@register_model
class MicroConditioning(nn.Module):
    """SDXL's micro-conditioning for a network that cannot take it: ``wrapper(x, t, cond)``.

    ``cond`` is ``{"crops_coords_top_left": (B, 2) or (2,), "original_size": (B, 2) or (2,), "cond": the network's
    cond}`` (either key may be left out) or, as for the network alone, anything else. A missing crop is ``(0, 0)``;
    a missing original size is the input's own ``(H, W)``. ``MLP([size_embedding(s), crop_embedding(c)])`` (the
    size only with ``original_size=True``) is added to the network's time embedding, which every block reads. The
    MLP's last layer starts at zero.

    Args:
        net: the network; its ``time_embed`` must return (B, dim) vectors.
        dim: that width; None reads it from the last ``nn.Linear`` of ``net.time_embed``.
        fourier_dim: Fourier features per coordinate (``crop_embedding``).
        original_size: also condition on the original size (SDXL's first micro-condition).
    """

    def __init__(self, net: nn.Module, dim: int | None = None, fourier_dim: int = 32, original_size: bool = False):
        super().__init__()
        if not hasattr(net, "time_embed"):
            raise TypeError(f"net: expected a network with a time_embed module (a dlcourse.models UNet or DiT), "
                            f"got {type(net).__name__}")
        if dim is None:
            dim = [m for m in net.time_embed.modules() if isinstance(m, nn.Linear)][-1].out_features
        check_positive("dim", dim, integer=True)
        check_positive("fourier_dim", fourier_dim, integer=True)
        if not isinstance(original_size, bool):
            raise TypeError(f"original_size: expected True or False, got {original_size!r}")
        self.net, self.dim, self.fourier_dim, self.original_size = net, dim, fourier_dim, original_size
        pairs = 2 if original_size else 1
        self.crop_embed = nn.Sequential(nn.Linear(2 * pairs * fourier_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        nn.init.zeros_(self.crop_embed[2].weight)
        nn.init.zeros_(self.crop_embed[2].bias)

    def features(self, crops_coords_top_left: torch.Tensor, original_size: torch.Tensor | None = None):
        """The Fourier features the MLP reads: (B, 2) pairs -> (B, 2 F) or, with the size, (B, 4 F)."""
        crop = crop_embedding(crops_coords_top_left, self.fourier_dim)
        if not self.original_size:
            return crop
        return torch.cat([size_embedding(original_size, self.fourier_dim), crop], dim=1)

    def forward(self, x_t: torch.Tensor, t, cond=None) -> torch.Tensor:
        """``net(x_t, t, cond["cond"])`` with the micro-conditions' embedding added to the time embedding."""
        B, device = x_t.shape[0], x_t.device
        micro = isinstance(cond, dict) and ("crops_coords_top_left" in cond or "original_size" in cond)
        inner = cond.get("cond") if micro else cond
        crop = cond.get("crops_coords_top_left") if micro else None
        size = cond.get("original_size") if micro else None
        if size is not None and not self.original_size:
            raise ValueError("original_size: this wrapper conditions on the crop alone (original_size=False); "
                             "leave original_size out of cond")
        coords = torch.zeros(B, 2, device=device) if crop is None else _coords(crop, B, device)
        sizes = (torch.tensor([float(x_t.shape[-2]), float(x_t.shape[-1])], device=device).expand(B, 2)
                 if size is None else _coords(size, B, device, "original_size"))
        emb = self.crop_embed(self.features(coords, sizes))                           # (B, 2 or 4 F) -> (B, dim)
        hook = self.net.time_embed.register_forward_hook(lambda module, args, out: out + emb.to(out.dtype))
        try:
            return self.net(x_t, t, inner)
        finally:
            hook.remove()

    def at(self, crops_coords_top_left=(0, 0), original_size=None) -> "AtCrop":
        """This wrapper with the conditions fixed (each a pair or (B, 2)): ``model(x, t, cond)`` for a sampler."""
        return AtCrop(self, crops_coords_top_left, original_size)

    def get_config(self) -> dict:
        if not isinstance(self.net, UNet):
            raise TypeError(f"MicroConditioning.get_config: only a wrapped UNet can be stored, got "
                            f"{type(self.net).__name__}")
        return {"unet": self.net.get_config(), "dim": self.dim, "fourier_dim": self.fourier_dim,
                "original_size": self.original_size}

    @classmethod
    def from_config(cls, config: dict) -> "MicroConditioning":
        return cls(UNet.from_config(config["unet"]), dim=config["dim"], fourier_dim=config["fourier_dim"],
                   original_size=config.get("original_size", False))


class AtCrop(nn.Module):
    """``MicroConditioning`` with one crop (and original size) for every call (see ``MicroConditioning.at``)."""

    def __init__(self, micro: MicroConditioning, crops_coords_top_left=(0, 0), original_size=None):
        super().__init__()
        fixed = {}
        for name, value in (("crops_coords_top_left", crops_coords_top_left), ("original_size", original_size)):
            if value is None:
                continue
            c = torch.as_tensor(value, dtype=torch.float32)
            if c.ndim not in (1, 2) or c.shape[-1] != 2:
                raise ValueError(f"{name}: expected {_EXPECTED[name]} or shape (B, 2), got shape {tuple(c.shape)}")
            fixed[name] = c
        if "original_size" in fixed and not micro.original_size:
            raise ValueError("original_size: this wrapper conditions on the crop alone (original_size=False)")
        self.micro, self.fixed = micro, fixed
        self.crops_coords_top_left = fixed.get("crops_coords_top_left")

    def forward(self, x_t: torch.Tensor, t, cond=None) -> torch.Tensor:
        return self.micro(x_t, t, {**self.fixed, "cond": cond})


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


def shrink(images: torch.Tensor, size: int) -> torch.Tensor:
    """Images as if their original had been ``size`` pixels: area-averaged down to it, bilinear back up.

    Args:
        images: (N, C, H, W).
        size: the small side, 1..min(H, W).

    Returns:
        (N, C, H, W): blurry where the original was sharp; ``size == H == W`` returns the images unchanged.
    """
    check_tensor("images", images, ndim=4, floating=True)
    N, C, H, W = images.shape
    check_int("size", size, minimum=1, maximum=min(H, W))
    if size == H == W:
        return images.clone()
    small = F.interpolate(images, size=(size, size), mode="area")                     # (N, C, s, s)
    return F.interpolate(small, size=(H, W), mode="bilinear", align_corners=False)


def high_frequency_energy(images: torch.Tensor, cutoff: float = 0.25) -> torch.Tensor:
    """The share of each image's spectral power at spatial frequencies above ``cutoff`` cycles per pixel.

    The mean of each channel is removed first (the flat background is not detail). 0.25 cycles per pixel is the
    Nyquist frequency of an image half the size: a 16 px image shrunk to 8 px and upsampled back holds almost no
    power above it, a sharp one does (its edges).

    Args:
        images: (N, C, H, W).
        cutoff: in cycles per pixel, in (0, 0.5); a frequency counts above it when ``max(|f_y|, |f_x|) > cutoff``.

    Returns:
        (N,) float32 in [0, 1] (0 for a flat image).
    """
    check_tensor("images", images, ndim=4, floating=True)
    check_number("cutoff", cutoff, minimum=0)
    if not 0 < cutoff < 0.5:
        raise ValueError(f"cutoff: expected a frequency in (0, 0.5) cycles per pixel, got {cutoff}")
    x = images.float()
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(x).abs().square().sum(dim=1)                              # (N, H, W)
    fy = torch.fft.fftfreq(x.shape[-2]).abs()[:, None]
    fx = torch.fft.fftfreq(x.shape[-1]).abs()[None, :]
    high = torch.maximum(fy, fx) > cutoff                                            # (H, W)
    total = power.flatten(1).sum(dim=1)
    return torch.where(total > 0, power[:, high].sum(dim=1) / total.clamp_min(1e-12), torch.zeros_like(total))


class RefinerSwitch(nn.Module):
    """SDXL's refiner as one denoiser: ``refiner(x_t, t, cond)`` where ``t < switch_t``, ``base`` elsewhere.

    Each call runs only the model its samples need (both, on their own samples, when a batch mixes timesteps), so
    a sampler makes exactly as many network calls as with ``base`` alone. Both models must share the schedule and
    the prediction type.

    Args:
        base: the model of the noisy steps, called as ``base(x_t, t, cond)``.
        refiner: the model of the last, low-noise steps.
        switch_t: the first timestep that stays with ``base``; 0 never refines.
    """

    def __init__(self, base, refiner, switch_t: int):
        super().__init__()
        check_int("switch_t", switch_t, minimum=0)
        self.base, self.refiner, self.switch_t = base, refiner, switch_t

    def forward(self, x_t: torch.Tensor, t, cond=None) -> torch.Tensor:
        t = torch.as_tensor(t, device=x_t.device)
        t = t.expand(x_t.shape[0]) if t.ndim == 0 else t                                  # (B,)
        low = t < self.switch_t
        if bool(low.all()):
            return self.refiner(x_t, t, cond)
        if not bool(low.any()):
            return self.base(x_t, t, cond)
        if cond is not None:
            raise ValueError("cond: a batch with timesteps on both sides of switch_t cannot split its cond; "
                             "sample with one t per step (every course sampler does)")
        out = torch.empty_like(x_t)
        out[low] = self.refiner(x_t[low], t[low], None)
        out[~low] = self.base(x_t[~low], t[~low], None)
        return out


def sample_with_refiner(base, refiner, x_T: torch.Tensor, schedule, steps: int, switch_t: int, **kwargs):
    """DDIM with ``base`` for the steps at ``t >= switch_t`` and ``refiner`` for the rest (``RefinerSwitch``).

    Args:
        base, refiner: denoisers ``model(x_t, t, cond)`` of the same schedule and prediction type.
        x_T: (B, C, H, W) starting noise.
        schedule: their schedule.
        steps: network calls in all, as for ``sample_ddim`` (the refiner's share is the steps below ``switch_t``).
        switch_t: the timestep where the refiner takes over, 0..T.
        **kwargs: passed to ``dlcourse.samplers.sample_ddim`` (``prediction_type``, ``clip_x0``, ``cond``, ...).

    Returns:
        (B, C, H, W) the samples.
    """
    check_int("switch_t", switch_t, minimum=0, maximum=schedule.T)
    return sample_ddim(RefinerSwitch(base, refiner, switch_t), x_T, schedule, steps, **kwargs)


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
