"""DALL-E 3's recaptioning in miniature: a captioner writes detailed captions for images whose own are terse or wrong.

    captioner = train_captioner(few.images, few.captions, steps=400)      # a small set with good captions
    alt_text = corrupt_captions(terse_captions(data.captions, p_drop=0.7, seed=0), p_wrong=0.2, seed=1)
    recaptions = recaption(data.images, captioner)                        # what the images show, in full
    caption_quality(recaptions, data.captions)["all"]                     # the fraction fully right

Betker et al. (2023, "Improving Image Generation with Better Captions") observe that the captions scraped with
images from the web are short and often off: they name the object and leave out where it is, how many there are,
what colour, what is in the background, and at times name something the image does not show. A text-to-image model
trained on them learns to ignore those words of a prompt. Their remedy is data, not architecture: train an image
captioner, let it write a detailed ("descriptive synthetic") caption for every training image, and train the
text-to-image model on those, mixed with a small share of the original captions (5% for DALL-E 3). Measured by
prompt following, the model trained on synthetic captions wins, and the more descriptive captions win more.

The miniature on the shapes set, whose exact captions name four attributes ("a small red circle at the top left"):

- ``terse_captions`` writes the alt text: the shape always named, each of size, colour and place left out with
  probability ``p_drop``; ``corrupt_captions`` then replaces each named attribute with a wrong one with probability
  ``p_wrong`` (``corrupt_attributes`` on the attribute indices: the exercise of notebook 10e).
- ``Captioner`` is a small CNN with one head per attribute; ``train_captioner`` fits it on a few images with exact
  captions, and ``recaption`` writes the caption of its readings in the course's template (``write_caption``).
- ``caption_quality`` scores a caption set against the exact captions, attribute by attribute.
- ``train_on_captions`` fine-tunes one text-to-image model (the shipped ``shapes16_unet`` with new cross-attention
  to the frozen ``clip_shapes16`` tokens) on given captions, the same recipe for every caption set, so the only
  difference between two runs is the words.

Figures: ``bench/dalle3.py`` and bench/README.md ("DALL-E 3's recaptioning").
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from ..conditioning.text_to_image import TextToImage, caption_attributes, train_text_to_image
from ..conditioning.tokenizer import Tokenizer
from ..data.shapes import COLOR_NAMES, POSITION_NAMES, SCALE_NAMES, SHAPE_NAMES
from ..loop import TrainConfig, fit
from ..models.common import register_model
from ..validation import check_int, check_probability, check_tensor

__all__ = ["ATTRIBUTES", "SHIPPED", "TUNED", "Captioner", "CaptionTunedWeights", "caption_quality",
           "captioner_loss", "corrupt_attributes", "corrupt_captions", "generate", "load_recaptioning", "recaption",
           "terse_captions", "text_to_image_from_base", "train_captioner", "train_on_captions", "write_caption"]

# The parameters train_on_captions trains (a regular expression on their names): the new cross-attention blocks, the
# time embedding and every block's projection of it, and the normalisations (222,720 of the U-Net's 896,163).
TUNED = r"^(time_embed\.|.*\.emb\.|.*(cross|norm)[^.]*\.)"
SHIPPED = ("dalle3_alt_text_shapes16", "dalle3_recaptioned_shapes16")

# Each attribute a caption names, with its vocabulary (indices as in ``caption_attributes``).
ATTRIBUTES = {"shape": SHAPE_NAMES, "color": COLOR_NAMES, "scale": SCALE_NAMES, "position": POSITION_NAMES}


def write_caption(attributes: dict) -> list[str]:
    """Captions in the course's template, "a {size} {colour} {shape} {place}", leaving out what is -1.

    The inverse of ``caption_attributes``: a full set of attributes gives exactly the caption ``make_shapes``
    writes ("a small red circle at the top left"), and ``{"shape": 0, "color": 0, others -1}`` gives "a red circle".

    Args:
        attributes: ``{"shape", "color", "scale", "position"}``, each (B,) int64 indices into the names of
            ``ATTRIBUTES``, -1 where the caption does not name it. The shape must be named.

    Returns:
        B strings.
    """
    values = _check_attributes("attributes", attributes)
    B = values["shape"].shape[0]
    if bool((values["shape"] < 0).any()):
        raise ValueError("attributes: every caption must name its shape (the noun); "
                         f"{int((values['shape'] < 0).sum())} of {B} do not")
    out = []
    for i in range(B):
        words = ["a"]
        for key in ("scale", "color", "shape", "position"):
            j = int(values[key][i])
            if j >= 0:
                words.append(ATTRIBUTES[key][j])
        out.append(" ".join(words))
    return out


def corrupt_attributes(values: torch.Tensor, num_values: int, p_wrong: float, generator: torch.Generator) -> torch.Tensor:
    """Replace each named value with a different one, uniformly, with probability ``p_wrong``.

    A value of -1 (not named) stays -1. A replaced value is drawn uniformly from the ``num_values - 1`` values
    that differ from it, so exactly the drawn fraction is wrong (drawing from all ``num_values`` would leave
    1 in ``num_values`` of the "replaced" ones right). The input is not modified.

    Args:
        values: (B,) int64 in -1 .. num_values - 1.
        num_values: K >= 2, the size of the vocabulary.
        p_wrong: in [0, 1].
        generator: a CPU ``torch.Generator``, the only source of randomness.

    Returns:
        (B,) int64.
    """
    u = torch.rand(values.shape, generator=generator)                                  # (B,) replace if u < p
    shift = torch.randint(1, num_values, values.shape, generator=generator)             # (B,) 1 .. K-1: never 0
    replace = (u < p_wrong) & (values >= 0)
    return torch.where(replace, (values + shift) % num_values, values)


def terse_captions(captions, p_drop: float = 0.7, seed: int = 0) -> list[str]:
    """Alt-text-like captions: the shape always named, size, colour and place each left out with ``p_drop``.

    Args:
        captions: B captions ("a small red circle at the top left", or shorter ones).
        p_drop: in [0, 1]; each of size, colour and place is dropped independently.
        seed: seeds the draws (``torch.Generator().manual_seed(seed)``).

    Returns:
        B captions in the course's template, e.g. "a red circle" or "a circle at the top".
    """
    p_drop = check_probability("p_drop", p_drop)
    attributes = _attributes_of("captions", captions)
    g = torch.Generator().manual_seed(check_int("seed", seed))
    for key in ("scale", "color", "position"):
        drop = torch.rand(attributes[key].shape, generator=g) < p_drop
        attributes[key] = torch.where(drop, torch.full_like(attributes[key], -1), attributes[key])
    return write_caption(attributes)


def corrupt_captions(captions, p_wrong: float = 0.2, seed: int = 0) -> list[str]:
    """Captions with each named attribute (shape included) replaced by a wrong one with probability ``p_wrong``.

    Uses ``corrupt_attributes`` per attribute, in the order shape, colour, size, place, from one generator.

    Args:
        captions: B captions that name their shape.
        p_wrong: in [0, 1].
        seed: seeds the draws.

    Returns:
        B captions in the course's template; what was not named stays unnamed.
    """
    p_wrong = check_probability("p_wrong", p_wrong)
    attributes = _attributes_of("captions", captions)
    g = torch.Generator().manual_seed(check_int("seed", seed))
    for key in ("shape", "color", "scale", "position"):
        attributes[key] = corrupt_attributes(attributes[key], len(ATTRIBUTES[key]), p_wrong, g)
    return write_caption(attributes)


def caption_quality(captions, truth) -> dict:
    """How much of the truth a caption set tells, attribute by attribute.

    Args:
        captions: B captions to score.
        truth: the B exact captions of the same images.

    Returns:
        ``{attribute: {"named", "right", "wrong"}}`` for shape, colour, size and place (fractions of all B
        captions: named at all, named right, named wrong), and ``"all"``: the fraction that names all four right.
    """
    got, want = _attributes_of("captions", captions), _attributes_of("truth", truth)
    if got["shape"].shape != want["shape"].shape:
        raise ValueError(f"truth: expected one caption per caption ({got['shape'].shape[0]}), "
                         f"got {want['shape'].shape[0]}")
    if bool((torch.stack(list(want.values())) < 0).any()):
        raise ValueError("truth: expected exact captions that name all four attributes")
    out, every = {}, torch.ones_like(want["shape"], dtype=torch.bool)
    for key in ATTRIBUTES:
        named, right = got[key] >= 0, got[key] == want[key]
        every &= right
        out[key] = {"named": _frac(named), "right": _frac(right), "wrong": _frac(named & ~right)}
    out["all"] = _frac(every)
    return out


class Captioner(nn.Module):
    """A small CNN that reads the four attributes of a shapes image: ``captioner(images)`` -> dict of logits.

    Two stages of 3x3 convolutions (GroupNorm, SiLU) and 2x2 max pools, then a linear layer on the *flattened*
    map, so where the shape is (the place a caption names) survives; one linear head per attribute.

    Args:
        size: H = W of the images, a multiple of 4.
        width: channels of the first stage (the second has twice as many).
        hidden: width of the shared layer before the heads.

    Forward:
        images (B, 3, size, size) in [-1, 1] -> ``{"shape": (B, 4), "color": (B, 6), "scale": (B, 2),
        "position": (B, 9)}`` logits.
    """

    def __init__(self, size: int = 16, width: int = 16, hidden: int = 64):
        super().__init__()
        if size % 4:
            raise ValueError(f"size: expected a multiple of 4, got {size}")
        self.size, w = size, width
        self.body = nn.Sequential(
            nn.Conv2d(3, w, 3, padding=1), nn.GroupNorm(4, w), nn.SiLU(), nn.MaxPool2d(2),           # (B, w, H/2, W/2)
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.GroupNorm(4, 2 * w), nn.SiLU(), nn.MaxPool2d(2),  # (B, 2w, H/4, W/4)
            nn.Flatten(), nn.Linear(2 * w * (size // 4) ** 2, hidden), nn.SiLU())                  # (B, hidden)
        self.heads = nn.ModuleDict({key: nn.Linear(hidden, len(names)) for key, names in ATTRIBUTES.items()})

    def forward(self, images: torch.Tensor) -> dict:
        h = self.body(images)
        return {key: head(h) for key, head in self.heads.items()}

    @torch.no_grad()
    def read(self, images: torch.Tensor, batch_size: int = 1024) -> dict:
        """The most likely value of each attribute: ``{"shape", "color", "scale", "position"}``, each (B,) int64."""
        check_tensor("images", images, shape=(None, 3, self.size, self.size), floating=True)
        self.eval()
        device = next(self.parameters()).device
        parts = [self(images[i:i + batch_size].to(device)) for i in range(0, images.shape[0], batch_size)]
        return {key: torch.cat([p[key] for p in parts]).argmax(1).cpu() for key in ATTRIBUTES}


def captioner_loss(captioner: Captioner, batch: dict) -> torch.Tensor:
    """The sum over the four attributes of the cross-entropy of the captioner's logits."""
    logits = captioner(batch["images"])
    return sum(F.cross_entropy(logits[key], batch[key]) for key in ATTRIBUTES)


