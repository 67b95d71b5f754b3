"""Text to image: a U-Net that reads a frozen text encoder's tokens, guided by the empty prompt.

    pipe = TextToImage(unet, clip.text_encoder, Tokenizer.default())   # the text encoder is frozen
    result = train_text_to_image(pipe, data.images, data.captions, schedule, p_uncond=0.15,
                                 hold_out=["blue triangle"], config=TrainConfig(steps=2000))
    x = sample_ddim(result.ema_model, x_T, schedule, 20, cond=pipe.cond(prompts), guidance_scale=3,
                    prediction_type="v_prediction")
    prompt_accuracy(judge, x, prompts).all           # the fraction that shows everything asked for

The recipe of Stable Diffusion (Rombach et al. 2022, sec. 3.3) in miniature: a text encoder trained
beforehand (here the small CLIP of ``text_encoder.py``) turns the caption into tokens; it stays
frozen while the denoiser learns to read them through cross-attention (``dlcourse.models.UNet`` with
``context_dim``). With probability ``p_uncond`` a caption is replaced by the empty prompt "" (caption
dropout), so the same network also learns the unconditional prediction, and classifier-free guidance
(Ho & Salimans 2022) is one line at sampling time (``dlcourse.guidance``):

    out = out("") + w (out(caption) - out(""))

The null condition is the *encoding of the empty prompt* (its own token, ``<empty>``), not "no
cross-attention": ``TextToImage`` answers ``cond=None``, which the samplers pass for the unguided half,
with it, so every sampler guides a text model as it guides a class-conditional one.

``hold_out`` removes attribute combinations from training (every caption that has all the words of
one, e.g. "blue triangle"); prompting for them afterwards measures compositional generalisation: the
model has seen blue things and triangles, never a blue triangle.

``prompt_accuracy`` reads the samples back: the judge (``dlcourse.judge``) reads shape, colour and
size, but not position (it pools over the image), so position is read from the pixels by
``read_positions``, reported beside the judge's attributes. Figures: ``bench/prompt_following.py``
and bench/README.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..data.shapes import BACKGROUND, COLOR_NAMES, POSITION_NAMES, SCALE_NAMES, SHAPE_NAMES, make_shapes
from ..device import get_device
from ..loop import TrainConfig, TrainResult, fit
from ..parameterization import PREDICTION_TYPES, diffusion_loss
from ..validation import check_choice, check_int, check_probability, check_tensor
from .text_encoder import TextEncoder, TextEncoding
from .tokenizer import Tokenizer, split_words

__all__ = ["PromptAccuracy", "TextToImage", "caption_attributes", "drop_captions", "held_out", "load_text_to_image",
           "matched_real_sets", "prompt_accuracy", "read_positions", "text_batches", "train_text_to_image"]


class TextToImage(nn.Module):
    """A text-conditioned U-Net with its frozen text encoder and tokenizer: ``model(x_t, t, cond)``.

    Args:
        unet: a ``dlcourse.models.UNet`` built with ``context_dim`` equal to the encoder's width.
        text_encoder: a trained ``TextEncoder``; frozen here (``requires_grad_(False)``), so ``fit``
            trains the U-Net only.
        tokenizer: the ``Tokenizer`` the text encoder was trained with.

    ``cond`` is the dict of ``TextEncoding.cond()`` (``self.cond(captions)``); ``cond=None`` means the
    empty prompt, the null condition of classifier-free guidance.
    """

    def __init__(self, unet: nn.Module, text_encoder: TextEncoder, tokenizer: Tokenizer):
        super().__init__()
        if not isinstance(text_encoder, TextEncoder):
            raise TypeError(f"text_encoder: expected a TextEncoder, got {type(text_encoder).__name__}")
        if not isinstance(tokenizer, Tokenizer):
            raise TypeError(f"tokenizer: expected a Tokenizer, got {type(tokenizer).__name__}")
        width = text_encoder.config.dim
        context_dim = getattr(getattr(unet, "config", None), "context_dim", None)
        if context_dim != width:
            raise ValueError(f"unet: expected a U-Net with context_dim={width} (the text encoder's width), "
                             f"got context_dim={context_dim}")
        if len(tokenizer) != text_encoder.config.vocab_size or tokenizer.max_length > text_encoder.config.max_length:
            raise ValueError(f"tokenizer: expected {text_encoder.config.vocab_size} tokens and max_length <= "
                             f"{text_encoder.config.max_length} (the text encoder's), got {len(tokenizer)} tokens "
                             f"and max_length={tokenizer.max_length}")
        self.unet, self.text_encoder, self.tokenizer = unet, text_encoder.requires_grad_(False), tokenizer

    @torch.no_grad()
    def encode(self, captions) -> TextEncoding:
        """The frozen encoder's ``TextEncoding`` of B captions ("" is the empty prompt)."""
        device = next(self.text_encoder.parameters()).device
        return self.text_encoder(*self.tokenizer.encode(captions, device=device))

    def cond(self, captions) -> dict:
        """``{"context": (B, L, D), "context_mask": (B, L)}`` for B captions: the ``cond`` of a sampler."""
        return self.encode(captions).cond()

    def forward(self, x_t: torch.Tensor, t, cond: dict | None = None) -> torch.Tensor:
        """The U-Net's prediction (B, C, H, W); ``cond=None`` is the empty prompt's encoding."""
        if cond is None:
            cond = self.cond([""] * x_t.shape[0])
        return self.unet(x_t, t, cond)

    def attention_maps(self, x_t: torch.Tensor, t, captions) -> dict:
        """Where each word is read: ``{block name: (B, L, h, w)}`` (``UNet.cross_attention_maps``).

        Token j of caption b is its j-th word (``<pad>`` after the last, with weight 0).
        """
        return self.unet.cross_attention_maps(x_t, t, self.cond(captions))[1]


