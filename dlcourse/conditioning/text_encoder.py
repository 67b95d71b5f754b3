"""A small CLIP: a transformer text encoder trained against an image encoder (Radford et al. 2021).

    tok = Tokenizer.default()
    clip = CLIP(TextEncoder(TextEncoderConfig(vocab_size=len(tok), max_length=tok.max_length)),
                ImageEncoder(ImageEncoderConfig(image_size=16)))
    result = train_clip(clip, data.images, data.captions, tok, config=TrainConfig(seconds=60))
    text = clip.text_encoder(*tok.encode(captions))   # text.tokens (B, L, D): the context of cross-attention
                                                      # text.pooled (B, E): the caption's CLIP embedding

Contrastive training pulls each image's embedding towards its own caption's and away from the
other captions in the batch, and the same from the captions' side: the symmetric InfoNCE loss
of ``clip_loss``. A text encoder trained this way has learnt which words the images can tell
apart, which is what a diffusion model needs from it; frozen, its tokens condition the denoiser
through cross-attention (``dlcourse.conditioning.cross_attention``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..loop import TrainConfig, TrainResult, fit
from ..models.attention import Attention
from ..models.common import register_model
from ..validation import check_int, check_positive, check_tensor
from .cross_attention import check_mask
from .tokenizer import Tokenizer

MAX_LOGIT_SCALE = 100.0          # CLIP clips exp(logit_scale) at 100, so the temperature stays >= 0.01


@dataclass
class TextEncoderConfig:
    """vocab_size: ids 0..vocab_size-1 (``len(tokenizer)``); max_length: L; dim: D, the token
    width; depth: transformer blocks; heads: attention heads (divide ``dim``); embed_dim: width of
    the pooled embedding (``dim`` if None)."""

    vocab_size: int
    max_length: int = 16
    dim: int = 64
    depth: int = 2
    heads: int = 4
    embed_dim: int | None = None


@dataclass
class TextEncoding:
    """What ``TextEncoder`` returns.

    Attributes:
        tokens: (B, L, D) one embedding per token (zero at padding): cross-attention's context.
        pooled: (B, E) the mean of the real tokens, projected: the caption's CLIP embedding.
        mask: (B, L) bool, True at real tokens: cross-attention's key padding mask.
    """

    tokens: torch.Tensor
    pooled: torch.Tensor
    mask: torch.Tensor

    def cond(self) -> dict:
        """The tokens as a denoiser's conditioning: ``{"context": ..., "context_mask": ...}``."""
        return {"context": self.tokens, "context_mask": self.mask}


class Block(nn.Module):
    """A pre-norm transformer block: ``x + attn(LN(x))``, then ``x + MLP(LN(x))``."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: (B, L, D), mask: (B, L) bool, True where a token may be attended to -> (B, L, D)."""
        x = x + self.attn(self.norm1(x), mask=mask)
        return x + self.mlp(self.norm2(x))


@register_model
class TextEncoder(nn.Module):
    """Token and learned position embeddings, ``depth`` transformer blocks, a final LayerNorm.

    Padding is masked out of every attention (as keys), so the real tokens' outputs do not
    depend on what the padding holds; the padded outputs are set to zero.
    """

    def __init__(self, config: TextEncoderConfig):
        super().__init__()
        check_int("vocab_size", config.vocab_size, minimum=2)
        check_int("max_length", config.max_length, minimum=1)
        if config.dim % config.heads:
            raise ValueError(f"heads: expected a divisor of dim={config.dim}, got {config.heads}")
        self.config = config
        self.token_emb = nn.Embedding(config.vocab_size, config.dim)
        self.pos_emb = nn.Parameter(0.02 * torch.randn(config.max_length, config.dim))
        self.blocks = nn.ModuleList(Block(config.dim, config.heads) for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.dim)
        self.proj = nn.Linear(config.dim, config.embed_dim or config.dim, bias=False)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> TextEncoding:
        """ids: (B, L) int64 from ``Tokenizer.encode``, mask: (B, L) bool -> ``TextEncoding``."""
        check_tensor("ids", ids, ndim=2)
        B, L = ids.shape
        if ids.dtype != torch.long or L > self.config.max_length:
            raise ValueError(f"ids: expected (B, L) int64 with L <= {self.config.max_length}, "
                             f"got shape {tuple(ids.shape)}, dtype {ids.dtype}")
        check_mask("mask", mask, B, L)
        if not bool(mask.any(dim=1).all()):
            raise ValueError("mask: every caption needs at least one real token "
                             "(the tokenizer encodes the empty prompt as <empty>)")
        x = self.token_emb(ids) + self.pos_emb[:L]                          # (B, L, D)
        for block in self.blocks:
            x = block(x, mask)
        real = mask[..., None].to(x.dtype)                                  # (B, L, 1)
        tokens = self.norm(x) * real                                        # padding -> 0
        pooled = tokens.sum(dim=1) / real.sum(dim=1)                        # mean over real tokens: (B, D)
        return TextEncoding(tokens=tokens, pooled=self.proj(pooled), mask=mask)

    def get_config(self) -> dict:
        return asdict(self.config)

    @classmethod
    def from_config(cls, config: dict) -> "TextEncoder":
        return cls(TextEncoderConfig(**config))


