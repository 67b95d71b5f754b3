"""Imagen's cascade in miniature: a 32 px super-resolution denoiser with noise-conditioning augmentation.

Imagen (Saharia et al. 2022, "Photorealistic Text-to-Image Diffusion Models with Deep Language Understanding",
sec. 2.5) draws a small image with a base model and enlarges it with super-resolution (SR) diffusion models, each a
denoiser of the large image that also reads the small one, upsampled and concatenated to ``x_t`` on the channels.
The SR model is trained on real pairs (a real image and its downsampled copy), but in the cascade it reads the
*base model's* samples, which are not quite real images: a train/test mismatch. Ho et al. 2021 ("Cascaded
Diffusion Models", sec. 4) answer it with **conditioning augmentation**, which Imagen calls noise-conditioning
augmentation: during training, the low-resolution image is noised with the forward process to a random level s,
and the level is given to the network::

    z_s = sqrt(ab_s) image + sqrt(1 - ab_s) eps,    s ~ U{0..max_noise_level},    model(x_t, t, {image: z_s, s})

At sampling, one fixed small level is used: the network then treats small flaws of the base's sample as noise it
has learned to look through. diffusers calls the level ``noise_level`` (its SR pipelines' argument).

- ``noise_conditioning_augmentation(image, noise_level, schedule, noise)``: the formula;
  ``augment_low_res(image, schedule, noise_level=... or max_noise_level=..., generator)``: the SR model's cond,
  a random level per sample in training, one fixed level at sampling (notebook 10b's exercise).
- ``SuperResolutionUNet``: the course's U-Net with ``2 C`` input channels (``x_t`` and the upsampled low-res image)
  and an embedding of the noise level added to the time embedding. ``cond = {"image": z_s, "noise_level": s}``.
- ``super_resolution_loss``: one training estimate, with the augmentation (``max_noise_level``) or without
  (``None``: the clean image at level 0).
- ``super_resolve``: DDIM from noise at the large size, the low-res image augmented at one fixed level.
- ``ImagenCascade``: the shipped 16 px text model ``shapes16_unet_text`` followed by a shipped SR model:
  ``ImagenCascade.from_pretrained()(prompts)`` gives (B, 3, 32, 32) in [-1, 1].

Measured (``bench/imagen_cascade.py``, 256 prompts, two seeds): on this data the augmentation does *not* pay. The
SR model trained without it enlarges the base's samples with FD 4.3-4.5 (floor 1.5) and 100% prompt accuracy; the
one trained with it, sampled at level 25, 9.5-9.6 and 98-99%. Its cost is about three times larger on real 16 px
inputs (FD 8.8-9.1 against 1.4): the mismatch it answers is there, but the base's samples are too close to real
ones for it to repay the detail the model learns not to copy.
- ``detail_energy``: the high-frequency part of images, what a 2x SR model has to add.

Recipe and figures: ``scripts/train_imagen_sr.py`` and ``bench/imagen_cascade.py`` (bench/README.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..device import model_device
from ..models import UNet, UNetConfig, register_model
from ..models.common import check_model_input
from ..models.embeddings import TimeEmbedding
from ..parameterization import diffusion_loss
from ..samplers import sample_ddim
from ..schedules import NoiseSchedule, get_schedule
from ..tensors import expand_like, seeded_noise
from ..validation import check_bool, check_int, check_number, check_schedule, check_tensor, check_timesteps

__all__ = ["NOISE_LEVEL", "ImagenCascade", "SuperResolutionUNet", "augment_low_res", "detail_energy",
           "noise_conditioning_augmentation", "super_resolution_loss", "super_resolve", "upsample"]


# The augmentation level ``ImagenCascade`` samples the shipped ``imagen_sr32_aug`` at (bench/imagen_cascade.py).
NOISE_LEVEL = 25


def noise_conditioning_augmentation(image: torch.Tensor, noise_level, schedule: NoiseSchedule,
                                    noise: torch.Tensor) -> torch.Tensor:
    """The low-resolution image noised by the forward process to each sample's level (Ho et al. 2021, sec. 4).

    ``z = sqrt(ab[s]) image + sqrt(1 - ab[s]) noise`` with ``ab = schedule.alphas_cumprod`` and s the sample's
    ``noise_level``: the same formula as x_t of training, applied to the condition.

    Args:
        image: (B, C, h, w) low-resolution images in [-1, 1].
        noise_level: (B,) integer levels in 0..T-1, one per sample, or one int for every sample.
        schedule: the noise schedule whose ``alphas_cumprod`` sets the levels.
        noise: (B, C, h, w) standard normal noise, like ``image``.

    Returns:
        (B, C, h, w) in ``image``'s dtype.
    """
    check_tensor("image", image, ndim=4, floating=True)
    check_schedule("schedule", schedule)
    check_tensor("noise", noise, shape=tuple(image.shape), floating=True)
    s = _levels(noise_level, image.shape[0], schedule.T, image.device)
    ab = expand_like(schedule.alphas_cumprod.to(image.device)[s].to(image.dtype), image)      # (B, 1, 1, 1)
    return ab.sqrt() * image + (1 - ab).sqrt() * noise.to(image.dtype)


def _levels(noise_level, batch_size: int, T: int, device) -> torch.Tensor:
    """``noise_level`` (an int or (B,) integers in 0..T-1) as a (B,) int64 tensor on ``device``."""
    if isinstance(noise_level, torch.Tensor) and noise_level.ndim == 1 and noise_level.shape[0] != batch_size:
        raise ValueError(f"noise_level: expected one level per sample, shape ({batch_size},), "
                         f"got {tuple(noise_level.shape)}")
    if isinstance(noise_level, torch.Tensor) and noise_level.ndim > 1:
        raise ValueError(f"noise_level: expected an int or shape ({batch_size},), got {tuple(noise_level.shape)}")
    s = check_timesteps("noise_level", noise_level, T)
    return s.to(device).expand(batch_size) if s.ndim == 0 else s.to(device)


def augment_low_res(image: torch.Tensor, schedule: NoiseSchedule, *, noise_level: int | None = None,
                    max_noise_level: int | None = None, generator: torch.Generator | None = None) -> dict:
    """The SR model's condition: the low-res image after noise-conditioning augmentation, and its level.

    Training (``max_noise_level`` given): each sample gets its own level ``s ~ U{0..max_noise_level}``, drawn
    first, ``torch.randint(0, max_noise_level + 1, (B,), generator=generator)``. Sampling (``noise_level`` given):
    every sample gets that one level. Then the noise, ``torch.randn(image.shape, generator=generator)``, and
    ``noise_conditioning_augmentation``. Both draws are made on the CPU and moved to ``image``'s device.

    Args:
        image: (B, C, h, w) low-resolution images.
        schedule: the augmentation's noise schedule.
        noise_level: the fixed level at sampling, an int in 0..T-1; or
        max_noise_level: the largest level of training's random ones, an int in 0..T-1 (give exactly one).
        generator: a CPU generator for the draws.

    Returns:
        ``{"image": (B, C, h, w) augmented, "noise_level": (B,) int64}``: the SR model's ``cond``.
    """
    check_tensor("image", image, ndim=4, floating=True)
    check_schedule("schedule", schedule)
    if (noise_level is None) == (max_noise_level is None):
        raise ValueError(f"noise_level, max_noise_level: give exactly one (a fixed level at sampling, or the "
                         f"largest random level in training), got {noise_level!r} and {max_noise_level!r}")
    B = image.shape[0]
    if max_noise_level is not None:
        check_int("max_noise_level", max_noise_level, minimum=0, maximum=schedule.T - 1)
        s = torch.randint(0, max_noise_level + 1, (B,), generator=generator)
    else:
        s = torch.full((B,), check_int("noise_level", noise_level, minimum=0, maximum=schedule.T - 1),
                       dtype=torch.long)
    noise = torch.randn(image.shape, generator=generator, dtype=image.dtype).to(image.device)
    s = s.to(image.device)
    return {"image": noise_conditioning_augmentation(image, s, schedule, noise), "noise_level": s}


def upsample(image: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, h, w) -> (B, C, size, size), bilinear: how the SR model sees the low-res image."""
    check_tensor("image", image, ndim=4, floating=True)
    check_int("size", size, minimum=1)
    return F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False)


