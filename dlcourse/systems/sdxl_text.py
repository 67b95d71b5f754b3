"""SDXL's two text encoders, in miniature: their tokens side by side, the second one's pooled embedding on the clock.

SDXL (Podell et al. 2023, "SDXL: Improving Latent Diffusion Models for High-Resolution Image Synthesis", sec. 2.1)
reads a prompt with two frozen text encoders, CLIP ViT-L and OpenCLIP ViT-bigG, and gives the U-Net both:

- their per-token outputs **concatenated on the feature axis**: token j of the context is
  ``[h_1[j], h_2[j]]``, 768 + 1280 = 2048 wide, which every cross-attention block reads;
- the second encoder's **pooled** text embedding (one vector per prompt), projected and **added to the time
  embedding**, so every residual block sees the whole prompt at once, not only the cross-attention blocks.

Here the encoders are ``clip_shapes16`` (width 64) and ``clip_shapes16_small`` (width 32, its own seed,
``scripts/train_sdxl_text.py``), both read through the same tokenizer, so one padding mask serves both:
context 64 + 32 = 96 wide, the pooled embedding 32 wide.

- ``dual_text_embeddings(tokens, tokens_2, mask)``: the concatenation and the pooling, a plain function:
  (B, L, D1), (B, L, D2), (B, L) -> ``(prompt_embeds (B, L, D1 + D2), pooled (B, D2))``, the pooled vector the
  mean of the second encoder's real tokens (padding left out), as that encoder pools before its projection.
- ``DualTextUNet(unet, pooled_dim)``: a ``dlcourse.models.UNet`` (``context_dim = D1 + D2``) with diffusers'
  ``add_embedding``, an MLP of the projected pooled embedding added to the U-Net's time embedding through a
  forward hook (as ``dlcourse.systems.sdxl.MicroConditioning`` adds the crop); its last layer starts at zero.
  ``cond`` is ``{"context", "context_mask", "text_embeds"}`` (diffusers calls the pooled vector
  ``text_embeds``).
- ``SDXLTextToImage(net, text_encoder, text_encoder_2, tokenizer)``: the pipeline, ``model(x_t, t, cond)`` with
  ``cond=None`` the empty prompt through both encoders, so the course's samplers guide it as any text model;
  ``pipe.cond(prompts)``, ``pipe.generate(prompt, ...)``.
- ``sdxl_text_loss`` and ``load_sdxl_text_to_image``: training and the shipped model.

Measured against the single-encoder ``shapes16_unet_text`` trained by the same recipe: bench/README.md,
"SDXL's two text encoders" (``bench/sdxl_text.py``).
"""

from __future__ import annotations

import torch
from torch import nn

from ..conditioning.text_encoder import TextEncoder
from ..conditioning.tokenizer import Tokenizer
from ..models import UNet, UNetConfig, register_model
from ..parameterization import diffusion_loss
from ..validation import check_int, check_number, check_tensor

__all__ = ["DualTextUNet", "SDXLTextToImage", "dual_text_embeddings", "load_sdxl_text_to_image", "sdxl_text_loss"]