def held_out(captions, combinations) -> torch.Tensor:
    """(N,) bool: True for each caption that has every word of some combination.

    A combination is a string of words, e.g. "blue triangle" (every blue triangle, of any size and
    place) or "small cross left" (small crosses in the left column).
    """
    combos = [set(split_words(c)) for c in _as_list("combinations", combinations)]
    if any(not c for c in combos):
        raise ValueError(f"combinations: expected strings of words such as 'blue triangle', got {combinations!r}")
    return torch.tensor([any(c <= set(split_words(caption)) for c in combos) for caption in captions],
                        dtype=torch.bool)


def matched_real_sets(n: int, hold, *, pool_size: int = 20_000) -> tuple[list, torch.Tensor, torch.Tensor]:
    """Prompts with real images to score samples against, and a second real set for the FD floor.

    The prompts are the first n captions of ``make_shapes(2 n, seed=2)`` that ``hold`` does not hold out,
    ``real_a`` their own images; ``real_b`` gives each prompt another image with the same caption, from
    ``make_shapes(pool_size, seed=4)`` (the k-th use of a caption takes its k-th image there).

    Returns:
        ``(prompts, real_a, real_b)``: n captions and two (n, 3, 16, 16) image sets.
    Raises:
        ValueError: the pool holds too few images of some caption (raise ``pool_size``).
    """
    check_int("n", n, minimum=1)
    data = make_shapes(2 * n, size=16, seed=2)
    keep = ~held_out(data.captions, hold)
    real_a = data.images[keep][:n]
    prompts = [c for c, k in zip(data.captions, keep.tolist()) if k][:n]
    pool = make_shapes(pool_size, size=16, seed=4)
    by_caption = {}
    for image, caption in zip(pool.images, pool.captions):
        by_caption.setdefault(caption, []).append(image)
    uses, matched = {}, []
    for c in prompts:                                         # the k-th use of a caption takes its k-th image
        uses[c] = uses.get(c, -1) + 1
        if uses[c] >= len(by_caption.get(c, ())):
            raise ValueError(f"pool_size: {pool_size} images hold {len(by_caption.get(c, ()))} of {c!r}, "
                             f"{uses[c] + 1} needed; raise pool_size")
        matched.append(by_caption[c][uses[c]])
    return prompts, real_a, torch.stack(matched)


