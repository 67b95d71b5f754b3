"""Stable Diffusion 1.x in miniature: text to image in a VAE's latent space, from the course's own parts.

    pipe = StableDiffusionMini.from_pretrained()                 # the shipped sd1_shapes32 and its parts
    images = pipe("a large red circle at the top left", num_inference_steps=20, guidance_scale=3,
                  generator=torch.Generator().manual_seed(0))     # (1, 3, 32, 32) in [-1, 1]

The pipeline of Rombach et al. 2022 (fig. 3 and sec. 3.3), the one diffusers' ``StableDiffusionPipeline`` runs,
assembled from the parts the course built one notebook at a time:

    prompt --tokenizer--> ids --frozen text encoder tau--> tokens c (B, L, D)        (notebook 07a)
    z_T ~ N(0, I) (B, 4, 8, 8) --sampler, U-Net eps_theta(z_t, t, c) with CFG--> z_0  (notebooks 04, 05, 06)
    z_0 --VAE decoder D(z_0 / scale)--> images (B, 3, 32, 32)                       (notebook 06)

Training (``training_loss``, the seed's eq. 2 with the text condition): ``z_0 = scale * E(x)``, the caption
replaced by the empty prompt with probability ``p_uncond`` (caption dropout, for guidance), ``c = tau(y)``,
``t ~ U{0..T-1}``, ``eps ~ N(0, I)``, ``z_t = sqrt(ab_t) z_0 + sqrt(1 - ab_t) eps`` and the squared error of the
U-Net's prediction (here v, with min-SNR weighting). ``scripts/train_sd1.py`` trained the shipped model with this
loss on latents encoded once beforehand.

Sampling (``StableDiffusionMini.__call__``): classifier-free guidance ``out = out(z_t, t, c_neg) + w (out(z_t,
t, c) - out(z_t, t, c_neg))`` with ``c_neg`` the encoding of the negative prompt (the empty prompt by default),
both halves from one U-Net call on a batch of 2B (as diffusers does), DPM-Solver++(2M)
(``dlcourse.samplers.dpmpp_2m_loop``) without clipping the x_0 guess (latents have no range), then the decoder.
Arguments follow diffusers' names: ``prompt``, ``negative_prompt``, ``num_inference_steps``, ``guidance_scale``,
``num_images_per_prompt``, ``generator``, ``latents``. Figures (prompt accuracy, time per image):
``bench/sd1.py`` and bench/README.md.
"""

from __future__ import annotations

import torch
from torch import nn

from ..conditioning.text_encoder import TextEncoder
from ..conditioning.text_to_image import TextToImage, drop_captions
from ..conditioning.tokenizer import Tokenizer
from ..guidance import classifier_free_guidance
from ..latent import check_vae, decode, encode
from ..parameterization import PREDICTION_TYPES, diffusion_loss
from ..samplers import VPDenoiser, dpmpp_2m_loop, vp_times
from ..schedules import NoiseSchedule, get_schedule
from ..validation import check_choice, check_int, check_number, check_probability, check_schedule, check_tensor

__all__ = ["StableDiffusionMini", "guided_prediction", "training_loss"]


def guided_prediction(unet: nn.Module, z_t: torch.Tensor, t: torch.Tensor, cond: dict, uncond: dict,
                      guidance_scale: float) -> torch.Tensor:
    """Classifier-free guidance with text: ``out_uncond + w (out_cond - out_uncond)``, one U-Net call.

    Args:
        unet: called as ``unet(z_t, t, {"context": (B, L, D), "context_mask": (B, L)})``.
        z_t: (B, 4, h, w) noisy latents.
        t: (B,) int64 timesteps.
        cond, uncond: the encodings of the prompts and of the negative (or empty) prompts, each
            ``{"context": (B, L, D), "context_mask": (B, L)}``.
        guidance_scale: w; at 1 the U-Net runs on the prompts alone (B rows), otherwise once on the
            2B rows of both encodings.

    Returns:
        (B, 4, h, w) the guided prediction.
    """
    if guidance_scale == 1:
        return unet(z_t, t, cond)
    both = {k: torch.cat([uncond[k], cond[k]]) for k in ("context", "context_mask")}        # (2B, L, ...)
    out_uncond, out_cond = unet(torch.cat([z_t, z_t]), torch.cat([t, t]), both).chunk(2)
    return classifier_free_guidance(out_uncond, out_cond, guidance_scale)