@register_model
class SuperResolutionUNet(nn.Module):
    """A super-resolution denoiser: ``model(x_t, t, cond) -> (B, C, H, W)``.

    ``cond = {"image": (B, C, h, w) the (augmented) low-res image, "noise_level": (B,) or an int}``. The image is
    upsampled to H x W (``upsample``, bilinear) and concatenated to ``x_t`` on the channels; the level is embedded
    like a timestep (sinusoidal features, an MLP) and added to the time embedding that every residual block reads.
    The MLP's last layer starts at zero. A missing level is 0.

    With ``residual=True`` the upsampled image is also added to the output, for a model that predicts x_0
    (``prediction_type="sample"``): its guess of the large image starts as the bilinear enlargement of its
    condition and the U-Net learns what to add (the sharp edges). A small network trained for minutes learns that
    far faster than to redraw the whole image from the condition (the course's v-prediction run without the skip,
    2000 steps, guessed x_0 from pure noise worse than bilinear enlargement does).

    Args:
        config: the U-Net's ``UNetConfig``; ``in_channels`` must be twice ``out_channels`` (x_t and the image).
        T: the number of noise levels (the augmentation schedule's T).
        residual: add the upsampled image to the output.
    """

    def __init__(self, config: UNetConfig | None = None, T: int = 1000, residual: bool = False):
        super().__init__()
        config = config if config is not None else UNetConfig(in_channels=6, out_channels=3, base_channels=16)
        out = config.out_channels or config.in_channels
        if config.in_channels != 2 * out:
            raise ValueError(f"config: expected in_channels = 2 * out_channels (x_t and the upsampled image), got "
                             f"in_channels={config.in_channels}, out_channels={config.out_channels}")
        if config.num_classes is not None or config.context_dim is not None:
            raise ValueError("config: the super-resolution U-Net takes no labels and no context "
                             "(num_classes and context_dim must be None)")
        self.T = check_int("T", T, minimum=1)
        self.residual = check_bool("residual", residual)
        self.channels = out
        self.unet = UNet(config)
        emb_dim = 4 * config.base_channels
        self.noise_level_embed = TimeEmbedding(config.base_channels, emb_dim)
        nn.init.zeros_(self.noise_level_embed.mlp[2].weight)
        nn.init.zeros_(self.noise_level_embed.mlp[2].bias)

    def forward(self, x_t: torch.Tensor, t, cond=None) -> torch.Tensor:
        """Predict from ``x_t`` (B, C, H, W) at timesteps ``t`` (B,), reading ``cond["image"]`` at its level."""
        t = check_model_input(x_t, t, ndim=4, channels=self.channels, multiple=self.unet.downsampling)
        if not isinstance(cond, dict) or "image" not in cond:
            raise ValueError("cond: expected a dict with 'image', the (B, C, h, w) low-resolution image "
                             "(and 'noise_level'), got " + (f"keys {sorted(cond)}" if isinstance(cond, dict)
                                                            else type(cond).__name__))
        unknown = sorted(set(cond) - {"image", "noise_level"})
        if unknown:
            raise ValueError(f"cond: unknown key(s) {unknown}; expected 'image' and 'noise_level'")
        B, C, H, W = x_t.shape
        image = check_tensor("cond['image']", cond["image"], shape=(B, C, None, None), floating=True)
        level = cond.get("noise_level")
        s = _levels(0 if level is None else level, B, self.T, x_t.device)
        up = upsample(image.to(x_t), H)                                              # (B, C, H, W)
        h_in = torch.cat([x_t, up], dim=1)                                           # (B, 2 C, H, W)
        emb = self.unet.embed(t, None) + self.noise_level_embed(s.float())            # (B, emb_dim)
        h, skips = self.unet.encode(h_in, emb)
        h = self.unet.middle(h, emb)
        out = self.unet.decode(h, skips, emb)
        return out + up if self.residual else out

    def get_config(self) -> dict:
        return {"unet": self.unet.get_config(), "T": self.T, "residual": self.residual}

    @classmethod
    def from_config(cls, config: dict) -> "SuperResolutionUNet":
        return cls(UNetConfig(**config["unet"]), T=config["T"], residual=config.get("residual", False))