def drop_captions(ids: torch.Tensor, mask: torch.Tensor, p_uncond: float, tokenizer: Tokenizer, *,
                  u: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace each caption by the empty prompt with probability ``p_uncond`` (caption dropout).

    Caption i is dropped when ``u[i] < p_uncond`` (``u`` uniform on [0, 1), from torch's global random
    state when None): its row becomes the encoding of "", ``<empty>`` then padding.

    Args:
        ids, mask: (B, L) from ``tokenizer.encode``.
        p_uncond: in [0, 1].
        tokenizer: gives the ids of ``<empty>`` and ``<pad>``.
        u: (B,) the uniform draws, or None.

    Returns:
        New ``(ids, mask)``; the inputs are not modified.
    """
    p_uncond = check_probability("p_uncond", p_uncond)
    check_tensor("ids", ids, ndim=2)
    check_tensor("mask", mask, shape=tuple(ids.shape))
    B, L = ids.shape
    if u is None:
        u = torch.rand(B, device=ids.device)
    check_tensor("u", u, shape=(B,), floating=True)
    drop = (u < p_uncond).to(ids.device)[:, None]                       # (B, 1)
    empty_ids = torch.full_like(ids, tokenizer.pad_id)
    empty_ids[:, 0] = tokenizer.empty_id
    empty_mask = torch.zeros_like(mask)
    empty_mask[:, 0] = True
    return torch.where(drop, empty_ids, ids), torch.where(drop, empty_mask, mask)


def text_batches(images: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor, *, batch_size: int,
                 p_uncond: float = 0.0, tokenizer: Tokenizer | None = None):
    """Endless batches ``{"x_0", "ids", "mask"}`` drawn with replacement, captions dropped at ``p_uncond``.

    The draws come from torch's global random state, which ``fit`` seeds.
    """
    check_int("batch_size", batch_size, minimum=1)
    if p_uncond > 0 and tokenizer is None:
        raise ValueError("tokenizer: needed to write the empty prompt when p_uncond > 0")
    while True:
        i = torch.randint(0, images.shape[0], (batch_size,))
        batch_ids, batch_mask = ids[i], mask[i]
        if p_uncond > 0:
            batch_ids, batch_mask = drop_captions(batch_ids, batch_mask, p_uncond, tokenizer)
        yield {"x_0": images[i], "ids": batch_ids, "mask": batch_mask}


def train_text_to_image(pipe: TextToImage, images: torch.Tensor, captions, schedule, *, p_uncond: float = 0.15,
                        hold_out=(), batch_size: int = 128, prediction_type: str = "v_prediction",
                        min_snr_gamma: float | None = None, config: TrainConfig | None = None) -> TrainResult:
    """Train ``pipe``'s U-Net to denoise ``images`` given their captions; the text encoder stays frozen.

    The loss is ``dlcourse.parameterization.diffusion_loss`` with ``cond`` the frozen encoder's tokens
    of each (possibly dropped) caption, on the general loop ``dlcourse.loop.fit``.

    Args:
        pipe: a ``TextToImage``.
        images: (N, C, H, W) in [-1, 1].
        captions: N strings, ``captions[i]`` of ``images[i]``.
        schedule: the noise schedule.
        p_uncond: the caption dropout rate (0.1-0.2 is usual).
        hold_out: combinations never to train on (``held_out``), e.g. ``["blue triangle"]``.
        batch_size: images per step.
        prediction_type: "epsilon", "sample" or "v_prediction".
        min_snr_gamma: Min-SNR-gamma weighting of the loss, or None.
        config: the budget and optimiser; by default 1000 steps of AdamW at 1e-3 with EMA 0.999.

    Returns:
        ``fit``'s ``TrainResult``: ``result.ema_model`` is a ``TextToImage`` to sample with.
    """
    if not isinstance(pipe, TextToImage):
        raise TypeError(f"pipe: expected a TextToImage, got {type(pipe).__name__}")
    check_tensor("images", images, ndim=4, floating=True)
    captions = _as_list("captions", captions)
    if len(captions) != images.shape[0]:
        raise ValueError(f"captions: expected one per image ({images.shape[0]}), got {len(captions)}")
    check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
    check_probability("p_uncond", p_uncond)
    keep = ~held_out(captions, hold_out) if hold_out else torch.ones(len(captions), dtype=torch.bool)
    if not bool(keep.any()):
        raise ValueError(f"hold_out: {hold_out!r} removes every training caption")
    ids, mask = pipe.tokenizer.encode([c for c, k in zip(captions, keep.tolist()) if k])
    config = config or TrainConfig(steps=1000, lr=1e-3, ema_decay=0.999)
    schedule_d = schedule.to(get_device() if config.device is None else torch.device(config.device))

    def loss_fn(model: TextToImage, batch: dict) -> torch.Tensor:
        with torch.no_grad():
            text = model.text_encoder(batch["ids"], batch["mask"])            # frozen: tokens (B, L, D)
        return diffusion_loss(model.unet, batch["x_0"], schedule_d, prediction_type=prediction_type,
                              cond=text.cond(), min_snr_gamma=min_snr_gamma)

    batches = text_batches(images[keep], ids, mask, batch_size=batch_size, p_uncond=p_uncond,
                           tokenizer=pipe.tokenizer)
    return fit(pipe, batches, loss_fn, config)


def caption_attributes(captions) -> dict:
    """The attributes a caption names: ``{"shape", "color", "scale", "position"}``, each (B,) int64.

    Indices into ``SHAPE_NAMES``, ``COLOR_NAMES``, ``SCALE_NAMES``, ``POSITION_NAMES`` of
    ``dlcourse.data.shapes``; -1 where the caption does not name that attribute.
    """
    captions = _as_list("captions", captions)
    out = {k: torch.full((len(captions),), -1, dtype=torch.long) for k in ("shape", "color", "scale", "position")}
    for i, caption in enumerate(captions):
        words = split_words(caption)
        for key, names in (("shape", SHAPE_NAMES), ("color", COLOR_NAMES), ("scale", SCALE_NAMES)):
            found = [j for j, name in enumerate(names) if name in words]
            if len(found) > 1:
                raise ValueError(f"captions[{i}]: names more than one {key} in {caption!r}")
            if found:
                out[key][i] = found[0]
        text = " " + " ".join(words) + " "
        found = [j for j, name in enumerate(POSITION_NAMES) if f" {name} " in text]
        if found:
            # the longest match: "at the top left", not "at the top"
            out["position"][i] = max(found, key=lambda j: len(POSITION_NAMES[j]))
    return out


def read_positions(images: torch.Tensor, threshold: float = 0.35) -> torch.Tensor:
    """The place of the shape in each image, read from the pixels: (B,) int64 index into ``POSITION_NAMES``.

    A pixel is the shape's when some channel differs from the background colour by more than
    ``threshold`` (on the [0, 1] scale; every shapes colour differs by 0.72 or more, so this is about
    half covered). The centre of those pixels' bounding box (not their centroid, which a triangle
    pulls down) picks the column and the row: below 0.425 of the side is left / top, above 0.575
    right / bottom (on the shapes set the centres of the places lie at 0.2-0.39, 0.46-0.54 and
    0.61-0.8 of the side). It reads the place of every one of 10,000 real images right (seeds 5, 6).
    An image with no such pixel gets -1.

    Args:
        images: (B, 3, H, W) in [-1, 1].
    """
    check_tensor("images", images, ndim=4, floating=True)
    B, C, H, W = images.shape
    background = torch.tensor(BACKGROUND, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    shape = ((images + 1) / 2 - background).abs().amax(dim=1) > threshold          # (B, H, W)
    out = torch.full((B,), -1, dtype=torch.long, device=images.device)
    for b in range(B):
        ys, xs = shape[b].nonzero(as_tuple=True)
        if ys.numel():
            x = (xs.min() + xs.max() + 1).item() / (2 * W)                           # bounding-box centre in [0, 1]
            y = (ys.min() + ys.max() + 1).item() / (2 * H)
            column, row = (int(v > 0.425) + int(v > 0.575) for v in (x, y))
            out[b] = 3 * row + column
    return out.cpu()


@dataclass(frozen=True)
class PromptAccuracy:
    """How well samples follow their prompts; every figure a fraction of all n samples.

    Attributes:
        n: samples.
        valid: the judge accepts the sample as a clean image of one shape.
        shape, color, scale: the judge's reading equals the prompt's.
        position: the place read from the pixels (``read_positions``) equals the prompt's.
        all: valid, and shape, colour and size all as asked: every attribute the judge reads.
        all_with_position: ``all`` and the position as asked.
    """

    n: int
    valid: float
    shape: float
    color: float
    scale: float
    position: float
    all: float
    all_with_position: float


def prompt_accuracy(judge, images: torch.Tensor, prompts) -> PromptAccuracy:
    """The fraction of samples that show what their prompts ask for, read by the judge.

    The judge reads shape, colour and size; it pools over the image, so it cannot read position,
    which ``read_positions`` reads from the pixels. A sample counts in ``all`` when the judge calls it
    valid and reads the prompt's shape, colour and size; an invalid sample counts as wrong.

    Args:
        judge: a ``dlcourse.judge.Judge``.
        images: (B, 3, H, W) in [-1, 1].
        prompts: B captions that name all four attributes, or a dict of (B,) int64 tensors
            ``{"shape", "color", "scale", "position"}`` (a ``ShapesData``'s labels, colors, scales,
            positions).

    Returns:
        A ``PromptAccuracy``.
    """
    check_tensor("images", images, ndim=4, floating=True)
    B = images.shape[0]
    wanted = dict(prompts) if isinstance(prompts, dict) else caption_attributes(prompts)
    for key in ("shape", "color", "scale", "position"):
        if key not in wanted:
            raise ValueError(f"prompts: expected the attribute {key!r}, got keys {sorted(wanted)}")
        check_tensor(f"prompts[{key!r}]", wanted[key], shape=(B,))
        if bool((wanted[key] < 0).any()):
            raise ValueError(f"prompts: every prompt must name a {key}; "
                             f"{int((wanted[key] < 0).sum())} of {B} do not")
    out = judge.predict(images)
    hits = {k: (out[f"{k}_probs"].argmax(1).cpu() == wanted[k].cpu()) for k in ("shape", "color", "scale")}
    hits["position"] = read_positions(images) == wanted["position"].cpu()
    valid = out["valid"].cpu()
    every = valid & hits["shape"] & hits["color"] & hits["scale"]
    frac = lambda v: float(v.float().mean())                      # noqa: E731
    return PromptAccuracy(n=B, valid=frac(valid), **{k: frac(v) for k, v in hits.items()}, all=frac(every),
                          all_with_position=frac(every & hits["position"]))


def _as_list(name: str, value) -> list:
    if isinstance(value, str):
        raise TypeError(f"{name}: expected a list of strings, got the string {value!r} (wrap it in a list)")
    return list(value)


def load_text_to_image(name: str = "shapes16_unet_text", device=None) -> tuple[TextToImage, dict]:
    """A shipped text-conditioned U-Net with the text encoder it was trained with, both checksum verified.

    Returns:
        ``(pipe, info)``: a ``TextToImage`` in eval mode, and the U-Net's ``load_pretrained`` info
        (schedule, prediction_type, hold_out, text_encoder, ...).
    """
    from ..pretrained import load_pretrained

    unet, info = load_pretrained(name, device=device)
    clip, clip_info = load_pretrained(info["text_encoder"], device=device)
    if clip_info["sha256"] != info["text_encoder_sha256"]:
        raise ValueError(f"{name}: trained with {info['text_encoder']} of SHA-256 {info['text_encoder_sha256']}, "
                         f"but the shipped one is {clip_info['sha256']}; retrain it: {info['command']}")
    pipe = TextToImage(unet, clip.text_encoder, Tokenizer(**clip_info["tokenizer"]))
    return pipe.eval(), info
