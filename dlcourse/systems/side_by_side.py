"""The same prompt through several systems of notebook 10, each timed and read by the judge.

A ``System`` is a name, the one idea it stands for, and a function ``generate(prompts, generator)`` that returns
``(B, 3, H, W)`` images in [-1, 1] for B captions, drawing its starting noise from ``generator``. ``run_systems``
sends one prompt through each, times it and reads the images back with the judge::

    systems = load_systems(["sd1", "imagen", "flux"])
    for row in run_systems(systems, "a large red circle at the top left", judge, n=4):
        print(row.name, row.seconds_per_image, row.followed)

``load_systems`` builds the shipped miniatures by name (``SYSTEM_NAMES``); any other ``System`` can join the list.
The prompt box of notebook 10 (``dlcourse.widgets.systems.systems_prompt_box``) shows ``run_systems``' rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch

from ..device import model_device
from ..validation import check_int

__all__ = ["SYSTEM_NAMES", "System", "SystemRun", "load_systems", "run_systems"]


@dataclass(frozen=True)
class System:
    """One system: ``generate(prompts: list[str], generator) -> (B, 3, H, W)`` in [-1, 1].

    Attributes:
        name: what the prompt box shows.
        idea: the key idea, in a few words.
        generate: the sampling function; it draws its starting noise from ``generator`` (a CPU generator).
        calls_per_image: network calls per image (a guided step counts as two).
        tokenizer: optional; its ``encode`` lets ``run_systems`` refuse an unknown word before sampling.
    """

    name: str
    idea: str
    generate: Callable
    calls_per_image: int
    tokenizer: object | None = None


@dataclass(frozen=True)
class SystemRun:
    """One system's answer to one prompt.

    Attributes:
        name, idea, calls_per_image: the system's.
        images: (n, 3, H, W) in [-1, 1], on the CPU.
        seconds_per_image: wall time of the batch over n.
        valid: the fraction of images the judge accepts as a clean shape.
        followed: the fraction that are valid and show the prompt's shape, colour and size (and, when the prompt
            names one, its position): ``prompt_accuracy``'s ``all`` (``all_with_position``).
    """

    name: str
    idea: str
    calls_per_image: int
    images: torch.Tensor
    seconds_per_image: float
    valid: float
    followed: float


def _check_prompt(system: System, prompt: str) -> str:
    if not isinstance(prompt, str):
        raise TypeError(f"prompt: expected a string, got {type(prompt).__name__}")
    if system.tokenizer is not None:
        try:
            system.tokenizer.encode([prompt])
        except ValueError as error:
            raise ValueError(f"prompt: {system.name} cannot read it: {error}") from None
    return prompt


def run_systems(systems, prompt: str, judge, *, n: int = 4, seed: int = 0) -> list[SystemRun]:
    """Send ``prompt`` through each system: n images each, the same seed, timed and judged.

    Args:
        systems: a list of ``System``.
        prompt: a caption in the captions' words (``"a large red circle at the top left"``).
        judge: a ``dlcourse.judge.Judge`` (16 px; larger images are resized for it).
        n: images per system.
        seed: seeds each system's ``torch.Generator``, so a seed gives the same noise to every call.

    Returns:
        One ``SystemRun`` per system, in order.
    """
    from ..conditioning.text_to_image import caption_attributes, prompt_accuracy

    systems = list(systems)
    if not systems or not all(isinstance(s, System) for s in systems):
        raise TypeError(f"systems: expected a non-empty list of System, got "
                        f"{[type(s).__name__ for s in systems] or 'an empty list'}")
    n = check_int("n", n, minimum=1)
    for s in systems:
        _check_prompt(s, prompt)
    wanted = caption_attributes([prompt])
    names = [k for k in ("shape", "color", "scale") if int(wanted[k][0]) < 0]
    if names:
        raise ValueError(f"prompt: expected a caption that names a shape, a colour and a size "
                         f"(\"a large red circle at the top left\"); {prompt!r} names no {', '.join(names)}")
    with_position = int(wanted["position"][0]) >= 0
    runs = []
    for s in systems:
        generator = torch.Generator().manual_seed(seed)
        start = time.perf_counter()
        with torch.no_grad():
            images = s.generate([prompt] * n, generator)
        seconds = (time.perf_counter() - start) / n
        if not (isinstance(images, torch.Tensor) and images.ndim == 4 and images.shape[:2] == (n, 3)):
            raise ValueError(f"systems: {s.name}'s generate returned "
                             f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}"
                             f", expected ({n}, 3, H, W)")
        images = images.detach().float().cpu().clamp(-1, 1)
        acc = prompt_accuracy(judge, images, {k: v.expand(n) for k, v in wanted.items()}) if with_position else \
            _accuracy_without_position(judge, images, wanted, n)
        runs.append(SystemRun(name=s.name, idea=s.idea, calls_per_image=s.calls_per_image, images=images,
                              seconds_per_image=seconds, valid=acc.valid,
                              followed=acc.all_with_position if with_position else acc.all))
    return runs


def _accuracy_without_position(judge, images, wanted, n):
    """``prompt_accuracy`` for a prompt that names no position (any position then counts)."""
    from ..conditioning.text_to_image import prompt_accuracy

    labels = {k: v.expand(n) for k, v in wanted.items()}
    labels["position"] = torch.zeros(n, dtype=torch.long)                    # read, but not counted below
    return prompt_accuracy(judge, images, labels)


SYSTEM_NAMES = ("sd1", "imagen", "sdxl", "dalle3", "flux")


def _sd1(device, steps: int, w: float) -> System:
    from .sd1 import StableDiffusionMini

    pipe = StableDiffusionMini.from_pretrained(device=device)

    def generate(prompts, generator):
        return pipe(prompts, num_inference_steps=steps, guidance_scale=w, generator=generator)

    return System("Stable Diffusion 1.x", "latent diffusion: a U-Net on a VAE's 8x8x4 latents", generate,
                  2 * steps, pipe.tokenizer)


def _imagen(device, steps: int, w: float) -> System:
    from ..conditioning.text_to_image import load_text_to_image
    from ..samplers import sample_ddim
    from ..schedules import get_schedule
    from .imagen import dynamic_threshold

    pipe, info = load_text_to_image("shapes16_unet_text", device=device)
    schedule = get_schedule(info["schedule"], info["T"])

    def generate(prompts, generator):
        x_T = torch.randn((len(prompts), 3, 16, 16), generator=generator).to(model_device(pipe))
        return sample_ddim(pipe, x_T, schedule, steps, cond=pipe.cond(prompts), guidance_scale=w,
                           prediction_type=info["prediction_type"], clip_x0=False, progress=False,
                           threshold_x0=lambda x_0: dynamic_threshold(x_0, 0.9)).cpu()

    return System("Imagen", f"high guidance (w = {w:g}) kept in range by dynamic thresholding (p = 0.9)", generate,
                  2 * steps, pipe.tokenizer)


def _flux(device, steps: int, w: float) -> System:
    from ..samplers import sample_ddim
    from ..schedules import get_schedule
    from .flux import load_guidance_distilled

    model, info = load_guidance_distilled(device=device)
    schedule = get_schedule(info["schedule"], info["T"])
    fixed = model.at_guidance_scale(w)

    def generate(prompts, generator):
        x_T = torch.randn((len(prompts), 3, 16, 16), generator=generator).to(model_device(model))
        return sample_ddim(fixed, x_T, schedule, steps, cond=model.cond(prompts), guidance_scale=1.0,
                           prediction_type=info["prediction_type"], progress=False).cpu()

    return System("Flux", f"guidance distilled: w = {w:g} as an input, one call per step", generate, steps,
                  model.tokenizer)


def _sdxl(device, steps: int, w: float) -> System:
    from .sdxl_text import load_sdxl_text_to_image

    pipe, _ = load_sdxl_text_to_image(device=device)

    def generate(prompts, generator):
        return pipe.generate(prompts, steps, w, generator=generator)

    return System("SDXL", "two text encoders side by side, the second's pooled vector in the time embedding",
                  generate, 2 * steps, pipe.tokenizer)


def _dalle3(device, steps: int, w: float) -> System:
    from ..samplers import sample_ddim
    from ..schedules import get_schedule
    from .dalle3 import load_recaptioning

    pipe, info = load_recaptioning("dalle3_recaptioned_shapes16")
    pipe = pipe.to(device) if device is not None else pipe
    schedule = get_schedule(info["schedule"], info["T"])

    def generate(prompts, generator):
        x_T = torch.randn((len(prompts), 3, 16, 16), generator=generator).to(model_device(pipe))
        return sample_ddim(pipe, x_T, schedule, steps, cond=pipe.cond(prompts), guidance_scale=w,
                           prediction_type=info["prediction_type"], progress=False).cpu()

    return System("DALL-E 3", "trained on a captioner's detailed captions instead of terse, partly wrong alt text",
                  generate, 2 * steps, pipe.tokenizer)


_BUILDERS = {"sd1": (_sd1, 3.0), "imagen": (_imagen, 7.5), "sdxl": (_sdxl, 3.0), "dalle3": (_dalle3, 3.0),
             "flux": (_flux, 3.0)}


def load_systems(names=SYSTEM_NAMES, *, device=None, steps: int = 20) -> list[System]:
    """The shipped miniatures of notebook 10 as ``System`` s.

    Args:
        names: some of ``SYSTEM_NAMES``: ``"sd1"`` (10a: the latent pipeline, DPM-Solver++(2M), w = 3),
            ``"imagen"`` (10b: the pixel text model at w = 7.5 with dynamic thresholding, DDIM), ``"sdxl"`` (10c:
            the two-encoder model, DDIM, w = 3), ``"dalle3"`` (10e: the model trained on recaptions, DDIM,
            w = 3), ``"flux"`` (10b: the guidance-distilled student at w = 3, DDIM, one call per step). SD3's
            MM-DiT ships no weights: notebook 10d trains it.
        device: where the networks run (the CPU by default).
        steps: sampler steps for each.

    Returns:
        A list of ``System``, in the order of ``names``.
    """
    names = [names] if isinstance(names, str) else list(names)
    unknown = [n for n in names if n not in _BUILDERS]
    if unknown or not names:
        raise ValueError(f"names: expected some of {list(SYSTEM_NAMES)}, got {unknown or 'none'}")
    steps = check_int("steps", steps, minimum=1)
    out = []
    for name in names:
        build, w = _BUILDERS[name]
        out.append(build(device, steps, w))
    return out