def super_resolution_loss(model, x_0: torch.Tensor, image: torch.Tensor, schedule: NoiseSchedule, *,
                          max_noise_level: int | None, prediction_type: str = "v_prediction",
                          generator: torch.Generator | None = None,
                          aug_generator: torch.Generator | None = None) -> torch.Tensor:
    """One training estimate for an SR model, with noise-conditioning augmentation or without.

    With ``max_noise_level`` an int, each sample's low-res image is augmented to a level ``s ~ U{0..max}``
    (``noise_conditioning_augmentation``) and s is passed as ``cond["noise_level"]``; with None, the clean image
    is passed at level 0. Then the denoising loss of ``dlcourse.parameterization.diffusion_loss`` on ``x_0``.

    Args:
        model: a ``SuperResolutionUNet`` (or any model taking that cond).
        x_0: (B, C, H, W) high-resolution images.
        image: (B, C, h, w) their low-resolution versions.
        schedule: the schedule of both the denoising and the augmentation.
        max_noise_level: the largest augmentation level, in 0..T-1, or None for no augmentation.
        prediction_type: "epsilon", "sample" or "v_prediction".
        generator: draws t and the noise of x_t (as ``diffusion_loss``).
        aug_generator: draws the levels and the augmentation noise: a separate stream, so that runs with and
            without augmentation see the same t and noise of x_t.

    Returns:
        Scalar loss tensor.
    """
    check_tensor("x_0", x_0, ndim=4, floating=True)
    check_tensor("image", image, shape=(x_0.shape[0], x_0.shape[1], None, None), floating=True)
    check_schedule("schedule", schedule)
    if max_noise_level is None:
        cond = {"image": image, "noise_level": torch.zeros(x_0.shape[0], dtype=torch.long, device=image.device)}
    else:
        check_int("max_noise_level", max_noise_level, minimum=0, maximum=schedule.T - 1)
        cond = augment_low_res(image, schedule, max_noise_level=max_noise_level, generator=aug_generator)
    return diffusion_loss(model, x_0, schedule, prediction_type=prediction_type, cond=cond, generator=generator)