@dataclass
class ImageEncoderConfig:
    """in_channels: C; image_size: H = W (a multiple of 4); channels: widths of the three convs
    (the last two halve H and W); embed_dim: width of the embedding; groups: of every GroupNorm."""

    in_channels: int = 3
    image_size: int = 16
    channels: tuple = (32, 64, 64)
    embed_dim: int = 64
    groups: int = 8


@register_model
class ImageEncoder(nn.Module):
    """Three convs (the last two with stride 2), then flatten and a linear map to the embedding.

    Flattening keeps where things are, which the captions name ("at the top left"); a global
    average pool would throw it away.
    """

    def __init__(self, config: ImageEncoderConfig = ImageEncoderConfig()):
        super().__init__()
        check_int("image_size", config.image_size, minimum=4)
        if config.image_size % 4:
            raise ValueError(f"image_size: expected a multiple of 4, got {config.image_size}")
        self.config = config
        c1, c2, c3 = config.channels
        g = config.groups
        self.net = nn.Sequential(
            nn.Conv2d(config.in_channels, c1, 3, padding=1), nn.GroupNorm(g, c1), nn.SiLU(),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1), nn.GroupNorm(g, c2), nn.SiLU(),     # H/2
            nn.Conv2d(c2, c3, 3, stride=2, padding=1), nn.GroupNorm(g, c3), nn.SiLU(),     # H/4
            nn.Flatten(),                                                    # (B, c3, H/4, W/4) -> (B, c3 H W / 16)
            nn.Linear(c3 * (config.image_size // 4) ** 2, config.embed_dim))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: (B, C, H, W) in [-1, 1] -> (B, embed_dim)."""
        c, s = self.config.in_channels, self.config.image_size
        check_tensor("images", images, shape=(None, c, s, s), floating=True)
        return self.net(images)

    def get_config(self) -> dict:
        return asdict(self.config)

    @classmethod
    def from_config(cls, config: dict) -> "ImageEncoder":
        return cls(ImageEncoderConfig(**{**config, "channels": tuple(config["channels"])}))


@register_model
class CLIP(nn.Module):
    """A text encoder, an image encoder and the learned temperature, in one module to train.

    ``logit_scale`` is the log of the inverse temperature, starting at log(1 / 0.07) as in CLIP.
    Saved and rebuilt as one model (``get_config``: both encoders' configs).
    """

    def __init__(self, text_encoder: TextEncoder, image_encoder: ImageEncoder, temperature: float = 0.07):
        super().__init__()
        check_positive("temperature", temperature)
        text_width = text_encoder.config.embed_dim or text_encoder.config.dim
        if text_width != image_encoder.config.embed_dim:
            raise ValueError(f"image_encoder: expected embed_dim={text_width}, the text encoder's, "
                             f"got {image_encoder.config.embed_dim}")
        self.text_encoder, self.image_encoder = text_encoder, image_encoder
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / temperature)))

    def forward(self, images: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor):
        """images: (B, C, H, W), ids and mask: (B, L) -> image_emb (B, E), text_emb (B, E)."""
        return self.image_encoder(images), self.text_encoder(ids, mask).pooled

    def get_config(self) -> dict:
        return {"text": self.text_encoder.get_config(), "image": self.image_encoder.get_config()}

    @classmethod
    def from_config(cls, config: dict) -> "CLIP":
        return cls(TextEncoder.from_config(config["text"]), ImageEncoder.from_config(config["image"]))