class _GuidedUNet(nn.Module):
    """The U-Net with guidance folded in, called as a sampler's model: ``(z_t, t, cond) -> guided output``."""

    def __init__(self, unet: nn.Module, uncond: dict, guidance_scale: float):
        super().__init__()
        self.unet, self.uncond, self.guidance_scale = unet, uncond, guidance_scale

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, cond: dict) -> torch.Tensor:
        return guided_prediction(self.unet, z_t, t, cond, self.uncond, self.guidance_scale)


class StableDiffusionMini(nn.Module):
    """Tokenizer, frozen text encoder, latent U-Net with cross-attention, schedule and VAE: text in, images out.

    Args:
        unet: a ``dlcourse.models.UNet`` on the VAE's latents with ``context_dim`` the encoder's width.
        vae: the ``dlcourse.models.VAE`` whose scaled latents the U-Net was trained on.
        text_encoder: the frozen ``TextEncoder``.
        tokenizer: its ``Tokenizer``.
        schedule: the noise schedule the U-Net was trained with.
        scale_factor: the latent scale factor it was trained with.
        prediction_type: what the U-Net predicts.
    """

    def __init__(self, unet: nn.Module, vae: nn.Module, text_encoder: TextEncoder, tokenizer: Tokenizer,
                 schedule: NoiseSchedule, *, scale_factor: float, prediction_type: str = "v_prediction"):
        super().__init__()
        TextToImage(unet, text_encoder, tokenizer)            # checks that the three parts fit together
        check_vae(vae)
        if getattr(unet.config, "in_channels", None) != vae.latent_shape[0]:
            raise ValueError(f"unet: expected {vae.latent_shape[0]} input channels (the VAE's latents), "
                             f"got {getattr(unet.config, 'in_channels', None)}")
        self.unet, self.vae, self.tokenizer = unet, vae.requires_grad_(False), tokenizer
        self.text_encoder = text_encoder.requires_grad_(False)
        self.schedule = check_schedule("schedule", schedule)
        self.scale_factor = check_number("scale_factor", scale_factor, above=0)
        self.prediction_type = check_choice("prediction_type", prediction_type, PREDICTION_TYPES)

    @classmethod
    def from_pretrained(cls, name: str = "sd1_shapes32", device=None) -> "StableDiffusionMini":
        """The shipped pipeline ``name`` with the VAE and text encoder it was trained with, all checksum verified."""
        from ..pretrained import load_pretrained

        unet, info = load_pretrained(name, device=device)
        parts = {}
        for key in ("vae", "text_encoder"):
            parts[key], part_info = load_pretrained(info[key], device=device)
            if part_info["sha256"] != info[f"{key}_sha256"]:
                raise ValueError(f"{name}: trained with {info[key]} of SHA-256 {info[f'{key}_sha256']}, but the "
                                 f"shipped one is {part_info['sha256']}; retrain it: {info['command']}")
        return cls(unet, parts["vae"], parts["text_encoder"].text_encoder, Tokenizer(**info["tokenizer"]),
                   get_schedule(info["schedule"], info["T"]), scale_factor=info["scale_factor"],
                   prediction_type=info["prediction_type"]).eval()

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @torch.no_grad()
    def encode_prompt(self, prompt, name: str = "prompt") -> dict:
        """``{"context": (B, L, D), "context_mask": (B, L)}``: the frozen encoder's tokens of B prompts."""
        prompts = _prompt_list(name, prompt)
        try:
            ids, mask = self.tokenizer.encode(prompts, device=self.device)
        except (TypeError, ValueError) as error:
            message = str(error)
            raise type(error)(message.replace("captions", name, 1) if message.startswith("captions")
                              else f"{name}: {message}") from None
        return self.text_encoder(ids, mask).cond()

    @torch.no_grad()
    def __call__(self, prompt, num_inference_steps: int = 20, guidance_scale: float = 3.0, *,
                 negative_prompt=None, num_images_per_prompt: int = 1, generator: torch.Generator | None = None,
                 latents: torch.Tensor | None = None, progress: bool = False) -> torch.Tensor:
        """Images of ``prompt``: encode, draw z_T, DPM-Solver++(2M) with guidance, decode.

        Args:
            prompt: a caption or a list of B captions in the tokenizer's words.
            num_inference_steps: sampler steps; U-Net calls, each on 2B rows when guided.
            guidance_scale: w of classifier-free guidance (1: no guidance, one call on B rows per step).
            negative_prompt: None (the empty prompt), one caption or B captions: the prompt guidance pushes
                away from.
            num_images_per_prompt: images of each prompt (they come one prompt after the other).
            generator: draws z_T (on the CPU or the generator's device); torch's global state if None.
            latents: (B * num_images_per_prompt, 4, 8, 8) z_T to start from instead of drawing it.
            progress: show the sampler's progress bar.

        Returns:
            (B * num_images_per_prompt, 3, 32, 32) images in [-1, 1], on the CPU.
        """
        prompts = _prompt_list("prompt", prompt)
        check_int("num_inference_steps", num_inference_steps, minimum=1, maximum=self.schedule.T)
        w = check_number("guidance_scale", guidance_scale)
        n = check_int("num_images_per_prompt", num_images_per_prompt, minimum=1)
        prompts = [p for p in prompts for _ in range(n)]
        B = len(prompts)
        if negative_prompt is None:
            negatives = [""] * B
        else:
            negatives = _prompt_list("negative_prompt", negative_prompt)
            if len(negatives) == 1:
                negatives = negatives * B
            elif len(negatives) * n == B:
                negatives = [p for p in negatives for _ in range(n)]
            else:
                raise ValueError(f"negative_prompt: expected one caption or one per prompt "
                                 f"({B // n}), got {len(negatives)}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator: expected a torch.Generator or None, got {type(generator).__name__}")
        shape = (B, *self.vae.latent_shape)
        if latents is None:
            device = generator.device if generator is not None else torch.device("cpu")
            latents = torch.randn(shape, generator=generator, device=device)
        check_tensor("latents", latents, shape=shape, floating=True)
        cond = self.encode_prompt(prompts)
        uncond = self.encode_prompt(negatives, "negative_prompt") if w != 1 else None
        denoiser = VPDenoiser(_GuidedUNet(self.unet, uncond, w), self.schedule, prediction_type=self.prediction_type,
                              cond=cond, clip_x0=False)
        z_0 = dpmpp_2m_loop(denoiser, latents.to(self.device), vp_times(self.schedule, num_inference_steps),
                            progress=progress)                                  # (B, 4, 8, 8)
        return decode(self.vae, z_0, self.scale_factor).cpu()


