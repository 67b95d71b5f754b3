"""Forward and back: a Play button that corrupts an image into noise and brings it back (notebook 01).

A plain, tested computation sits under a one-line builder:

    forward_reverse_frames(x_0, schedule)  -> the film: one Frame per shown step, PNGs ready
    forward_reverse_player(x_0, schedule)  -> a Play button and a slider over those frames

The forward half is the one-step chain ``x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) eps``
(Ho et al. 2020, eq. 2); the way back samples the exact posterior ``q(x_{t-1} | x_t, x_0)``
(eq. 7), the denoiser a network will have to learn. While nbgrader executes a notebook the
builder builds nothing (``_base.skip_while_grading``); in fast mode it shows fewer frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..fast import pick
from ..forward import corrupt_and_restore
from ..plotting import to_uint8
from ..schedules import NoiseSchedule
from ..validation import check_int, check_schedule
from ._base import check_image, png_bytes, skip_while_grading

__all__ = ["Frame", "ForwardReverseFrames", "forward_reverse_frames", "forward_reverse_player"]


def _frame_stats(images: torch.Tensor, x_0: torch.Tensor):
    """Per-frame correlation with x_0 and pixel std of images (F, C, H, W), in one batch."""
    a = images.double().flatten(1)  # (F, C*H*W)
    b = x_0.double().flatten()
    a_c, b_c = a - a.mean(1, keepdim=True), b - b.mean()
    corr = (a_c @ b_c) / (a_c.norm(dim=1) * b_c.norm()).clamp_min(1e-12)
    return corr.tolist(), a.std(1).tolist()


@dataclass
class Frame:
    """One frame of the forward-reverse film.

    ``t = -1`` marks the clean image x_0 (before step 0), at the film's start and end.
    ``corr`` is the correlation of the frame's pixels with x_0's, ``std`` their spread.
    """

    phase: str  # "forward" or "reverse"
    t: int
    alpha_bar: float
    label: str
    image: torch.Tensor  # (C, H, W)
    corr: float
    std: float
    png: bytes


@dataclass
class ForwardReverseFrames:
    """The frames to show: the forward half (clean, then t rising to T-1), then the reverse half."""

    frames: list[Frame]
    T: int

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> Frame:
        return self.frames[i]

    def half(self, phase: str) -> list[Frame]:
        """The frames of one half, "forward" or "reverse", in film order."""
        return [f for f in self.frames if f.phase == phase]

    def images(self, phase: str | None = None) -> torch.Tensor:
        """(F, C, H, W) the frames' images (of one half if ``phase`` is given), for ``show_images``."""
        frames = self.frames if phase is None else self.half(phase)
        return torch.stack([f.image for f in frames])


def forward_reverse_frames(x_0: torch.Tensor, schedule: NoiseSchedule, n_frames: int = 40, seed: int = 0,
                           display_size: int = 256) -> ForwardReverseFrames:
    """Corrupt an image into noise with the one-step chain, and bring it back.

    Runs :func:`dlcourse.forward.corrupt_and_restore`: ``x_t = sqrt(alpha_t) x_{t-1} +
    sqrt(beta_t) eps`` for t = 0..T-1, then ``x_{t-1} ~ q(x_{t-1} | x_t, x_0)`` back down.
    Keeps ``n_frames`` frames of each half: the clean image and ``n_frames - 1``
    timesteps evenly spaced from 0 to T-1 (forward), then the same timesteps from T-1
    down to 0 and the clean image (reverse), each with its PNG ready for display.

    Args:
        x_0: (C, H, W) clean image in [-1, 1], C = 1 or 3.
        schedule: the noise schedule (its T sets the chain's length).
        n_frames: frames per half, at least 2.
        seed: seed of the chain's noise.
        display_size: PNGs are enlarged (nearest neighbour) to about this many pixels.
    """
    x_0 = check_image("x_0", x_0)                                               # (C, H, W) on the CPU
    schedule = check_schedule("schedule", schedule)
    check_int("n_frames", n_frames, minimum=2)       # the clean image and at least one noisy step
    T = schedule.T
    gen = torch.Generator().manual_seed(seed)
    forward, backward = corrupt_and_restore(x_0[None], schedule.to("cpu"), generator=gen)  # (T, 1, C, H, W)
    ts = np.unique(np.round(np.linspace(0, T - 1, n_frames - 1)).astype(int)).tolist()
    ab = schedule.alphas_cumprod.cpu()
    # Film order: clean, forward t rising, reverse t falling, clean again. q(x_{-1} | x_0, x_0)
    # has zero variance, so the reverse chain's last step lands exactly on x_0.
    order = ([("forward", -1)] + [("forward", t) for t in ts]
             + [("reverse", t) for t in reversed(ts)] + [("reverse", -1)])
    images = torch.stack([x_0 if t < 0 else (forward if phase == "forward" else backward)[t, 0]
                          for phase, t in order])  # (F, C, H, W)
    corr, std = _frame_stats(images, x_0)
    pixels = to_uint8(images)  # (F, H, W, 3) or (F, H, W), converted in one batch
    frames = []
    for i, (phase, t) in enumerate(order):
        alpha_bar = 1.0 if t < 0 else float(ab[t])
        where = f"t = {t} / {T - 1}, alpha_bar = {alpha_bar:.4g}"
        if phase == "forward":
            label = "forward: clean image x_0" if t < 0 else f"forward {where}"
        else:
            label = "reverse (exact posterior): back at x_0" if t < 0 else f"reverse (exact posterior) {where}"
        frames.append(Frame(phase, t, alpha_bar, label, images[i], corr[i], std[i],
                            png_bytes(pixels[i], display_size)))
    return ForwardReverseFrames(frames, T)


def forward_reverse_player(x_0: torch.Tensor, schedule: NoiseSchedule, n_frames: int | None = None,
                           seed: int = 0, interval_ms: int = 120):
    """A Play button and a slider that run the image into noise and back.

    Args:
        x_0: (C, H, W) clean image in [-1, 1].
        schedule: the noise schedule.
        n_frames: frames per half; 40 by default, 12 in fast mode.
        seed: seed of the chain's noise.
        interval_ms: time per frame while playing.

    Returns:
        An ``ipywidgets.VBox`` (display it, or make it the cell's last line) whose
        attributes ``play``, ``slider``, ``label``, ``image`` and ``frames`` are its
        parts; None while nbgrader executes the notebook.
    """
    if skip_while_grading():
        return None
    import ipywidgets as w

    frames = forward_reverse_frames(x_0, schedule, n_frames=pick(40, 12) if n_frames is None else n_frames,
                                    seed=seed)
    last = len(frames) - 1
    play = w.Play(value=0, min=0, max=last, step=1, interval=interval_ms, description="play")
    slider = w.IntSlider(value=0, min=0, max=last, step=1, description="frame", readout=True)
    w.jslink((play, "value"), (slider, "value"))  # the browser moves the slider while playing
    label = w.Label(value=frames[0].label)
    image = w.Image(value=frames[0].png, format="png")

    def on_frame(change):
        f = frames[change["new"]]
        image.value = f.png  # only swap precomputed bytes: smooth playback
        label.value = f.label

    slider.observe(on_frame, names="value")
    box = w.VBox([w.HBox([play, slider]), label, image])
    box.play, box.slider, box.label, box.image, box.frames = play, slider, label, image, frames
    return box