def clip_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric InfoNCE loss (Radford et al. 2021, fig. 3).

    Both embeddings are L2-normalised; pair i is (image i, caption i). The logits are the cosine
    similarities times ``exp(logit_scale)``, clamped at 100; the loss is the mean of the
    cross-entropy of each image over the captions and of each caption over the images:

        L = (CE(S, I) + CE(S^T, I)) / 2,   S_ij = exp(logit_scale) <img_i, txt_j>

    Args:
        image_emb: (B, E).
        text_emb: (B, E).
        logit_scale: 0-d tensor, the log of the inverse temperature.

    Returns:
        The loss, a 0-d tensor.
    """
    check_tensor("image_emb", image_emb, ndim=2, floating=True)
    check_tensor("text_emb", text_emb, shape=tuple(image_emb.shape), floating=True)
    check_tensor("logit_scale", logit_scale, ndim=0)
    image_emb, text_emb = F.normalize(image_emb, dim=-1), F.normalize(text_emb, dim=-1)
    scale = logit_scale.clamp(max=math.log(MAX_LOGIT_SCALE)).exp()
    logits = scale * image_emb @ text_emb.T                             # (B images, B captions)
    labels = torch.arange(logits.shape[0], device=logits.device)        # the match is on the diagonal
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def caption_batches(images: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor, batch_size: int):
    """Endless batches ``{"images", "ids", "mask"}`` of ``batch_size`` distinct pairs each.

    Drawn without replacement within a batch (so an image is never its own negative), from
    torch's global random state (which ``fit`` seeds).
    """
    check_int("batch_size", batch_size, minimum=2, maximum=images.shape[0])
    while True:
        idx = torch.randperm(images.shape[0])[:batch_size]
        yield {"images": images[idx], "ids": ids[idx], "mask": mask[idx]}


def train_clip(model: CLIP, images: torch.Tensor, captions: list[str], tokenizer: Tokenizer, *,
               batch_size: int = 128, config: TrainConfig | None = None) -> TrainResult:
    """Train ``model`` on (image, caption) pairs with ``clip_loss``, through ``dlcourse.loop.fit``.

    Args:
        model: a ``CLIP``.
        images: (N, C, H, W) in [-1, 1].
        captions: N captions, ``captions[i]`` of ``images[i]``.
        tokenizer: encodes the captions (once, before training).
        batch_size: pairs per batch; every other pair in a batch is a negative.
        config: the budget and optimiser; by default 500 steps of AdamW at 2e-3, no EMA.

    Returns:
        ``fit``'s ``TrainResult``; ``result.model`` is ``model``, trained, in eval mode.
    """
    if not isinstance(model, CLIP):
        raise TypeError(f"model: expected a CLIP, got {type(model).__name__}")
    check_tensor("images", images, ndim=4, floating=True)
    if len(captions) != images.shape[0]:
        raise ValueError(f"captions: expected one per image ({images.shape[0]}), got {len(captions)}")
    ids, mask = tokenizer.encode(captions)                              # (N, L) each
    config = config or TrainConfig(steps=500, lr=2e-3, ema_decay=None)

    def loss_fn(clip: CLIP, batch: dict) -> torch.Tensor:
        image_emb, text_emb = clip(batch["images"], batch["ids"], batch["mask"])
        return clip_loss(image_emb, text_emb, clip.logit_scale)

    return fit(model, caption_batches(images, ids, mask, batch_size), loss_fn, config)


def retrieval_top1(text_emb: torch.Tensor, image_emb: torch.Tensor, captions: list[str] | None = None) -> float:
    """Caption -> image retrieval: the fraction of captions whose nearest image is their own.

    Nearest by cosine similarity among all N images. With ``captions``, an image whose caption is
    the same as the query's also counts as correct: two images can share a caption, and then no
    encoder can tell which one the caption was written for.

    Args:
        text_emb: (N, E), caption i of image i.
        image_emb: (N, E).
        captions: N strings, or None to count only image i as correct for caption i.

    Returns:
        A float in [0, 1]; chance is 1 / N without ``captions``.
    """
    check_tensor("text_emb", text_emb, ndim=2, floating=True)
    check_tensor("image_emb", image_emb, shape=tuple(text_emb.shape), floating=True)
    sims = F.normalize(text_emb, dim=-1) @ F.normalize(image_emb, dim=-1).T    # (N captions, N images)
    best = sims.argmax(dim=1).tolist()
    if captions is None:
        return sum(j == i for i, j in enumerate(best)) / len(best)
    if len(captions) != len(best):
        raise ValueError(f"captions: expected {len(best)}, one per embedding, got {len(captions)}")
    return sum(captions[j] == captions[i] for i, j in enumerate(best)) / len(best)
