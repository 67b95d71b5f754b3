"""Flux's guidance distillation in miniature: the guidance scale as an input, one network call per step.

Classifier-free guidance (notebook 05) costs two network calls per sampling step, the prompt's and the empty
prompt's, mixed as ``out = out_u + w (out_c - out_u)``. Meng et al. 2023 ("On Distillation of Guided Diffusion
Models", stage one) train a *student* that takes w as an input and answers that mix in one call::

    L = || student(x_t, t, c, w) - [teacher(x_t, t, "") + w (teacher(x_t, t, c) - teacher(x_t, t, ""))] ||^2

with ``t``, ``eps`` drawn as in training, ``x_t = sqrt(ab_t) x_0 + sqrt(1 - ab_t) eps`` and ``w ~ U[w_min, w_max]``
per sample; the target carries no gradient. The student starts from the teacher's weights. FLUX.1 [dev] ships such
a student (Black Forest Labs describe it as guidance-distilled; its guidance scale is an input embedded beside the
time step). The teacher's output here is its v-prediction; the mix is the same line for eps, x_0 or v.

The student is ``dlcourse.consistency.GuidanceInput`` around a copy of the teacher's U-Net: ``MLP(w - 1)`` added to
the time embedding, zero at the start, so at first the student answers the teacher's *conditional* output at every
w (exact at w = 1, where the target is the conditional output). The offset puts w = 1, "no guidance", at the
embedding's origin.

    target = guidance_distillation_target(teacher, x_t, t, cond, w)      # the exercise of notebook 10b
    loss = guidance_distillation_loss(student, teacher, x_0, schedule, cond=cond, w_min=1, w_max=7.5)
    pipe, info = load_guidance_distilled()                                # the shipped student
    x = sample_ddim(pipe.at_guidance_scale(3.0), x_T, schedule, 20, cond=pipe.cond(prompts), ...)  # 1 call / step

The shipped ``guidance_distilled_shapes16`` trains only part of the U-Net (``TUNED``: the time embedding, every
block's time projection, the cross-attention and the norms, beside w's MLP) and stores only those weights: the
rest is ``shapes16_unet_text``'s, frozen and checksum-verified at load. Recipe and figures:
``scripts/train_guidance_distilled.py`` and ``bench/guidance_distillation.py`` (bench/README.md).
"""

from __future__ import annotations

import copy
import re

import torch
import torch.nn.functional as F
from torch import nn

from ..consistency import GuidanceInput
from ..device import model_device
from ..models import register_model
from ..schedules import NoiseSchedule
from ..tensors import expand_like, to_device
from ..validation import check_number, check_schedule, check_tensor

__all__ = ["TUNED", "FixedGuidance", "GuidanceDistilledTextToImage", "TunedWeights", "guidance_distillation_loss",
           "guidance_distillation_target", "load_guidance_distilled", "tuned_parameter_names"]

# The U-Net's parameters that guidance distillation trains (a regular expression on their names): whatever reads
# the time embedding (which carries w), the cross-attention (which reads the prompt) and the norms.
TUNED = r"^(time_embed\.|.*\.emb\.|.*(cross|norm)[^.]*\.)"


def guidance_distillation_target(teacher, x_t: torch.Tensor, t: torch.Tensor, cond, w: torch.Tensor) -> torch.Tensor:
    """The teacher's classifier-free-guided output at each sample's own w: what the student regresses.

    ``out_u + w (out_c - out_u)`` with ``out_c = teacher(x_t, t, cond)`` and ``out_u = teacher(x_t, t, None)``
    (the empty prompt), computed without gradients.

    Args:
        teacher: called as ``teacher(x_t, t, cond)``; ``cond=None`` is the null condition.
        x_t: (B, C, H, W) noisy images.
        t: (B,) timesteps.
        cond: the condition of each sample (e.g. ``{"context", "context_mask"}`` of B captions).
        w: (B,) guidance scales, one per sample.

    Returns:
        (B, C, H, W), in ``x_t``'s dtype.
    """
    with torch.no_grad():
        out_c = teacher(x_t, t, cond).to(x_t.dtype)
        out_u = teacher(x_t, t, None).to(x_t.dtype)
        return out_u + expand_like(w.to(x_t.dtype), out_c) * (out_c - out_u)