def train_captioner(images: torch.Tensor, captions, *, steps: int = 400, batch_size: int = 64, lr: float = 3e-3,
                    seed: int = 0, progress: bool = False) -> Captioner:
    """A ``Captioner`` fitted on (image, exact caption) pairs, through ``dlcourse.loop.fit`` on the CPU, fp32.

    Args:
        images: (N, 3, H, H) in [-1, 1].
        captions: N captions that name all four attributes.
        steps, batch_size, lr: the budget (AdamW, constant rate, no EMA).
        seed: seeds the initial weights and the batches.

    Returns:
        The trained ``Captioner``, in eval mode.
    """
    check_tensor("images", images, shape=(None, 3, None, None), floating=True)
    labels = _attributes_of("captions", captions)
    if labels["shape"].shape[0] != images.shape[0]:
        raise ValueError(f"captions: expected one per image ({images.shape[0]}), got {labels['shape'].shape[0]}")
    if bool((torch.stack(list(labels.values())) < 0).any()):
        raise ValueError("captions: expected exact captions that name all four attributes")
    check_int("steps", steps, minimum=1)
    check_int("batch_size", batch_size, minimum=1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        captioner = Captioner(size=images.shape[-1])

    def batches():
        while True:                                        # drawn from the global state, which fit seeds
            i = torch.randint(0, images.shape[0], (batch_size,))
            yield {"images": images[i], **{key: v[i] for key, v in labels.items()}}

    config = TrainConfig(steps=steps, lr=lr, ema_decay=None, precision="fp32", device="cpu", seed=seed,
                         progress=progress)
    return fit(captioner, batches(), captioner_loss, config).model.eval()


def recaption(images: torch.Tensor, captioner: Captioner) -> list[str]:
    """Write a detailed caption for each image: the captioner's four readings in the course's template.

    Args:
        images: (B, 3, H, H) in [-1, 1].
        captioner: a trained ``Captioner`` for H-pixel images.

    Returns:
        B captions such as "a small red circle at the top left".
    """
    if not isinstance(captioner, Captioner):
        raise TypeError(f"captioner: expected a Captioner, got {type(captioner).__name__}")
    return write_caption(captioner.read(images))


def text_to_image_from_base(seed: int = 0) -> TextToImage:
    """The starting point of every caption set: ``shapes16_unet`` with new cross-attention to ``clip_shapes16``.

    The shipped unconditional U-Net (cosine T = 1000, v-prediction) gains cross-attention blocks reading the frozen
    text encoder's tokens at 8x8 and 4x4 (``cross_attention_levels=2``), as ``shapes16_unet_text`` was built; they
    start as the identity (their output projection is zero), so the model draws what ``shapes16_unet`` draws and
    ignores the prompt until trained. Only ``TUNED`` parameters are trainable (the new blocks, the time embedding and
    its projections, the normalisations); the rest is frozen.

    Args:
        seed: seeds the new blocks' initial weights.

    Returns:
        A ``TextToImage`` on the CPU.
    """
    from ..models import UNet, UNetConfig
    from ..pretrained import load_pretrained

    clip, clip_info = load_pretrained("clip_shapes16", device="cpu")
    base, _ = load_pretrained("shapes16_unet", device="cpu")
    config = UNetConfig(**{**base.get_config(), "context_dim": clip.text_encoder.config.dim,
                           "cross_attention_levels": 2})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(check_int("seed", seed))
        unet = UNet(config)
    missing, unexpected = unet.load_state_dict(base.state_dict(), strict=False)
    if unexpected or not missing or not all(re.search(TUNED, n) for n in missing):
        raise RuntimeError(f"shapes16_unet: its weights do not fit the U-Net with cross-attention "
                           f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    for name, p in unet.named_parameters():
        p.requires_grad_(bool(re.search(TUNED, name)))
    return TextToImage(unet, clip.text_encoder, Tokenizer(**clip_info["tokenizer"]))


def train_on_captions(images: torch.Tensor, captions, *, steps: int, batch_size: int = 64, lr: float = 2e-3,
                      seed: int = 0, hold_out=("blue triangle",), progress: bool = False) -> TextToImage:
    """Teach ``text_to_image_from_base(seed)`` to read ``captions``: the same recipe whatever the captions say.

    Only the ``TUNED`` parameters train (``text_to_image_from_base``), with caption dropout 0.15 to the empty prompt,
    v-prediction on the cosine schedule as the base, AdamW with a cosine decay of ``lr``, EMA 0.999, fp32 on
    the CPU. Captions that name a ``hold_out`` combination are left out with their images.

    Args:
        images: (N, 3, 16, 16) in [-1, 1].
        captions: N strings in the tokenizer's vocabulary, ``captions[i]`` of ``images[i]``.
        steps: optimiser steps (a fixed budget, so two caption sets get the same).
        batch_size, lr: as above.
        seed: seeds the new weights, the batches, the timesteps and the noise.
        hold_out: combinations never trained on.

    Returns:
        The EMA ``TextToImage`` in eval mode, on the CPU.
    """
    from ..schedules import get_schedule

    check_tensor("images", images, shape=(None, 3, 16, 16), floating=True)
    check_int("steps", steps, minimum=1)
    pipe = text_to_image_from_base(seed)
    config = TrainConfig(steps=steps, lr=lr, lr_schedule="cosine", ema_decay=0.999, precision="fp32",
                         device="cpu", seed=seed, progress=progress)
    result = train_text_to_image(pipe, images, captions, get_schedule("cosine", 1000), p_uncond=0.15,
                                 hold_out=list(hold_out), batch_size=batch_size, prediction_type="v_prediction",
                                 config=config)
    return result.ema_model.eval()


@register_model
class CaptionTunedWeights(nn.Module):
    """The weights ``train_on_captions`` changed, apart from the frozen base: what ships for notebook 10e.

    ``CaptionTunedWeights.from_pipe(pipe)`` keeps the ``TUNED`` parameters of a ``TextToImage``'s U-Net;
    ``weights.pipe()`` puts them into ``text_to_image_from_base()`` and returns the model.
    """

    def __init__(self, names, shapes):
        super().__init__()
        if len(names) != len(shapes):
            raise ValueError(f"shapes: expected one per name ({len(names)}), got {len(shapes)}")
        self.names, self.shapes = list(names), [list(s) for s in shapes]
        self.tuned = nn.ParameterList([nn.Parameter(torch.zeros(s)) for s in self.shapes])

    @classmethod
    def from_pipe(cls, pipe: TextToImage) -> "CaptionTunedWeights":
        params = {n: p for n, p in pipe.unet.named_parameters() if re.search(TUNED, n)}
        out = cls(list(params), [list(p.shape) for p in params.values()])
        with torch.no_grad():
            for p, q in zip(out.tuned, params.values()):
                p.copy_(q)
        return out

    def pipe(self) -> TextToImage:
        """``text_to_image_from_base()`` with these weights in its cross-attention, in eval mode, float32."""
        pipe = text_to_image_from_base()
        params = dict(pipe.unet.named_parameters())
        if sorted(self.names) != sorted(n for n in params if re.search(TUNED, n)):
            raise ValueError("weights: they do not name the base U-Net's TUNED parameters")
        with torch.no_grad():
            for p, n in zip(self.tuned, self.names):
                params[n].copy_(p.float())
        return pipe.eval()

    def get_config(self) -> dict:
        return {"names": list(self.names), "shapes": [list(s) for s in self.shapes]}

    @classmethod
    def from_config(cls, config: dict) -> "CaptionTunedWeights":
        return cls(**config)


def load_recaptioning(name: str) -> tuple[TextToImage, dict]:
    """A shipped model of notebook 10e on its base, all checksum verified.

    Args:
        name: "dalle3_alt_text_shapes16" (trained on terse, partly wrong captions) or
            "dalle3_recaptioned_shapes16" (the same images, recaptioned by a ``Captioner``).

    Returns:
        ``(pipe, info)``: a ``TextToImage`` in eval mode on the CPU, and the file's info (the recipe, the caption
        set's ``caption_quality``, ...).
    """
    from ..checkpoints import sha256_file
    from ..pretrained import load_pretrained, pretrained_path

    if name not in SHIPPED:
        raise ValueError(f"name: expected one of {list(SHIPPED)}, got {name!r}")
    weights, info = load_pretrained(name, device="cpu")
    for base in ("shapes16_unet", "clip_shapes16"):
        if sha256_file(pretrained_path(base)) != info[f"{base}_sha256"]:
            raise ValueError(f"{name}: trained on {base} of SHA-256 {info[f'{base}_sha256']}, which is not the "
                             f"shipped one; retrain it: {info['command']}")
    return weights.float().pipe(), info


@torch.no_grad()
def generate(prompt, *, name: str = "dalle3_recaptioned_shapes16", num_inference_steps: int = 20,
             guidance_scale: float = 3.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Images for prompts from a shipped model of notebook 10e: DDIM with classifier-free guidance.

    Args:
        prompt: a caption or a list of B captions ("a small red circle at the top left").
        name: one of ``SHIPPED`` (the recaptioned model by default).
        num_inference_steps: DDIM steps (two network calls each with guidance).
        guidance_scale: w; 1 is no guidance.
        generator: a CPU ``torch.Generator`` for the starting noise, or None for torch's global state.

    Returns:
        (B, 3, 16, 16) in [-1, 1], on the CPU.
    """
    from ..samplers import sample_ddim
    from ..schedules import get_schedule

    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise TypeError(f"prompt: expected a caption or a non-empty list of captions, got {prompt!r}")
    check_int("num_inference_steps", num_inference_steps, minimum=1)
    pipe, info = load_recaptioning(name)
    x_T = torch.randn(len(prompts), 3, 16, 16, generator=generator)
    x = sample_ddim(pipe, x_T, get_schedule(info["schedule"], info["T"]), num_inference_steps,
                    cond=pipe.cond(prompts), guidance_scale=guidance_scale, prediction_type=info["prediction_type"],
                    progress=False)
    return x.clamp(-1, 1)


def _check_attributes(name: str, attributes) -> dict:
    if not isinstance(attributes, dict) or set(attributes) != set(ATTRIBUTES):
        got = sorted(attributes) if isinstance(attributes, dict) else type(attributes).__name__
        raise ValueError(f"{name}: expected a dict with keys {sorted(ATTRIBUTES)}, got {got}")
    B = None
    for key, names in ATTRIBUTES.items():
        v = attributes[key]
        check_tensor(f"{name}[{key!r}]", v, ndim=1)
        B = v.shape[0] if B is None else B
        if v.shape[0] != B or v.dtype != torch.long:
            raise ValueError(f"{name}[{key!r}]: expected ({B},) int64, got {tuple(v.shape)} {v.dtype}")
        if bool(((v < -1) | (v >= len(names))).any()):
            raise ValueError(f"{name}[{key!r}]: expected values in -1 .. {len(names) - 1}, "
                             f"got {int(v.min())} .. {int(v.max())}")
    return attributes


def _attributes_of(name: str, captions) -> dict:
    if isinstance(captions, str):
        raise TypeError(f"{name}: expected a list of captions, got the string {captions!r} (wrap it in a list)")
    captions = list(captions)
    attributes = caption_attributes(captions)
    missing = (attributes["shape"] < 0).nonzero().flatten()
    if missing.numel():
        i = int(missing[0])
        raise ValueError(f"{name}[{i}]: expected a caption that names its shape, got {captions[i]!r}")
    return attributes


def _frac(mask: torch.Tensor) -> float:
    return float(mask.float().mean())
