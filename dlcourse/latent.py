"""Latent diffusion: diffusion in the latent space of a VAE (Rombach et al. 2022, "High-Resolution
Image Synthesis with Latent Diffusion Models", the method behind Stable Diffusion).

Running diffusion at full pixel resolution is expensive: every one of the sampler's steps is a
network call on every pixel. A VAE (``dlcourse.models.VAE``, Kingma & Welling 2014) first
learns to compress an image into a smaller latent and back; diffusion then runs on the latents
and only the final latent is decoded:

    training   z_0 = scale * E(x_0);  t ~ U{0..T-1};  eps ~ N(0, I);
               z_t = sqrt(ab_t) z_0 + sqrt(1 - ab_t) eps;  loss = || model(z_t, t) - eps ||^2
    sampling   z_T ~ N(0, I)  ->  a sampler (DDIM, DPM-Solver++, ...)  ->  z_0  ->  x_0 = D(z_0 / scale)

The pieces, in the order notebook 06 builds them:

    reparameterize(mean, logvar, eps)        z = mean + exp(logvar / 2) eps: a sample of q(z | x) with a gradient
    kl_to_standard_normal(mean, logvar)      KL(N(mean, exp(logvar)) || N(0, I)) in closed form, per example
    vae_loss(vae, x, beta)                   reconstruction + beta * KL, the VAE's training loss
    latent_scale_factor(vae, images)         1 / std of the latents, so the scaled latents have unit variance
    encode(vae, x, scale) / decode(vae, z_0, scale)
    latent_diffusion_loss(model, vae, x_0, schedule, scale)
    generate(model, vae, schedule, scale, n)
    compression_factor(vae)                  numbers per image / numbers per latent (12 for 32x32x3 -> 4x8x8)

Images are (B, 3, H, W) in [-1, 1] of the VAE's ``image_size``; latents are (B, *vae.latent_shape).
Latents are not confined to [-1, 1]: sample them with ``clip_x0=False`` (``generate`` does).
The figures (compression, reconstruction, the cost of pixel against latent diffusion) are
measured in ``bench/latent_cost.py`` and listed in ``bench/README.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .device import model_device
from .parameterization import PREDICTION_TYPES, diffusion_loss
from .samplers import SAMPLERS
from .schedules import NoiseSchedule
from .tensors import eval_mode, seeded_noise
from .validation import check_choice, check_int, check_number, check_positive, check_schedule, check_tensor

__all__ = ["VAELoss", "compression_factor", "decode", "encode", "generate", "kl_to_standard_normal",
           "latent_diffusion_loss", "latent_scale_factor", "reparameterize", "vae_loss"]

RANGE_TOLERANCE = 1e-3          # images may stray this far outside [-1, 1] (rounding), no further
BATCH = 512                     # encode and decode in chunks of this many, to bound the memory used


def check_vae(vae):
    """``vae`` must look like a ``dlcourse.models.VAE``: encode, decode, latent_shape, image_shape."""
    if not all(hasattr(vae, a) for a in ("encode", "decode", "latent_shape", "image_shape")):
        raise TypeError(f"vae: expected a VAE (dlcourse.models.VAE: encode, decode, latent_shape, image_shape), "
                        f"got {type(vae).__name__}")
    return vae


def check_images(name: str, x, vae) -> torch.Tensor:
    """(B, C, H, W) floating images of the VAE's size with values in [-1, 1]; the error says what came."""
    check_tensor(name, x, ndim=4, floating=True)
    shape = tuple(vae.image_shape)
    if tuple(x.shape[1:]) != shape:
        raise ValueError(f"{name}: expected images of shape (B, {', '.join(map(str, shape))}) for this VAE, "
                         f"got {tuple(x.shape)}")
    if x.numel():
        lo, hi = float(x.min()), float(x.max())
        if lo < -1 - RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
            raise ValueError(f"{name}: expected values in [-1, 1] (make_shapes(...).images), got values from "
                             f"{lo:.3g} to {hi:.3g}; images in [0, 1] need x * 2 - 1, in [0, 255] x / 127.5 - 1")
    return x


def check_latents(name: str, z, vae) -> torch.Tensor:
    """(B, *vae.latent_shape) floating latents; the error says which shape was expected."""
    check_tensor(name, z, ndim=4, floating=True)
    shape = tuple(vae.latent_shape)
    if tuple(z.shape[1:]) != shape:
        raise ValueError(f"{name}: expected latents of shape (B, {', '.join(map(str, shape))}) for this VAE, "
                         f"got {tuple(z.shape)}")
    return z