@torch.no_grad()
def super_resolve(model: SuperResolutionUNet, image: torch.Tensor, schedule: NoiseSchedule, *, noise_level: int = 0,
                  num_inference_steps: int = 20, prediction_type: str = "v_prediction", seed: int = 0,
                  size: int | None = None) -> torch.Tensor:
    """Enlarge low-res images with an SR model: the image augmented at one fixed level, then DDIM from noise.

    Args:
        model: the SR denoiser.
        image: (B, C, h, w) low-resolution images in [-1, 1] (a base model's samples, or real ones).
        schedule: the schedule the model was trained with.
        noise_level: the augmentation level at sampling, one int in 0..T-1 for every sample (0: the image as it is).
        num_inference_steps: DDIM steps (one network call each).
        prediction_type: what the model predicts.
        seed: seeds the augmentation noise and the starting noise (``seeded_noise``, on the CPU).
        size: the output side; default twice h.

    Returns:
        (B, C, size, size) in [-1, 1], on ``image``'s device.
    """
    check_tensor("image", image, ndim=4, floating=True)
    check_int("noise_level", noise_level, minimum=0, maximum=schedule.T - 1)
    check_int("num_inference_steps", num_inference_steps, minimum=1)
    B, C, h, w = image.shape
    size = 2 * h if size is None else check_int("size", size, minimum=h)
    device = model_device(model)
    z = image.to(device)
    if noise_level > 0:
        cond = augment_low_res(z, schedule, noise_level=noise_level, generator=torch.Generator().manual_seed(seed + 1))
    else:                                                        # level 0: the image as it is
        cond = {"image": z, "noise_level": torch.zeros(B, dtype=torch.long, device=device)}
    x_T = seeded_noise((B, C, size, size), seed, device=device)
    x = sample_ddim(model, x_T, schedule, num_inference_steps, cond=cond, prediction_type=prediction_type,
                    progress=False)
    return x.clamp(-1, 1).to(image.device)


