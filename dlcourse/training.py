"""Training a denoiser: the course's loss on the general loop of ``dlcourse.loop``.

    result = train(model, data, schedule, seconds=180)
    result.ema_model        # the weights to sample with
    result.losses           # one float per step

``train`` draws random batches of ``data`` (``random_batches``), drops labels for
classifier-free guidance (``drop_labels_transform``) and hands ``fit`` the denoising loss
of ``dlcourse.parameterization.diffusion_loss``. Other objectives (a VAE, latent diffusion,
a frozen text encoder, distillation from a teacher) call ``fit`` with their own loss.

``scale_for_device`` gives the batch size and learning rate to use on a GPU, where a
bigger batch costs almost nothing.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .device import get_device
from .batches import drop_labels_transform, move_batch, random_batches
from .loop import LR_SCHEDULES, PRECISIONS, TrainConfig, TrainResult, fit, measure_precision
from .parameterization import PREDICTION_TYPES, diffusion_loss
from .schedules import NoiseSchedule
from .validation import check_choice, check_labels, check_positive, check_probability, check_tensor

__all__ = ["LR_SCHEDULES", "PRECISIONS", "TrainConfig", "TrainResult", "drop_labels_transform", "fit",
           "measure_precision", "move_batch", "random_batches", "scale_for_device", "train"]


def train(model: nn.Module, data: torch.Tensor, schedule: NoiseSchedule | None, *, steps: int | None = None,
          seconds: float | None = None, batch_size: int = 128, lr: float = 1e-3,
          prediction_type: str = "epsilon", labels: torch.Tensor | None = None, p_uncond: float = 0.0,
          ema_decay: float | None = 0.999, device=None, seed: int = 0, precision: str = "auto",
          progress: bool = True, loss_fn=None, grad_clip: float | None = 1.0,
          min_snr_gamma: float | None = None, channels_last: bool | None = None,
          lr_schedule: str = "constant") -> TrainResult:
    """Train ``model`` to denoise ``data`` with AdamW.

    Args:
        model: a denoiser called as ``model(x_t, t, cond)``; moved to ``device``.
        data: (N, ...) training examples (on any device); random batches are drawn from it.
        schedule: the noise schedule of the default loss (may be None with ``loss_fn``).
        steps: stop after this many optimiser steps.
        seconds: stop once this much wall-clock time has passed (checked after each step).
        batch_size: examples per step.
        lr: AdamW learning rate (the peak one with ``lr_schedule="cosine"``).
        prediction_type: "epsilon", "sample" or "v_prediction" (default loss only).
        labels: (N,) int64 class labels of ``data``, passed to the model as ``cond``.
        p_uncond: probability of replacing a label by the null label ``model.num_classes``,
            so one model learns both the conditional and the unconditional prediction
            (classifier-free guidance, Ho & Salimans 2022).
        ema_decay: decay of the weights' EMA (see ``dlcourse.ema``); None for no EMA.
        device: where to train; the best available (``get_device()``) if None.
        seed: seeds batches, timesteps, noise, label dropout and dropout; the global
            random state is restored afterwards.
        precision: "auto" (bf16 autocast where a few timed steps show it is faster, see
            ``dlcourse.device.fastest_autocast_dtype``), "fp32" or "bf16".
        progress: show a progress bar with the running loss.
        loss_fn: ``loss_fn(model, x_0, cond) -> scalar``, replacing ``diffusion_loss``
            (for flow matching, a VAE, ...); ``cond`` is the batch's labels or None.
        grad_clip: clip the gradient norm to this value; None for no clipping.
        min_snr_gamma: Min-SNR-gamma weighting of the default loss (``diffusion_loss``);
            None for the plain average.
        channels_last: train with the weights and the batches in channels-last memory
            order (N, H, W, C in memory; the shapes do not change). None: for images
            (4-D data) on a CPU, where PyTorch's convolutions run faster so (see
            ``bench/three_minutes.py``). The model is handed back in the usual order.
        lr_schedule: "constant", or "cosine": the learning rate falls from ``lr`` at the
            first step to 0 after ``steps`` along half a cosine (Loshchilov & Hutter 2017,
            without restarts), ``lr_k = lr (1 + cos(pi k / steps)) / 2``. Needs ``steps``.

    Returns:
        A ``TrainResult``. Interrupting (Ctrl-C) returns the steps completed so far
        with ``interrupted=True``.
    """
    check_tensor("data", data, floating=True)
    if data.ndim < 2 or data.shape[0] == 0:
        raise ValueError(f"data: expected (N, ...) examples with N >= 1, got shape {tuple(data.shape)}")
    device = get_device() if device is None else torch.device(device)
    if channels_last is None:
        channels_last = data.ndim == 4 and device.type == "cpu"
    config = TrainConfig(steps=steps, seconds=seconds, lr=lr, lr_schedule=lr_schedule, ema_decay=ema_decay,
                         grad_clip=grad_clip, precision=precision, seed=seed, device=device,
                         channels_last=channels_last, progress=progress)
    check_positive("batch_size", batch_size, integer=True)
    check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
    if loss_fn is None and schedule is None:
        raise ValueError("schedule: needed by the default loss (pass loss_fn to train without one)")
    if labels is not None:
        check_labels("labels", labels, n=data.shape[0])
    p_uncond = check_probability("p_uncond", p_uncond)
    null_label = getattr(model, "num_classes", None)
    if p_uncond > 0 and (labels is None or null_label is None):
        raise ValueError("p_uncond: label dropout needs labels and a model built with num_classes")

    if loss_fn is None:
        schedule_d = schedule.to(device)

        def loss_fn(model, x_0, cond):
            return diffusion_loss(model, x_0, schedule_d, prediction_type=prediction_type, cond=cond,
                                  min_snr_gamma=min_snr_gamma)

    def batch_loss(model, batch):
        return loss_fn(model, batch["x_0"], batch.get("labels"))

    transform = drop_labels_transform(p_uncond, null_label) if p_uncond > 0 else None
    batches = random_batches(data, labels, batch_size=batch_size, transform=transform)
    return fit(model, batches, batch_loss, config)


GPU_BATCH_FACTOR = 16
GPU_MAX_BATCH = 2048


def scale_for_device(batch_size: int, lr: float, device=None) -> tuple[int, float]:
    """The batch size and learning rate to train with on ``device``, given those chosen for a CPU.

    On a GPU the course's small models are limited by kernel launches, not arithmetic: one
    step of the 16 px U-Net costs about the same from batch 128 to 2,048 and several times
    more at 8,192 (``bench/train_speed.py --device cuda``). So the same minutes see many more
    images with a bigger batch. The rule on CUDA:

        batch = min(16 * batch_size, max(batch_size, 2048))
        lr    = lr * sqrt(batch / batch_size)

    i.e. 16 times the batch, at most 2,048 (where the step rate starts to fall), never less
    than given; the learning rate by the square-root rule for Adam-type optimisers (the
    gradient noise falls as 1 / sqrt(batch); Malladi et al. 2022). On a CPU or MPS both come
    back unchanged: there the step time grows with the batch.

    Args:
        batch_size: the batch size used on a CPU.
        lr: the learning rate used with it.
        device: the training device; the best available (``get_device()``) if None.

    Returns:
        ``(batch_size, lr)`` for ``device``.
    """
    check_positive("batch_size", batch_size, integer=True)
    check_positive("lr", lr)
    device = get_device() if device is None else torch.device(device)
    if device.type != "cuda":
        return batch_size, lr
    scaled = min(GPU_BATCH_FACTOR * batch_size, max(batch_size, GPU_MAX_BATCH))
    return scaled, lr * math.sqrt(scaled / batch_size)