def dual_text_embeddings(tokens: torch.Tensor, tokens_2: torch.Tensor,
                         mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """SDXL's text conditioning from two encoders' token outputs: concatenate, and pool the second.

    Args:
        tokens: (B, L, D1) the first encoder's per-token outputs.
        tokens_2: (B, L, D2) the second encoder's, for the same token ids.
        mask: (B, L) bool, True at real tokens (not padding); at least one per row.

    Returns:
        ``(prompt_embeds, pooled)``: (B, L, D1 + D2) the two outputs of each token side by side (the
        cross-attention's context), and (B, D2) the mean of ``tokens_2`` over the real tokens only.
    """
    check_tensor("tokens", tokens, ndim=3, floating=True)
    B, L, _ = tokens.shape
    check_tensor("tokens_2", tokens_2, shape=(B, L, None), floating=True)
    check_tensor("mask", mask, shape=(B, L))
    if mask.dtype != torch.bool:
        raise TypeError(f"mask: expected dtype torch.bool (True at real tokens), got {mask.dtype}")
    if not bool(mask.any(dim=1).all()):
        raise ValueError("mask: every row needs at least one real token (True)")
    prompt_embeds = torch.cat([tokens, tokens_2], dim=-1)                  # (B, L, D1 + D2): the feature axis
    real = mask[..., None].to(tokens_2.dtype)                              # (B, L, 1)
    pooled = (tokens_2 * real).sum(dim=1) / real.sum(dim=1)               # (B, D2): mean over real tokens
    return prompt_embeds, pooled


@register_model
class DualTextUNet(nn.Module):
    """A U-Net that reads the concatenated tokens by cross-attention and the pooled embedding on its clock.

    ``net(x_t, t, cond)`` with ``cond = {"context": (B, L, D1 + D2), "context_mask": (B, L) bool,
    "text_embeds": (B, pooled_dim)}``: ``add_embedding(text_embeds)`` (Linear, SiLU, Linear) is added to the
    U-Net's time embedding, which every residual block reads. The MLP's last layer starts at zero, so a new
    ``DualTextUNet`` is exactly its U-Net whatever the pooled embedding.

    Args:
        unet: a ``dlcourse.models.UNet`` with ``context_dim`` (D1 + D2).
        pooled_dim: width of ``text_embeds``.
    """

    def __init__(self, unet: UNet, pooled_dim: int):
        super().__init__()
        if not isinstance(unet, UNet) or unet.config.context_dim is None:
            raise TypeError(f"unet: expected a dlcourse.models.UNet built with context_dim, got "
                            f"{type(unet).__name__}" + (" without context_dim" if isinstance(unet, UNet) else ""))
        check_int("pooled_dim", pooled_dim, minimum=1)
        dim = [m for m in unet.time_embed.modules() if isinstance(m, nn.Linear)][-1].out_features
        self.unet, self.pooled_dim = unet, pooled_dim
        self.add_embedding = nn.Sequential(nn.Linear(pooled_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        nn.init.zeros_(self.add_embedding[2].weight)
        nn.init.zeros_(self.add_embedding[2].bias)

    def forward(self, x_t: torch.Tensor, t, cond: dict) -> torch.Tensor:
        """The U-Net's prediction (B, C, H, W) with ``add_embedding(cond["text_embeds"])`` on its time embedding."""
        if not isinstance(cond, dict) or "text_embeds" not in cond:
            raise ValueError(f"cond: expected a dict with 'context', 'context_mask' and 'text_embeds', got "
                             f"{sorted(cond) if isinstance(cond, dict) else type(cond).__name__}")
        text_embeds = check_tensor("cond['text_embeds']", cond["text_embeds"], shape=(x_t.shape[0], self.pooled_dim),
                                   floating=True)
        emb = self.add_embedding(text_embeds)                                         # (B, dim)
        hook = self.unet.time_embed.register_forward_hook(lambda module, args, out: out + emb.to(out.dtype))
        try:
            return self.unet(x_t, t, {k: v for k, v in cond.items() if k != "text_embeds"})
        finally:
            hook.remove()

    def get_config(self) -> dict:
        return {"unet": self.unet.get_config(), "pooled_dim": self.pooled_dim}

    @classmethod
    def from_config(cls, config: dict) -> "DualTextUNet":
        unet = config["unet"]
        return cls(UNet(UNetConfig(**{**unet, "channel_mults": tuple(unet["channel_mults"])})), config["pooled_dim"])


class SDXLTextToImage(nn.Module):
    """Text to image with two frozen text encoders: ``model(x_t, t, cond)``, ``cond=None`` the empty prompt.

    Args:
        net: a ``DualTextUNet`` whose U-Net's ``context_dim`` is the sum of the two encoders' widths and whose
            ``pooled_dim`` is the second encoder's embedding width.
        text_encoder, text_encoder_2: trained ``TextEncoder``s of the same vocabulary; frozen here.
        tokenizer: the ``Tokenizer`` both were trained with (one mask serves both).
    """

    def __init__(self, net: DualTextUNet, text_encoder: TextEncoder, text_encoder_2: TextEncoder, tokenizer: Tokenizer):
        super().__init__()
        if not isinstance(net, DualTextUNet):
            raise TypeError(f"net: expected a DualTextUNet, got {type(net).__name__}")
        for name, enc in (("text_encoder", text_encoder), ("text_encoder_2", text_encoder_2)):
            if not isinstance(enc, TextEncoder):
                raise TypeError(f"{name}: expected a TextEncoder, got {type(enc).__name__}")
            if enc.config.vocab_size != len(tokenizer) or enc.config.max_length < tokenizer.max_length:
                raise ValueError(f"{name}: expected {len(tokenizer)} tokens and max_length >= {tokenizer.max_length} "
                                 f"(the tokenizer's), got {enc.config.vocab_size} and {enc.config.max_length}")
        width = text_encoder.config.dim + text_encoder_2.config.dim
        if net.unet.config.context_dim != width:
            raise ValueError(f"net: expected context_dim={width} ({text_encoder.config.dim} + "
                             f"{text_encoder_2.config.dim}, the two encoders' widths), got {net.unet.config.context_dim}")
        pooled = text_encoder_2.config.embed_dim or text_encoder_2.config.dim
        if net.pooled_dim != pooled:
            raise ValueError(f"net: expected pooled_dim={pooled} (text_encoder_2's embedding), got {net.pooled_dim}")
        self.net, self.tokenizer = net, tokenizer
        self.text_encoder = text_encoder.requires_grad_(False)
        self.text_encoder_2 = text_encoder_2.requires_grad_(False)

    def encode_ids(self, ids: torch.Tensor, mask: torch.Tensor) -> dict:
        """``cond`` from token ids: (B, L) int64 and (B, L) bool -> ``{"context", "context_mask", "text_embeds"}``."""
        with torch.no_grad():
            tokens = self.text_encoder(ids, mask).tokens                              # (B, L, D1)
            tokens_2 = self.text_encoder_2(ids, mask).tokens                          # (B, L, D2)
            prompt_embeds, pooled = dual_text_embeddings(tokens, tokens_2, mask)
            text_embeds = self.text_encoder_2.proj(pooled)                            # (B, E2): its CLIP embedding
        return {"context": prompt_embeds, "context_mask": mask, "text_embeds": text_embeds}

    def cond(self, captions) -> dict:
        """The ``cond`` of B captions ("" is the empty prompt) for a sampler."""
        if isinstance(captions, str):
            raise TypeError(f"captions: expected a list of strings, got the string {captions!r} (wrap it in a list)")
        device = next(self.text_encoder.parameters()).device
        return self.encode_ids(*self.tokenizer.encode(list(captions), device=device))

    def forward(self, x_t: torch.Tensor, t, cond: dict | None = None) -> torch.Tensor:
        """The prediction (B, C, H, W); ``cond=None`` is the empty prompt's encoding."""
        if cond is None:
            cond = self.cond([""] * x_t.shape[0])
        return self.net(x_t, t, cond)

    @torch.no_grad()
    def generate(self, prompt, num_inference_steps: int = 20, guidance_scale: float = 3.0, *,
                 generator: torch.Generator | None = None, schedule=None,
                 prediction_type: str = "v_prediction") -> torch.Tensor:
        """Images of ``prompt`` by DDIM with classifier-free guidance from x_T ~ N(0, I).

        Args:
            prompt: a caption or a list of B captions in the tokenizer's words.
            num_inference_steps: DDIM steps.
            guidance_scale: w (1: no guidance).
            generator: draws x_T (CPU); torch's global state if None.
            schedule: the noise schedule (default cosine, T = 1000, as the shipped model).
            prediction_type: what the network predicts.

        Returns:
            (B, 3, 16, 16) images in [-1, 1], on the CPU.
        """
        from ..samplers import sample_ddim
        from ..schedules import get_schedule

        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        check_int("num_inference_steps", num_inference_steps, minimum=1)
        w = check_number("guidance_scale", guidance_scale)
        schedule = get_schedule("cosine", 1000) if schedule is None else schedule
        device = next(self.net.parameters()).device
        x_T = torch.randn(len(prompts), 3, 16, 16, generator=generator).to(device)
        x = sample_ddim(self, x_T, schedule, num_inference_steps, cond=self.cond(prompts), guidance_scale=w,
                        prediction_type=prediction_type, progress=False)
        return x.clamp(-1, 1).cpu()


def sdxl_text_loss(pipe: SDXLTextToImage, batch: dict, schedule, *, prediction_type: str = "v_prediction"):
    """The denoising loss of ``batch = {"x_0", "ids", "mask"}`` (``text_batches``) given both encoders' reading."""
    cond = pipe.encode_ids(batch["ids"], batch["mask"])                  # frozen encoders: no gradient
    return diffusion_loss(pipe.net, batch["x_0"], schedule, prediction_type=prediction_type, cond=cond)


def load_sdxl_text_to_image(name: str = "sdxl_text_shapes16", device=None) -> tuple[SDXLTextToImage, dict]:
    """The shipped two-encoder model with the encoders it was trained with, all checksum verified.

    Returns:
        ``(pipe, info)``: an ``SDXLTextToImage`` in eval mode and the network's ``load_pretrained`` info.
    """
    from ..pretrained import load_pretrained

    net, info = load_pretrained(name, device=device)
    encoders = []
    for key in ("text_encoder", "text_encoder_2"):
        clip, clip_info = load_pretrained(info[key], device=device)
        if clip_info["sha256"] != info[f"{key}_sha256"]:
            raise ValueError(f"{name}: trained with {info[key]} of SHA-256 {info[f'{key}_sha256']}, but the "
                             f"shipped one is {clip_info['sha256']}; retrain it: {info['command']}")
        encoders.append((clip.text_encoder, clip_info))
    pipe = SDXLTextToImage(net, encoders[0][0], encoders[1][0], Tokenizer(**encoders[0][1]["tokenizer"]))
    return pipe.eval(), info
