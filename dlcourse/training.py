"""A plain training loop for denoisers: sample a batch, compute the loss, step.

    result = train(model, data, schedule, seconds=180)
    result.ema_model        # the weights to sample with
    result.losses           # one float per step

The loop is deliberately ordinary (AdamW, gradient clipping, an EMA of the
weights), so it can be read in one sitting. What it adds for a course:

- a budget in steps or seconds, whichever is reached first;
- the device chosen automatically, the data moved one batch at a time;
- bf16 autocast only where it helps (``dlcourse.device.autocast_dtype``);
- Ctrl-C (Jupyter's "interrupt") stops cleanly and returns what was trained;
- ``seed`` makes the run repeatable without touching the global random state.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from .device import autocast_dtype, get_device
from .ema import EMA
from .guidance import drop_labels
from .parameterization import PREDICTION_TYPES, diffusion_loss
from .schedules import NoiseSchedule
from .validation import check_choice, check_positive, check_tensor

PRECISIONS = ("auto", "fp32", "bf16")
LR_SCHEDULES = ("constant", "cosine")


@dataclass
class TrainResult:
    """What ``train`` returns.

    Attributes:
        model: the trained model (in eval mode, on the training device).
        ema_model: the EMA copy (None when ``ema_decay`` is None).
        losses: the loss of every completed step.
        steps: number of completed optimiser steps.
        seconds: wall-clock time of the loop.
        steps_per_second: ``steps / seconds``.
        interrupted: True if a KeyboardInterrupt stopped the loop.
        device: the device trained on, e.g. "cpu".
        precision: "fp32" or "bf16" (autocast), as actually used.
    """

    model: nn.Module
    ema_model: nn.Module | None
    losses: list = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    steps_per_second: float = 0.0
    interrupted: bool = False
    device: str = "cpu"
    precision: str = "fp32"


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` ("auto", "fp32", "bf16") on ``device``; None = fp32."""
    check_choice("precision", precision, PRECISIONS)
    if precision == "auto":
        return autocast_dtype(device)
    return torch.bfloat16 if precision == "bf16" else None


def _fork_rng(device: torch.device):
    """Save and later restore the global RNG state of the CPU and of ``device``."""
    if device.type == "cpu":
        return torch.random.fork_rng(devices=[])
    return torch.random.fork_rng(devices=[device.index or 0], device_type=device.type)


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
        precision: "auto" (bf16 autocast where ``autocast_dtype`` says it is faster),
            "fp32" or "bf16".
        progress: show a progress bar with the running loss.
        loss_fn: ``loss_fn(model, x_0, cond) -> scalar``, replacing ``diffusion_loss``
            (for flow matching, a VAE, ...).
        grad_clip: clip the gradient norm to this value; None for no clipping.
        min_snr_gamma: Min-SNR-gamma weighting of the default loss (``diffusion_loss``);
            None for the plain average.
        channels_last: train with the weights and the batches in channels-last memory
            order (N, H, W, C in memory; the shapes do not change). None: for images
            (4-D data) on a CPU, where PyTorch's convolutions run faster so (the shapes
            U-Net: 19 instead of 16 steps/s on 2 cores; ``bench/three_minutes.py``).
            The model is handed back in the usual order.
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
    if steps is None and seconds is None:
        raise ValueError("steps, seconds: give a budget, at least one of them")
    if steps is not None:
        check_positive("steps", steps, integer=True)
    if seconds is not None:
        check_positive("seconds", seconds)
    check_positive("batch_size", batch_size, integer=True)
    check_positive("lr", lr)
    check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
    check_choice("lr_schedule", lr_schedule, LR_SCHEDULES)
    if lr_schedule == "cosine" and steps is None:
        raise ValueError("lr_schedule: 'cosine' decays over a number of steps; give steps, not only seconds")
    if loss_fn is None and schedule is None:
        raise ValueError("schedule: needed by the default loss (pass loss_fn to train without one)")
    if labels is not None:
        check_tensor("labels", labels, shape=(data.shape[0],))
        if labels.is_floating_point():
            raise TypeError(f"labels: expected integer class labels, got dtype {labels.dtype}")
    if not 0.0 <= p_uncond <= 1.0:
        raise ValueError(f"p_uncond: expected a probability in [0, 1], got {p_uncond}")
    null_label = getattr(model, "num_classes", None)
    if p_uncond > 0 and (labels is None or null_label is None):
        raise ValueError("p_uncond: label dropout needs labels and a model built with num_classes")

    device = get_device() if device is None else torch.device(device)
    dtype = resolve_precision(precision, device)
    if channels_last is None:
        channels_last = data.ndim == 4 and device.type == "cpu"
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model.to(device, memory_format=memory_format).train()
    if loss_fn is None:
        schedule_d = schedule.to(device)

        def loss_fn(model, x_0, cond):
            return diffusion_loss(model, x_0, schedule_d, prediction_type=prediction_type, cond=cond,
                                  min_snr_gamma=min_snr_gamma)

    # fused=True: one kernel for all parameters instead of a Python loop over them
    # (several ms per step for a small model on a CPU).
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, fused=device.type in ("cpu", "cuda"))
    ema = EMA(model, ema_decay) if ema_decay is not None else None
    autocast = (torch.autocast(device_type=device.type, dtype=dtype) if dtype is not None
                else contextlib.nullcontext())
    losses, done, interrupted = [], 0, False
    bar = tqdm(total=steps, disable=not progress, desc="training", unit="step")
    running = None
    start = time.perf_counter()
    with _fork_rng(device):
        torch.manual_seed(seed)
        try:
            while steps is None or done < steps:
                idx = torch.randint(0, data.shape[0], (batch_size,), device=data.device)
                x_0 = data[idx].to(device, non_blocking=True)                    # (batch_size, ...)
                if channels_last:
                    x_0 = x_0.contiguous(memory_format=torch.channels_last)
                cond = None
                if labels is not None:
                    cond = labels[idx.to(labels.device)].to(device)              # (batch_size,)
                    if p_uncond > 0:                                             # classifier-free guidance
                        cond = drop_labels(cond, p_uncond, null_label)
                with autocast:
                    loss = loss_fn(model, x_0, cond)
                if lr_schedule == "cosine":
                    for group in optimizer.param_groups:
                        group["lr"] = lr * (1 + math.cos(math.pi * done / steps)) / 2
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if grad_clip is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                optimizer.step()
                if ema is not None:
                    ema.update(model)
                done += 1
                losses.append(loss.item())
                running = losses[-1] if running is None else 0.98 * running + 0.02 * losses[-1]
                bar.update(1)
                if done % 10 == 0:
                    bar.set_postfix(loss=f"{running:.4f}")
                if seconds is not None and time.perf_counter() - start >= seconds:
                    break
        except KeyboardInterrupt:
            interrupted = True
        finally:
            bar.close()
    elapsed = time.perf_counter() - start
    model.eval()
    if channels_last:
        model.to(memory_format=torch.contiguous_format)
        if ema is not None:
            ema.model.to(memory_format=torch.contiguous_format)
    if interrupted:
        print(f"Interrupted after {done} steps; returning the model trained so far.")
    return TrainResult(model=model, ema_model=ema.model if ema is not None else None, losses=losses,
                       steps=done, seconds=elapsed, steps_per_second=done / elapsed if elapsed > 0 else 0.0,
                       interrupted=interrupted, device=str(device),
                       precision="bf16" if dtype == torch.bfloat16 else "fp32")