def reparameterize(mean: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """A sample of N(mean, exp(logvar)) written as a function of its parameters (Kingma & Welling 2014, sec. 2.4).

    ``z = mean + exp(logvar / 2) * eps``: the standard deviation is exp(logvar / 2), and the
    randomness is all in ``eps ~ N(0, I)``, so gradients flow to ``mean`` and ``logvar``.

    Args:
        mean, logvar, eps: tensors of one shape, e.g. (B, 4, 8, 8).

    Returns:
        ``z``, the same shape.
    """
    check_tensor("mean", mean, floating=True)
    check_tensor("logvar", logvar, shape=tuple(mean.shape), floating=True)
    check_tensor("eps", eps, shape=tuple(mean.shape), floating=True)
    return mean + torch.exp(0.5 * logvar) * eps


def kl_to_standard_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, diag(exp(logvar))) || N(0, I)) in closed form, per example (Kingma & Welling 2014, appendix B).

    ``0.5 * sum(mean^2 + exp(logvar) - 1 - logvar)`` over every dimension but the first.

    Args:
        mean, logvar: (B, ...) the parameters of q(z | x).

    Returns:
        (B,) the KL divergence of each example, in nats.
    """
    check_tensor("mean", mean, floating=True)
    check_tensor("logvar", logvar, shape=tuple(mean.shape), floating=True)
    if mean.ndim < 2:
        raise ValueError(f"mean: expected (B, ...) with at least 2 dimensions, got shape {tuple(mean.shape)}")
    terms = mean.square() + logvar.exp() - 1 - logvar                  # (B, ...)
    return 0.5 * terms.flatten(1).sum(dim=1)                            # (B, D) -> (B,)


@dataclass
class VAELoss:
    """What ``vae_loss`` returns; all scalar tensors.

    Attributes:
        loss: ``reconstruction + beta * kl``, to backpropagate.
        reconstruction: mean squared error per pixel value (over B, C, H, W).
        kl: KL divergence to N(0, I) per latent dimension (nats), averaged over the batch.
    """

    loss: torch.Tensor
    reconstruction: torch.Tensor
    kl: torch.Tensor


def vae_loss(vae, x: torch.Tensor, beta: float, eps: torch.Tensor | None = None) -> VAELoss:
    """The VAE's loss: reconstruction error + beta * KL to the prior (the negative ELBO, reweighted).

    ``reconstruction`` is the mean squared error averaged over every pixel value (B * C * H * W);
    ``kl`` is ``kl_to_standard_normal`` divided by the number of latent dimensions (C * h * w) and
    averaged over the batch. Both are per number, so ``beta`` does not change meaning with the
    image or latent size. A Gaussian decoder gives beta = 2 sigma^2 * D / (C H W) for the exact
    ELBO; a much smaller beta (Higgins et al. 2017 for the other direction; Rombach et al. 2022
    use a "slight" KL penalty) keeps the reconstructions sharp while the latents stay near N(0, I).

    For ``dlcourse.loop.fit``: ``loss_fn = lambda vae, batch: vae_loss(vae, batch["x_0"], beta).loss``.

    Args:
        vae: a ``dlcourse.models.VAE``.
        x: (B, C, H, W) images in [-1, 1]; moved to the VAE's device.
        beta: weight of the KL term, >= 0.
        eps: (B, *latent_shape) noise of the reparameterised sample; drawn if None.

    Returns:
        A ``VAELoss`` of scalar tensors, on the VAE's device.
    """
    check_vae(vae)
    check_images("x", x, vae)
    beta = check_number("beta", beta, minimum=0)
    if eps is not None:
        check_latents("eps", eps, vae)
    device = model_device(vae)
    x = x.to(device)
    x_rec, mean, logvar = vae(x, None if eps is None else eps.to(device))
    reconstruction = F.mse_loss(x_rec.float(), x.float())                     # mean over B, C, H, W
    kl = kl_to_standard_normal(mean.float(), logvar.float()).mean() / math.prod(mean.shape[1:])
    return VAELoss(loss=reconstruction + beta * kl, reconstruction=reconstruction, kl=kl)


@torch.no_grad()
def _encode_means(vae, x: torch.Tensor, sample: bool, generator) -> torch.Tensor:
    device = model_device(vae)
    out = []
    with eval_mode(vae):
        for i in range(0, x.shape[0], BATCH):
            mean, logvar = vae.encode(x[i:i + BATCH].to(device))
            if sample:
                eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype,
                                  device=generator.device if generator is not None else device).to(device)
                mean = mean + torch.exp(0.5 * logvar) * eps
            out.append(mean.float().to(x.device))
    return torch.cat(out)


def latent_scale_factor(vae, images: torch.Tensor) -> float:
    """``1 / std`` of the latent means of ``images``: scaled latents then have unit variance.

    Diffusion's schedules assume data of about unit variance: at timestep t the noise has
    standard deviation sqrt(1 - ab_t) *relative to that*. Latents with a spread of 5 would keep
    their shape long after the schedule says they are noise, and latents with a spread of 0.2
    would drown early. Rombach et al. 2022 (sec. 4.3.2 and appendix G) rescale by the component-wise
    standard deviation of a batch of latents; Stable Diffusion's 0.18215 is that number for its VAE.

    Args:
        vae: a ``dlcourse.models.VAE`` (used in eval mode, without gradients).
        images: (N, C, H, W) in [-1, 1], N >= 2; a few hundred to a few thousand training images.

    Returns:
        ``1 / std(mean(E(x)))`` over all the latent numbers of all the images, as a float.
    """
    check_vae(vae)
    check_images("images", images, vae)
    if images.shape[0] < 2:
        raise ValueError(f"images: expected at least 2 images to measure a spread, got {images.shape[0]}")
    return 1.0 / float(_encode_means(vae, images, False, None).double().std())


def encode(vae, x: torch.Tensor, scale: float, *, sample: bool = False,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Scaled latents ``z_0 = scale * mean`` of ``q(z | x)`` (or ``scale * z`` of a sample), without gradients.

    The VAE is frozen while a diffusion model trains on its latents, so this runs in eval mode
    under ``torch.no_grad``, in chunks of 512 images.

    Args:
        vae: a ``dlcourse.models.VAE``.
        x: (B, C, H, W) images in [-1, 1]; moved to the VAE's device.
        scale: the latent scale factor (``latent_scale_factor``, or the one a checkpoint records).
        sample: draw ``z = mean + exp(logvar / 2) eps`` instead of taking the mean.
        generator: draws ``eps`` when ``sample`` (on its own device).

    Returns:
        (B, *vae.latent_shape) float32 latents, on ``x``'s device.
    """
    check_vae(vae)
    check_images("x", x, vae)
    scale = check_number("scale", scale, above=0)
    return scale * _encode_means(vae, x, sample, generator)