def detail_energy(images: torch.Tensor) -> float:
    """The mean square of the images' high-frequency part, ``x - upsample(avg_pool(x, 2))``.

    What a 2x super-resolution model has to add to its upsampled input: 0 for a bilinear enlargement of a small
    image up to its edges, larger for sharp edges. Compare with real images' figure.

    Args:
        images: (B, C, H, W) in [-1, 1], H even.
    """
    check_tensor("images", images, ndim=4, floating=True)
    if images.shape[-1] % 2 or images.shape[-2] % 2:
        raise ValueError(f"images: expected an even height and width, got shape {tuple(images.shape)}")
    x = images.float()
    return float((x - upsample(F.avg_pool2d(x, 2), x.shape[-1])).square().mean())


class ImagenCascade:
    """A base text-to-image model at 16 px and an SR model to 32 px: ``cascade(prompt) -> (B, 3, 32, 32)``.

    Args:
        base: a ``dlcourse.conditioning.TextToImage`` (``load_text_to_image``), base_info its info.
        sr: a ``SuperResolutionUNet``, sr_info its ``load_pretrained`` info (schedule, T, prediction_type,
            max_noise_level).
    """

    def __init__(self, base, base_info: dict, sr: SuperResolutionUNet, sr_info: dict):
        if not isinstance(sr, SuperResolutionUNet):
            raise TypeError(f"sr: expected a SuperResolutionUNet, got {type(sr).__name__}")
        self.base, self.sr, self.base_info, self.sr_info = base, sr, base_info, sr_info
        self.base_schedule = get_schedule(base_info["schedule"], base_info["T"])
        self.sr_schedule = get_schedule(sr_info["schedule"], sr_info["T"])

    @classmethod
    def from_pretrained(cls, sr_name: str = "imagen_sr32_noaug", base_name: str = "shapes16_unet_text",
                        device="cpu") -> "ImagenCascade":
        """The shipped base and SR models, checksum verified, in eval mode (float32).

        ``sr_name``: ``"imagen_sr32_noaug"`` (the default: on this data it measured better on the base's samples,
        bench/README.md) or ``"imagen_sr32_aug"`` (noise-conditioning augmentation, sampled at ``NOISE_LEVEL``).
        """
        from ..conditioning.text_to_image import load_text_to_image
        from ..pretrained import load_pretrained

        base, base_info = load_text_to_image(base_name, device=device)
        sr, sr_info = load_pretrained(sr_name, device=device)
        return cls(base.float(), base_info, sr.float(), sr_info)

    @torch.no_grad()
    def __call__(self, prompt, *, num_inference_steps: int = 20, guidance_scale: float = 3.0,
                 noise_level: int | None = None, sr_steps: int = 20, seed: int = 0, return_low_res: bool = False):
        """Generate from prompts: base DDIM at 16 px, then ``super_resolve`` to 32 px.

        Args:
            prompt: a caption or a list of B captions.
            num_inference_steps: the base model's DDIM steps.
            guidance_scale: the base model's classifier-free guidance scale w.
            noise_level: the SR model's augmentation level at sampling; None for ``NOISE_LEVEL`` if it was trained
                with augmentation (its info's ``max_noise_level``), else 0.
            sr_steps: the SR model's DDIM steps.
            seed: seeds all the noise.
            return_low_res: also return the base's 16 px samples.

        Returns:
            (B, 3, 32, 32) in [-1, 1], or ``(images, low_res)`` with low_res (B, 3, 16, 16).
        """
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if not prompts or not all(isinstance(p, str) for p in prompts):
            raise TypeError(f"prompt: expected a caption or a non-empty list of captions, got {prompt!r}")
        check_number("guidance_scale", guidance_scale, minimum=0.0)
        if noise_level is None:                          # the level measured best, for a model trained with it
            noise_level = NOISE_LEVEL if self.sr_info.get("max_noise_level") is not None else 0
        level = noise_level
        device = model_device(self.sr)
        x_T = seeded_noise((len(prompts), 3, 16, 16), seed, device=device)
        low = sample_ddim(self.base, x_T, self.base_schedule, num_inference_steps, cond=self.base.cond(prompts),
                          guidance_scale=guidance_scale, prediction_type=self.base_info["prediction_type"],
                          progress=False).clamp(-1, 1)
        images = super_resolve(self.sr, low, self.sr_schedule, noise_level=level, num_inference_steps=sr_steps,
                               prediction_type=self.sr_info["prediction_type"], seed=seed + 2)
        return (images, low) if return_low_res else images