def guidance_distillation_loss(student, teacher, x_0: torch.Tensor, schedule: NoiseSchedule, *, cond,
                               w_min: float = 1.0, w_max: float = 7.5,
                               generator: torch.Generator | None = None) -> torch.Tensor:
    """Guidance distillation, one Monte-Carlo estimate (Meng et al. 2023, stage one).

    ``t ~ U{0..T-1}``, ``eps ~ N(0, I)``, ``w ~ U[w_min, w_max]`` per sample, ``x_t = sqrt(ab) x_0 + sqrt(1 - ab)
    eps``, and the mean squared error between ``student(x_t, t, cond, w)`` and
    ``guidance_distillation_target(teacher, x_t, t, cond, w)``.

    Args:
        student: called as ``student(x_t, t, cond, w)`` with w (B,) (a ``GuidanceInput``).
        teacher: called as ``teacher(x_t, t, cond)``, ``cond=None`` the null condition; frozen.
        x_0: (B, C, H, W) clean images; moved to the student's device.
        schedule: the teacher's noise schedule.
        cond: the condition of each of the B images.
        w_min, w_max: the range of guidance scales, ``w_min <= w_max``.
        generator: draws t, eps and w, for reproducibility.

    Returns:
        Scalar loss tensor.
    """
    check_tensor("x_0", x_0, ndim=4, floating=True)
    check_schedule("schedule", schedule)
    w_min = check_number("w_min", w_min, minimum=0.0)
    w_max = check_number("w_max", w_max, minimum=w_min)
    device = model_device(student)
    x_0, cond = x_0.to(device), to_device(cond, device)
    B = x_0.shape[0]
    rng = generator.device if generator is not None else device
    t = torch.randint(0, schedule.T, (B,), generator=generator, device=rng).to(device)
    eps = torch.randn(x_0.shape, generator=generator, device=rng, dtype=x_0.dtype).to(device)
    w = (w_min + (w_max - w_min) * torch.rand(B, generator=generator, device=rng, dtype=x_0.dtype)).to(device)
    ab = expand_like(schedule.alphas_cumprod.to(device)[t].to(x_0.dtype), x_0)                  # (B, 1, 1, 1)
    x_t = ab.sqrt() * x_0 + (1 - ab).sqrt() * eps
    target = guidance_distillation_target(teacher, x_t, t, cond, w)
    return F.mse_loss(student(x_t, t, cond, w).float(), target.float())


def tuned_parameter_names(unet: nn.Module, pattern: str = TUNED) -> list[str]:
    """The names of ``unet``'s parameters that match ``pattern`` (``TUNED`` by default), in order."""
    names = [n for n, _ in unet.named_parameters() if re.match(pattern, n)]
    if not names:
        raise ValueError(f"pattern: {pattern!r} matches none of the network's parameters")
    return names


class GuidanceDistilledTextToImage(nn.Module):
    """A guidance-distilled text-to-image model: ``model(x_t, t, cond, w)``, one call per guided output.

    Args:
        net: a ``GuidanceInput`` around a U-Net with ``context_dim`` (the student).
        text_encoder, tokenizer: the frozen text encoder and tokenizer of the teacher (``TextToImage``).

    ``cond`` is ``self.cond(captions)``; ``cond=None`` is the empty prompt. ``at_guidance_scale(w)`` gives a
    network with w fixed, for the course's samplers (which then make one call per step at ``guidance_scale=1``).
    """

    def __init__(self, net: GuidanceInput, text_encoder: nn.Module, tokenizer):
        super().__init__()
        if not isinstance(net, GuidanceInput):
            raise TypeError(f"net: expected a GuidanceInput (the student), got {type(net).__name__}")
        self.net, self.text_encoder, self.tokenizer = net, text_encoder.requires_grad_(False), tokenizer

    @torch.no_grad()
    def cond(self, captions) -> dict:
        """``{"context": (B, L, D), "context_mask": (B, L)}`` for B captions."""
        device = next(self.text_encoder.parameters()).device
        return self.text_encoder(*self.tokenizer.encode(captions, device=device)).cond()

    def forward(self, x_t: torch.Tensor, t, cond: dict | None = None, w=None) -> torch.Tensor:
        """The student's answer (B, C, H, W) at guidance scale w (a number or (B,); default 1)."""
        if cond is None:
            cond = self.cond([""] * x_t.shape[0])
        return self.net(x_t, t, cond, w)

    def at_guidance_scale(self, w: float) -> "FixedGuidance":
        """This model with w fixed: ``model(x_t, t, cond)`` for a sampler."""
        return FixedGuidance(self, w)