@torch.no_grad()
def decode(vae, z_0: torch.Tensor, scale: float) -> torch.Tensor:
    """Images ``D(z_0 / scale)`` clamped to [-1, 1], without gradients.

    Args:
        vae: a ``dlcourse.models.VAE``.
        z_0: (B, *vae.latent_shape) scaled latents; moved to the VAE's device.
        scale: the scale they were made with.

    Returns:
        (B, *vae.image_shape) images in [-1, 1], on ``z_0``'s device.
    """
    check_vae(vae)
    check_latents("z_0", z_0, vae)
    scale = check_number("scale", scale, above=0)
    device = model_device(vae)
    with eval_mode(vae):
        out = [vae.decode(z_0[i:i + BATCH].to(device) / scale).float().clamp(-1, 1).to(z_0.device)
               for i in range(0, z_0.shape[0], BATCH)]
    return torch.cat(out)


def latent_diffusion_loss(model, vae, x_0: torch.Tensor, schedule: NoiseSchedule, scale: float, *,
                          prediction_type: str = "epsilon", cond=None,
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """The denoising objective on the VAE's latents (Rombach et al. 2022, eq. 2; Ho et al. 2020, Algorithm 1).

    ``z_0 = scale * E(x_0)`` (the mean, the VAE frozen); then, as in pixel space,
    ``t ~ U{0..T-1}``, ``eps ~ N(0, I)``, ``z_t = sqrt(ab_t) z_0 + sqrt(1 - ab_t) eps`` and the
    mean squared error of the model's prediction: ``dlcourse.parameterization.diffusion_loss``
    on ``z_0``, which draws ``t`` first, then ``eps``.

    Args:
        model: the latent denoiser, ``model(z_t, t, cond)`` with z_t (B, *vae.latent_shape).
        vae: the frozen ``dlcourse.models.VAE``.
        x_0: (B, C, H, W) images in [-1, 1].
        schedule: the noise schedule.
        scale: the latent scale factor.
        prediction_type: "epsilon", "sample" or "v_prediction".
        cond: conditioning passed to the model (e.g. (B,) labels).
        generator: draws ``t`` and ``eps``.

    Returns:
        Scalar loss tensor, on the model's device.

    Training on latents encoded once beforehand (``train(model, encode(vae, images, scale), schedule)``)
    gives the same loss without encoding every batch again.
    """
    check_vae(vae)
    check_images("x_0", x_0, vae)
    check_schedule("schedule", schedule)
    check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
    z_0 = encode(vae, x_0, scale)                                          # (B, *latent_shape)
    return diffusion_loss(model, z_0, schedule, prediction_type=prediction_type, cond=cond, generator=generator)


def generate(model, vae, schedule: NoiseSchedule, scale: float, n: int, *, steps: int | None = 20,
             prediction_type: str = "epsilon", seed: int = 0, cond=None, guidance_scale: float = 1.0,
             sampler: str = "dpmpp_2m", spacing: str = "linspace", progress: bool = False) -> torch.Tensor:
    """Generate ``n`` images: ``z_T ~ N(0, I)`` -> a sampler in latent space -> ``decode``.

    The latent pipeline of Rombach et al. 2022 (fig. 3): the sampler and the denoiser interface
    are those of pixel space (``dlcourse.samplers``), with ``clip_x0=False`` (latents are not in
    [-1, 1]); one network call per step on a latent 12x smaller than the image, and one decoder call at the end.

    Without clipping, the x_0 guess of an *epsilon* model at the noisiest step is
    ``(z - sqrt(1 - ab) eps) / sqrt(ab)``: with the cosine schedule (sqrt(ab) = 5e-5 at t = T-1) any
    error in eps is multiplied by 20,000, and the samples blow up (measured in ``bench/README.md``).
    Pixel space hides this with ``clip_x0``; in latent space train with ``prediction_type="v_prediction"``
    (the guess is then ``sqrt(ab) z - sqrt(1 - ab) v``), or with the linear schedule.

    Args:
        model: the latent denoiser, trained on ``encode(vae, ..., scale)`` latents with ``schedule``.
        vae: the ``dlcourse.models.VAE`` it was trained with.
        schedule: its noise schedule.
        scale: the latent scale factor it was trained with.
        n: number of images.
        steps: sampler steps (model calls, Heun 2 steps - 2); None for all T.
        prediction_type: what the model predicts.
        seed: seeds ``z_T`` (drawn on the CPU, ``dlcourse.tensors.seeded_noise``: the same images
            on every device) and, for DDPM, the noise it adds.
        cond, guidance_scale: conditioning and classifier-free guidance weight, as in the samplers.
        sampler: a name in ``dlcourse.samplers.SAMPLERS`` ("ddpm", "ddim", "euler", "heun", "dpmpp_2m").
        spacing: which timesteps (``dlcourse.samplers.timesteps_for``).
        progress: show the sampler's progress bar.

    Returns:
        (n, *vae.image_shape) images in [-1, 1], on the CPU. The model runs on its device and
        the decoder on the VAE's.
    """
    check_vae(vae)
    check_schedule("schedule", schedule)
    check_positive("n", n, integer=True)
    check_int("seed", seed)
    scale = check_number("scale", scale, above=0)
    check_choice("sampler", sampler, SAMPLERS)
    z_T = seeded_noise((n, *vae.latent_shape), seed)                         # (n, c, h, w) on the CPU
    generator = torch.Generator().manual_seed(seed + 1)                       # DDPM's added noise
    z_0 = SAMPLERS[sampler](model, z_T, schedule, steps, cond=cond, guidance_scale=guidance_scale,
                            prediction_type=prediction_type, spacing=spacing, clip_x0=False,
                            generator=generator, progress=progress)          # back on the CPU
    return decode(vae, z_0, scale).cpu()


def compression_factor(vae) -> float:
    """Numbers per image over numbers per latent: 3 * 32 * 32 / (4 * 8 * 8) = 12 for the default VAE.

    Stable Diffusion's: 512 * 512 * 3 / (64 * 64 * 4) = 48.
    """
    check_vae(vae)
    return math.prod(vae.image_shape) / math.prod(vae.latent_shape)
