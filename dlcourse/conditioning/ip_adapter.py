"""IP-Adapter: an image as the prompt, through a second, decoupled cross-attention (Ye et al. 2023).

    model, info = load_ip_adapter()                     # shapes16_unet_text + the shipped adapter
    model.set_scale(0.8)                                # lambda, diffusers' ``ip_adapter_scale``
    cond = model.cond(["", ""], reference_images)       # two empty prompts, two (3, 16, 16) references
    x = sample_ddim(model, x_T, schedule, 20, cond=cond, prediction_type=info["prediction_type"])

A text-to-image model reads its caption through cross-attention. IP-Adapter lets it also read a
*reference image*, without touching the trained model: the frozen CLIP image encoder's embedding
of the reference is projected to a few tokens (``ImageProjection``: a linear map and a LayerNorm),
and every cross-attention block gets a second pair of key/value projections for them. The image
tokens are attended to *separately*, with the block's own queries, and the result is added to the
text attention's, scaled by lambda:

    out = softmax(Q K^T / sqrt(d)) V  +  lambda softmax(Q K_ip^T / sqrt(d)) V_ip
          K, V = text tokens W_k, W_v (frozen)    K_ip, V_ip = image tokens W_k', W_v' (trained)

(Ye et al. 2023, sec. 3.2), then the block's frozen output projection. Only ``ImageProjection``,
``W_k'`` and ``W_v'`` are trained (``IPAdapter``, 58K parameters for shapes16_unet_text); the U-Net,
the text encoder and the image encoder stay frozen. ``W_k'``, ``W_v'`` start as copies of the text
ones, as in the paper. Because the two attentions are separate, lambda = 0 is exactly the
text-only model (``tests/test_ip_adapter.py`` checks it bit for bit) and lambda moves smoothly from
the text to the image; one softmax over the text and image tokens together would let the image
tokens take attention away from the words at every lambda.

``IPAdapterModel`` is a denoiser like any other, ``model(x_t, t, cond)``: ``cond`` is the text's
``{"context", "context_mask"}`` plus ``"image_embeds"`` (B, E), the image encoder's embeddings. It
keeps its own copy of the U-Net, whose cross-attention blocks are replaced by
``DecoupledCrossAttention``; the image tokens travel to them appended to the text tokens (the last
``num_tokens`` of the context). ``cond=None`` is the null condition of classifier-free guidance: the
empty prompt and a zero image embedding (trained as such by dropping the reference, as the paper
does), so every sampler guides it unchanged.

Figures: ``bench/ip_adapter.py`` and bench/README.md; the shipped adapter is trained by
``scripts/train_ip_adapter.py``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..device import get_device
from ..loop import TrainConfig, TrainResult, fit
from ..models.attention import Attention
from ..models.common import register_model
from ..models.unet import SpatialAttention
from ..parameterization import diffusion_loss
from ..validation import check_int, check_number, check_probability, check_tensor
from .cross_attention import check_mask
from .text_encoder import ImageEncoder
from .text_to_image import TextToImage, drop_captions

__all__ = ["DecoupledCrossAttention", "IPAdapter", "IPAdapterConfig", "IPAdapterModel", "ImageProjection",
           "check_reference", "decoupled_cross_attention", "ip_batches", "load_ip_adapter", "train_ip_adapter"]


def decoupled_cross_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, k_ip: torch.Tensor,
                              v_ip: torch.Tensor, scale: float, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Text attention plus ``scale`` times a separate image attention (Ye et al. 2023, sec. 3.2).

        out = softmax(q k^T / sqrt(d)) v  +  scale * softmax(q k_ip^T / sqrt(d)) v_ip

    Two softmaxes, one over the text tokens (padding masked) and one over the image tokens, with the
    same queries; the scale multiplies the image part only.

    Args:
        q: (B, heads, N, d) queries (or (B, N, d) for one head).
        k, v: (B, heads, L, d) the text tokens' keys and values.
        k_ip, v_ip: (B, heads, K, d) the image tokens' keys and values, from their own projections.
        scale: lambda; 0 gives the text attention alone.
        mask: (B, L) bool, True at real text tokens; None when every token is real. The image
            tokens are never masked.

    Returns:
        (B, heads, N, d).
    """
    check_tensor("q", q, ndim=(3, 4), floating=True)
    check_tensor("k", k, shape=(*q.shape[:-2], None, q.shape[-1]), floating=True)
    check_tensor("v", v, shape=tuple(k.shape), floating=True)
    check_tensor("k_ip", k_ip, shape=(*q.shape[:-2], None, q.shape[-1]), floating=True)
    check_tensor("v_ip", v_ip, shape=tuple(k_ip.shape), floating=True)
    scale = check_number("scale", scale)
    if mask is not None:
        mask = check_mask("mask", mask, q.shape[0], k.shape[-2]).view(q.shape[0], *(1,) * (q.ndim - 2), -1)
    text = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)          # softmax over the text tokens
    image = F.scaled_dot_product_attention(q, k_ip, v_ip)                   # softmax over the image tokens
    return text + scale * image