def training_loss(unet: nn.Module, text_encoder: TextEncoder, tokenizer: Tokenizer, vae: nn.Module,
                  x_0: torch.Tensor, captions, schedule: NoiseSchedule, scale_factor: float, *,
                  p_uncond: float = 0.15, prediction_type: str = "v_prediction", min_snr_gamma: float | None = 5.0,
                  u: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """One Monte-Carlo estimate of the latent text-to-image loss (Rombach et al. 2022, eq. 3).

    ``z_0 = scale * E(x_0)`` (the mean, VAE frozen), caption i replaced by the empty prompt when
    ``u[i] < p_uncond`` (``drop_captions``), ``c = tau(captions)`` (encoder frozen), then
    ``dlcourse.parameterization.diffusion_loss(unet, z_0, ...)`` with ``cond = c``: t, then eps, from
    ``generator``.

    Args:
        x_0: (B, 3, 32, 32) images in [-1, 1].
        captions: B strings.
        u: (B,) uniform draws for caption dropout; from torch's global state when None.
        Others: as in ``StableDiffusionMini`` and ``diffusion_loss``.

    Returns:
        The scalar loss; gradients reach the U-Net only.
    """
    check_probability("p_uncond", p_uncond)
    z_0 = encode(vae, x_0, scale_factor)                                      # (B, 4, 8, 8)
    ids, mask = tokenizer.encode(_prompt_list("captions", captions), device=z_0.device)
    if len(ids) != len(z_0):
        raise ValueError(f"captions: expected one per image ({len(z_0)}), got {len(ids)}")
    ids, mask = drop_captions(ids, mask, p_uncond, tokenizer, u=u)
    with torch.no_grad():
        cond = text_encoder(ids, mask).cond()                                 # (B, L, D) and (B, L)
    return diffusion_loss(unet, z_0, schedule, prediction_type=prediction_type, cond=cond, generator=generator,
                          min_snr_gamma=min_snr_gamma)


def _prompt_list(name: str, prompt) -> list[str]:
    """One caption or a non-empty list of captions, as a list."""
    if isinstance(prompt, str):
        return [prompt]
    if not isinstance(prompt, (list, tuple)) or not prompt:
        raise TypeError(f"{name}: expected a caption or a non-empty list of captions, got {prompt!r}")
    bad = [i for i, p in enumerate(prompt) if not isinstance(p, str)]
    if bad:
        raise TypeError(f"{name}: expected strings, got {type(prompt[bad[0]]).__name__} at index {bad[0]}")
    return list(prompt)