class FixedGuidance(nn.Module):
    """A w-input model with w fixed: ``forward(x_t, t, cond) = model(x_t, t, cond, w)``."""

    def __init__(self, model: nn.Module, w: float):
        super().__init__()
        self.model, self.w = model, check_number("w", w)

    def forward(self, x_t: torch.Tensor, t, cond=None) -> torch.Tensor:
        return self.model(x_t, t, cond, self.w)


@register_model
class TunedWeights(nn.Module):
    """The weights guidance distillation changed: w's MLP and the tuned U-Net parameters (what ships).

    ``TunedWeights.from_student(student, names)`` keeps them; ``weights.student(unet)`` puts them back into a
    copy of the teacher's U-Net and returns the ``GuidanceInput``.
    """

    def __init__(self, dim: int, names, shapes):
        super().__init__()
        if len(names) != len(shapes):
            raise ValueError(f"shapes: expected one per name ({len(names)}), got {len(shapes)}")
        self.dim, self.names, self.shapes = int(dim), list(names), [list(s) for s in shapes]
        self.w_embed = nn.Sequential(nn.Linear(1, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.tuned = nn.ParameterList([nn.Parameter(torch.zeros(s)) for s in self.shapes])

    @classmethod
    def from_student(cls, student: GuidanceInput, names) -> "TunedWeights":
        params = dict(student.net.named_parameters())
        out = cls(student.dim, names, [list(params[n].shape) for n in names])
        with torch.no_grad():
            out.w_embed.load_state_dict(student.w_embed.state_dict())
            for p, n in zip(out.tuned, names):
                p.copy_(params[n])
        return out

    def student(self, unet: nn.Module) -> GuidanceInput:
        """A ``GuidanceInput`` around a copy of ``unet`` with these weights in place."""
        net = copy.deepcopy(unet)
        params = dict(net.named_parameters())
        missing = [n for n in self.names if n not in params]
        if missing:
            raise ValueError(f"unet: expected parameters {missing[:3]}..., which it does not have")
        out = GuidanceInput(net, dim=self.dim).to(next(unet.parameters()).device)
        with torch.no_grad():
            for p, n in zip(self.tuned, self.names):
                if params[n].shape != p.shape:
                    raise ValueError(f"unet: parameter {n} has shape {tuple(params[n].shape)}, the stored one "
                                     f"{tuple(p.shape)}")
                params[n].copy_(p.to(params[n]))
            out.w_embed.load_state_dict({k: v.to(params[self.names[0]]) for k, v in self.w_embed.state_dict().items()})
        return out

    def get_config(self) -> dict:
        return {"dim": self.dim, "names": list(self.names), "shapes": [list(s) for s in self.shapes]}

    @classmethod
    def from_config(cls, config: dict) -> "TunedWeights":
        return cls(config["dim"], config["names"], config["shapes"])


def load_guidance_distilled(name: str = "guidance_distilled_shapes16", device=None):
    """The shipped guidance-distilled student on its teacher, both checksum verified.

    Returns:
        ``(model, info)``: a ``GuidanceDistilledTextToImage`` in eval mode (float32), and the file's info with the
        teacher's schedule, T, prediction_type and hold_out.
    """
    from ..conditioning.text_to_image import load_text_to_image
    from ..pretrained import load_pretrained

    weights, info = load_pretrained(name, device=device)
    pipe, pipe_info = load_text_to_image(info["base"], device=device)
    if pipe_info["sha256"] != info["base_sha256"]:
        raise ValueError(f"{name}: distilled from {info['base']} of SHA-256 {info['base_sha256']}, but the shipped "
                         f"one is {pipe_info['sha256']}; retrain it: {info['command']}")
    student = weights.float().student(pipe.unet.float())
    model = GuidanceDistilledTextToImage(student, pipe.text_encoder, pipe.tokenizer).eval()
    return model, {**info, "schedule": pipe_info["schedule"], "T": pipe_info["T"],
                   "prediction_type": pipe_info["prediction_type"], "hold_out": pipe_info["hold_out"]}