def _weights(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) with padding masked: (B, heads, N, L)."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    return scores.softmax(dim=-1)


class ImageProjection(nn.Module):
    """The image embedding (B, E) -> ``num_tokens`` tokens (B, K, D): a linear map, then LayerNorm.

    IP-Adapter's "image prompt" tokens (Ye et al. 2023, sec. 3.2), of the text tokens' width D.
    """

    def __init__(self, embed_dim: int, context_dim: int, num_tokens: int = 4):
        super().__init__()
        self.embed_dim = check_int("embed_dim", embed_dim, minimum=1)
        self.context_dim = check_int("context_dim", context_dim, minimum=1)
        self.num_tokens = check_int("num_tokens", num_tokens, minimum=1)
        self.proj = nn.Linear(embed_dim, num_tokens * context_dim)
        self.norm = nn.LayerNorm(context_dim)

    def forward(self, image_embeds: torch.Tensor) -> torch.Tensor:
        """(B, embed_dim) -> (B, num_tokens, context_dim)."""
        check_tensor("image_embeds", image_embeds, shape=(None, self.embed_dim), floating=True)
        B = image_embeds.shape[0]
        return self.norm(self.proj(image_embeds).view(B, self.num_tokens, self.context_dim))


@dataclass
class IPAdapterConfig:
    """embed_dim: E of the image embedding; context_dim: D of the text tokens; num_tokens: K image
    tokens; blocks: ``{name of a U-Net cross-attention block: its channels}``."""

    embed_dim: int
    context_dim: int
    num_tokens: int = 4
    blocks: dict = field(default_factory=dict)


def _key(block_name: str) -> str:
    return block_name.replace(".", "_")                # ModuleDict keys may not contain "."


@register_model
class IPAdapter(nn.Module):
    """The trained part alone: ``image_proj`` and a key and a value projection per cross-attention block.

    ``to_k_ip[name]``, ``to_v_ip[name]``: ``nn.Linear(context_dim, channels)`` for the U-Net block
    ``name`` (with ``.`` written ``_``). This is what the shipped checkpoint holds; ``IPAdapterModel``
    puts it into a text-to-image model.
    """

    def __init__(self, config: IPAdapterConfig):
        super().__init__()
        if not config.blocks:
            raise ValueError("blocks: expected at least one cross-attention block, got none")
        self.config = config
        self.image_proj = ImageProjection(config.embed_dim, config.context_dim, config.num_tokens)
        self.to_k_ip = nn.ModuleDict({_key(n): nn.Linear(config.context_dim, c) for n, c in config.blocks.items()})
        self.to_v_ip = nn.ModuleDict({_key(n): nn.Linear(config.context_dim, c) for n, c in config.blocks.items()})

    @classmethod
    def for_unet(cls, unet: nn.Module, embed_dim: int, num_tokens: int = 4) -> "IPAdapter":
        """A fresh adapter for every cross-attention block of ``unet``, ``W_k'``, ``W_v'`` copied from its text ones."""
        blocks = cross_attention_blocks(unet)
        context_dim = unet.config.context_dim
        adapter = cls(IPAdapterConfig(embed_dim, context_dim, num_tokens,
                                      {n: m.cross.proj.in_features for n, m in blocks.items()}))
        with torch.no_grad():
            for name, block in blocks.items():
                W, b = block.cross.to_kv.weight, block.cross.to_kv.bias              # (2 C, D), (2 C,)
                C = W.shape[0] // 2
                adapter.to_k_ip[_key(name)].weight.copy_(W[:C])
                adapter.to_k_ip[_key(name)].bias.copy_(b[:C])
                adapter.to_v_ip[_key(name)].weight.copy_(W[C:])
                adapter.to_v_ip[_key(name)].bias.copy_(b[C:])
        return adapter

    def get_config(self) -> dict:
        return asdict(self.config)

    @classmethod
    def from_config(cls, config: dict) -> "IPAdapter":
        return cls(IPAdapterConfig(**config))


def cross_attention_blocks(unet: nn.Module) -> dict:
    """``{name: SpatialAttention}`` of every block of ``unet`` that has cross-attention."""
    blocks = {n: m for n, m in unet.named_modules() if isinstance(m, SpatialAttention) and m.cross is not None}
    if not blocks:
        raise ValueError("unet: expected a U-Net with cross-attention (built with context_dim), got none")
    return blocks


class DecoupledCrossAttention(nn.Module):
    """A U-Net cross-attention block's frozen ``Attention`` with image key/value projections beside it.

    Called like the block it replaces, ``(x, context, mask)``; the last ``num_tokens`` tokens of
    ``context`` are the image tokens, the rest the text tokens with their ``mask``.

    Args:
        base: the block's ``Attention`` (its ``to_q``, ``to_kv``, ``proj`` are used unchanged).
        to_k_ip, to_v_ip: the image tokens' key and value projections, (D -> C).
        num_tokens: K.
        scale: lambda.
        attention: the function that combines the two attentions, ``decoupled_cross_attention`` by
            default (another with its signature can be put in to test it inside the network).
    """

    def __init__(self, base: Attention, to_k_ip: nn.Linear, to_v_ip: nn.Linear, num_tokens: int,
                 scale: float = 1.0, attention=None):
        super().__init__()
        self.base, self.to_k_ip, self.to_v_ip = base, to_k_ip, to_v_ip
        self.num_tokens, self.scale = num_tokens, float(scale)
        self.attention = decoupled_cross_attention if attention is None else attention

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None = None,
                return_weights: bool = False):
        """x: (B, N, C), context: (B, L + K, D), mask: (B, L + K) bool -> (B, N, C).

        With ``return_weights``, also the weights (B, heads, N, L + K): the text attention's over
        the first L tokens (summing to 1), the image attention's over the last K (summing to 1),
        neither multiplied by lambda.
        """
        B, N, C = x.shape
        K = self.num_tokens
        if context.shape[1] <= K:
            raise ValueError(f"context: expected the text tokens followed by {K} image tokens, "
                             f"got {context.shape[1]} tokens")
        text, image = context[:, :-K], context[:, -K:]                    # (B, L, D), (B, K, D)
        text_mask = None if mask is None else mask[:, :-K]
        heads = self.base.heads
        split = lambda t: t.view(B, t.shape[1], heads, C // heads).transpose(1, 2)   # noqa: E731  (B, n, C) -> (B, heads, n, C/heads)
        q = split(self.base.to_q(x))
        k, v = self.base.to_kv(text).view(B, text.shape[1], 2, heads, C // heads).permute(2, 0, 3, 1, 4)
        k_ip, v_ip = split(self.to_k_ip(image)), split(self.to_v_ip(image))
        if return_weights:
            w_text, w_image = _weights(q, k, text_mask), _weights(q, k_ip)
            out = w_text @ v + self.scale * (w_image @ v_ip)
        else:
            out = self.attention(q, k, v, k_ip, v_ip, self.scale, text_mask)
        out = self.base.proj(out.transpose(1, 2).reshape(B, N, C))        # (B, heads, N, C/heads) -> (B, N, C)
        return (out, torch.cat([w_text, w_image], dim=-1)) if return_weights else out


def check_reference(name: str, images, channels: int, size: int) -> torch.Tensor:
    """Check reference images: (B, channels, size, size) floats in [-1, 1], the course's image range."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name}: expected a tensor of shape (B, {channels}, {size}, {size}), "
                        f"got {type(images).__name__}")
    if images.ndim == 3 and tuple(images.shape) == (channels, size, size):
        raise ValueError(f"{name}: expected a batch (B, {channels}, {size}, {size}), got one image of shape "
                         f"{tuple(images.shape)}; pass {name}[None] for a batch of one")
    if images.ndim != 4 or tuple(images.shape[1:]) != (channels, size, size):
        raise ValueError(f"{name}: expected shape (B, {channels}, {size}, {size}), got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"{name}: expected floating-point images in [-1, 1], got dtype {images.dtype} "
                        f"(for 0..255 images use x.float() / 127.5 - 1)")
    lo, hi = float(images.min()), float(images.max())
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo < -1.001 or hi > 1.001:
        raise ValueError(f"{name}: expected values in [-1, 1], got min {lo:.3g}, max {hi:.3g} "
                         f"(for [0, 1] images use 2 x - 1, for 0..255 x / 127.5 - 1)")
    return images


class IPAdapterModel(nn.Module):
    """A text-to-image model that also reads a reference image: ``model(x_t, t, cond)``.

    Args:
        pipe: a ``TextToImage``; its U-Net is copied (the original is left as it was) and frozen,
            its text encoder and tokenizer used as they are (frozen).
        image_encoder: the CLIP ``ImageEncoder`` trained with ``pipe``'s text encoder; frozen.
        adapter: an ``IPAdapter`` for ``pipe``'s U-Net (``IPAdapter.for_unet``), the only part
            with trainable weights.
        scale: lambda, the weight of the image attention (``set_scale``).
        attention: the decoupled attention function of every block (``decoupled_cross_attention``
            by default; see ``DecoupledCrossAttention``).

    ``cond`` is ``self.cond(captions, references)``: ``{"context", "context_mask", "image_embeds"}``.
    A ``cond`` without "image_embeds" uses the zero embedding (no reference); ``cond=None`` is the
    empty prompt with the zero embedding, the null condition of classifier-free guidance.
    """

    def __init__(self, pipe: TextToImage, image_encoder: ImageEncoder, adapter: IPAdapter, scale: float = 1.0,
                 attention=None):
        super().__init__()
        if not isinstance(pipe, TextToImage):
            raise TypeError(f"pipe: expected a TextToImage, got {type(pipe).__name__}")
        if not isinstance(image_encoder, ImageEncoder):
            raise TypeError(f"image_encoder: expected an ImageEncoder, got {type(image_encoder).__name__}")
        if not isinstance(adapter, IPAdapter):
            raise TypeError(f"adapter: expected an IPAdapter, got {type(adapter).__name__}")
        unet = copy.deepcopy(pipe.unet).requires_grad_(False)
        blocks = cross_attention_blocks(unet)
        c = adapter.config
        if c.embed_dim != image_encoder.config.embed_dim or c.context_dim != unet.config.context_dim:
            raise ValueError(f"adapter: expected embed_dim={image_encoder.config.embed_dim} (the image encoder's) and "
                             f"context_dim={unet.config.context_dim} (the U-Net's), got {c.embed_dim} and "
                             f"{c.context_dim}")
        want = {n: m.cross.proj.in_features for n, m in blocks.items()}
        if dict(c.blocks) != want:
            raise ValueError(f"adapter: expected blocks {want} (the U-Net's cross-attention), got {dict(c.blocks)}")
        self.text_encoder, self.tokenizer = pipe.text_encoder, pipe.tokenizer     # frozen by TextToImage
        self.unet = unet
        self.image_encoder = image_encoder.requires_grad_(False)
        self.adapter = adapter
        self.decoupled = {}
        for name, block in blocks.items():
            block.cross = DecoupledCrossAttention(block.cross, adapter.to_k_ip[_key(name)],
                                                  adapter.to_v_ip[_key(name)], c.num_tokens, attention=attention)
            self.decoupled[name] = block.cross
        self.set_scale(scale)

    @property
    def scale(self) -> float:
        """lambda, the weight of the image attention in every block."""
        return self._scale

    def set_scale(self, scale: float) -> "IPAdapterModel":
        """Set lambda in every block (diffusers' ``set_ip_adapter_scale``); returns the model."""
        self._scale = check_number("scale", scale)
        for block in self.decoupled.values():
            block.scale = self._scale
        return self

    @torch.no_grad()
    def text_cond(self, captions) -> dict:
        """``{"context": (B, L, D), "context_mask": (B, L)}``: the frozen text encoder's tokens of B captions."""
        device = next(self.text_encoder.parameters()).device
        return self.text_encoder(*self.tokenizer.encode(captions, device=device)).cond()

    @property
    def image_size(self) -> int:
        return self.image_encoder.config.image_size

    @torch.no_grad()
    def encode_image(self, references: torch.Tensor) -> torch.Tensor:
        """The frozen image encoder's embeddings (B, E) of references (B, 3, H, W) in [-1, 1]."""
        c = self.image_encoder.config
        check_reference("references", references, c.in_channels, c.image_size)
        device = next(self.image_encoder.parameters()).device
        return self.image_encoder(references.to(device))

    def cond(self, captions, references: torch.Tensor | None = None) -> dict:
        """``{"context", "context_mask", "image_embeds"}`` for B captions and B references (or one for all).

        ``references=None`` gives the zero embedding (no reference).
        """
        cond = self.text_cond(captions)
        B = cond["context"].shape[0]
        if references is None:
            return cond
        embeds = self.encode_image(references)
        if embeds.shape[0] == 1 and B > 1:
            embeds = embeds.expand(B, -1)
        if embeds.shape[0] != B:
            raise ValueError(f"references: expected one per caption ({B}) or a single one, got {embeds.shape[0]}")
        return {**cond, "image_embeds": embeds}

    def image_tokens(self, image_embeds: torch.Tensor) -> torch.Tensor:
        """(B, E) -> (B, K, D): the adapter's image tokens."""
        return self.adapter.image_proj(image_embeds)

    def forward(self, x_t: torch.Tensor, t, cond: dict | None = None) -> torch.Tensor:
        """The U-Net's prediction (B, C, H, W) reading the text and the image tokens."""
        B = x_t.shape[0]
        if cond is None:
            cond = self.text_cond([""] * B)
        if not isinstance(cond, dict) or "context" not in cond:
            raise ValueError("cond: expected None or a dict with 'context' and 'context_mask' (model.cond(...)), "
                             f"got {type(cond).__name__}")
        unknown = sorted(set(cond) - {"context", "context_mask", "image_embeds"})
        if unknown:
            raise ValueError(f"cond: unknown key(s) {unknown}; expected 'context', 'context_mask', 'image_embeds'")
        context, mask = cond["context"], cond.get("context_mask")
        embeds = cond.get("image_embeds")
        if embeds is None:
            embeds = context.new_zeros(B, self.adapter.config.embed_dim)
        check_tensor("cond['image_embeds']", embeds, shape=(B, self.adapter.config.embed_dim), floating=True)
        tokens = self.image_tokens(embeds.to(context.dtype))                     # (B, K, D)
        if mask is None:
            mask = torch.ones(context.shape[:2], dtype=torch.bool, device=context.device)
        both = {"context": torch.cat([context, tokens], dim=1),                  # (B, L + K, D)
                "context_mask": torch.cat([mask, mask.new_ones(B, tokens.shape[1])], dim=1)}
        return self.unet(x_t, t, both)

    def attention_maps(self, x_t: torch.Tensor, t, cond: dict) -> dict:
        """``{block name: (B, L + K, h, w)}``: where each word, then each image token, is read."""
        context, mask = cond["context"], cond["context_mask"]
        B = x_t.shape[0]
        embeds = cond.get("image_embeds", context.new_zeros(B, self.adapter.config.embed_dim))
        tokens = self.image_tokens(embeds)
        both = {"context": torch.cat([context, tokens], 1),
                "context_mask": torch.cat([mask, mask.new_ones(B, tokens.shape[1])], 1)}
        return self.unet.cross_attention_maps(x_t, t, both)[1]

    def train(self, mode: bool = True):
        """Only the adapter trains; the frozen parts stay in eval mode."""
        super().train(mode)
        self.unet.eval()
        self.text_encoder.eval()
        self.image_encoder.eval()
        return self


def ip_batches(images: torch.Tensor, embeds: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor, *,
               batch_size: int, p_empty: float, p_drop_image: float, tokenizer):
    """Endless batches ``{"x_0", "ids", "mask", "image_embeds"}``: each image is its own reference.

    Each caption is replaced by the empty prompt with probability ``p_empty`` (so the reference
    alone must say what to draw), and each reference embedding by zeros with probability
    ``p_drop_image`` (the null image of guidance). Draws from torch's global random state.
    """
    check_int("batch_size", batch_size, minimum=1)
    while True:
        i = torch.randint(0, images.shape[0], (batch_size,))
        batch_ids, batch_mask = drop_captions(ids[i], mask[i], p_empty, tokenizer)
        keep = (torch.rand(batch_size) >= p_drop_image).to(embeds.dtype)[:, None]
        yield {"x_0": images[i], "ids": batch_ids, "mask": batch_mask, "image_embeds": embeds[i] * keep}


def train_ip_adapter(model: IPAdapterModel, images: torch.Tensor, captions, schedule, *, p_empty: float = 0.75,
                     p_drop_image: float = 0.1, batch_size: int = 64, prediction_type: str = "v_prediction",
                     config: TrainConfig | None = None) -> TrainResult:
    """Train the adapter of ``model`` (the U-Net, text and image encoders frozen) to denoise ``images``.

    Each image is its own reference (Ye et al. 2023, sec. 3.2); its caption is mostly dropped
    (``p_empty``), so the adapter has to carry shape and colour from the image; ``p_drop_image``
    trains the zero embedding as the null reference.

    Args:
        model: an ``IPAdapterModel``.
        images: (N, 3, H, W) in [-1, 1].
        captions: N strings.
        schedule: the base model's noise schedule.
        p_empty, p_drop_image: in [0, 1].
        batch_size: images per step.
        prediction_type: the base model's.
        config: the budget; by default 500 steps of AdamW at 1e-3 with EMA 0.998.

    Returns:
        ``fit``'s ``TrainResult``; ``result.ema_model.adapter`` is the trained ``IPAdapter``.
    """
    if not isinstance(model, IPAdapterModel):
        raise TypeError(f"model: expected an IPAdapterModel, got {type(model).__name__}")
    check_reference("images", images, model.image_encoder.config.in_channels, model.image_size)
    captions = list(captions)
    if len(captions) != images.shape[0]:
        raise ValueError(f"captions: expected one per image ({images.shape[0]}), got {len(captions)}")
    check_probability("p_empty", p_empty)
    check_probability("p_drop_image", p_drop_image)
    config = config or TrainConfig(steps=500, lr=1e-3, ema_decay=0.998)
    with torch.no_grad():
        embeds = torch.cat([model.encode_image(images[i:i + 1024]).cpu() for i in range(0, len(images), 1024)])
    ids, mask = model.tokenizer.encode(captions)
    schedule_d = schedule.to(get_device() if config.device is None else torch.device(config.device))

    def loss_fn(m: IPAdapterModel, batch: dict) -> torch.Tensor:
        with torch.no_grad():
            text = m.text_encoder(batch["ids"], batch["mask"]).cond()
        return diffusion_loss(m, batch["x_0"], schedule_d, prediction_type=prediction_type,
                              cond={**text, "image_embeds": batch["image_embeds"]})

    batches = ip_batches(images, embeds, ids, mask, batch_size=batch_size, p_empty=p_empty,
                         p_drop_image=p_drop_image, tokenizer=model.tokenizer)
    return fit(model, batches, loss_fn, config)


def load_ip_adapter(name: str = "ip_adapter_shapes16", device=None, scale: float = 1.0,
                    attention=None) -> tuple[IPAdapterModel, dict]:
    """The shipped adapter in the text-to-image model and image encoder it was trained with, all checksum verified.

    Returns:
        ``(model, info)``: an ``IPAdapterModel`` in eval mode, and the adapter's ``load_pretrained``
        info (its recipe, ``base``, ``image_encoder``, ``schedule``, ``prediction_type``, ...).
    """
    from ..pretrained import load_pretrained
    from .text_to_image import load_text_to_image

    adapter, info = load_pretrained(name, device=device)
    pipe, pipe_info = load_text_to_image(info["base"], device=device)
    if pipe_info["sha256"] != info["base_sha256"]:
        raise ValueError(f"{name}: trained on {info['base']} of SHA-256 {info['base_sha256']}, but the shipped one "
                         f"is {pipe_info['sha256']}; retrain it: {info['command']}")
    clip, clip_info = load_pretrained(pipe_info["text_encoder"], device=device)
    model = IPAdapterModel(pipe, clip.image_encoder, adapter, scale=scale, attention=attention).eval()
    return model, {**info, "schedule": pipe_info["schedule"], "T": pipe_info["T"],
                   "prediction_type": pipe_info["prediction_type"], "hold_out": pipe_info["hold_out"]}
