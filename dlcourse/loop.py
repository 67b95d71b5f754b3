"""A training loop that takes any loss: batches in, ``loss_fn(model, batch)`` out.

    config = TrainConfig(seconds=180, lr=1e-3)
    result = fit(model, random_batches(images, labels, batch_size=32), my_loss, config)
    result.ema_model        # the weights to sample with
    result.losses           # one float per step

Each step: move the batch to the device, compute the loss under autocast, backpropagate,
clip the gradient norm, take an AdamW step (Loshchilov & Hutter 2019), update an
exponential moving average of the weights (``dlcourse.ema``). What the loop adds for a course:

- a budget in steps or seconds, whichever is reached first;
- Ctrl-C (Jupyter's "interrupt") stops cleanly and returns what was trained;
- ``seed`` makes the run repeatable without touching the global random state;
- only trainable parameters are optimised, so a frozen part (``requires_grad_(False)``:
  a text encoder, ControlNet's base) stays as it was;
- ``precision="auto"`` measures whether bf16 autocast is faster for this model (see
  ``dlcourse.device.fastest_autocast_dtype``).

Everything specific to a model lives in ``loss_fn``: a denoiser's loss (``dlcourse.training.train``),
a VAE's, one that encodes to latents first, or one that asks a teacher network. Batch
sources and transforms such as label dropout (``dlcourse.batches``) change the batches, not the loop.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from .batches import batch_tensors, move_batch
from .device import autocast_dtype, fastest_autocast_dtype, get_device
from .ema import EMA
from .fast import fast_mode
from .validation import check_choice, check_int, check_number, check_positive

PRECISIONS = ("auto", "fp32", "bf16")
LR_SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class TrainConfig:
    """How ``fit`` trains (the batch size belongs to the batch source, e.g. ``random_batches``).

    Attributes:
        steps: stop after this many optimiser steps.
        seconds: stop once this much wall-clock time has passed (checked after each step;
            the few steps ``precision="auto"`` times beforehand are not counted).
        lr: AdamW learning rate (the peak one with ``lr_schedule="cosine"``).
        lr_schedule: "constant", or "cosine": ``lr_k = lr (1 + cos(pi k / steps)) / 2`` at step
            k = 0 .. steps - 1, half a cosine from ``lr`` towards 0 (Loshchilov & Hutter 2017,
            without restarts). Needs ``steps``.
        weight_decay: AdamW's decoupled weight decay.
        ema_decay: decay of the weights' EMA (``dlcourse.ema``); None for no EMA.
        grad_clip: clip the gradient norm to this value; None for no clipping.
        precision: "auto" (bf16 autocast where it is measured to be faster), "fp32" or "bf16".
        seed: seeds everything the loop draws from torch's global random state (batches,
            noise, dropout); that state is restored afterwards.
        device: where to train; the best available (``get_device()``) if None.
        channels_last: keep the weights and 4-D floating batch tensors in channels-last
            memory order (N, H, W, C in memory; shapes do not change); the model is handed back
            in the usual order.
        progress: show a progress bar with the running loss.
    """

    steps: int | None = None
    seconds: float | None = None
    lr: float = 1e-3
    lr_schedule: str = "constant"
    weight_decay: float = 0.01
    ema_decay: float | None = 0.999
    grad_clip: float | None = 1.0
    precision: str = "auto"
    seed: int = 0
    device: str | torch.device | None = None
    channels_last: bool = False
    progress: bool = True

    def __post_init__(self):
        if self.steps is None and self.seconds is None:
            raise ValueError("steps, seconds: give a budget, at least one of them")
        if self.steps is not None:
            check_positive("steps", self.steps, integer=True)
        if self.seconds is not None:
            check_positive("seconds", self.seconds)
        check_positive("lr", self.lr)
        check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        if self.lr_schedule == "cosine" and self.steps is None:
            raise ValueError("lr_schedule: 'cosine' decays over a number of steps; give steps, not only seconds")
        check_number("weight_decay", self.weight_decay, minimum=0)
        if self.ema_decay is not None:
            check_number("ema_decay", self.ema_decay, minimum=0)
            if self.ema_decay >= 1:
                raise ValueError(f"ema_decay: expected a value in [0, 1) or None, got {self.ema_decay}")
        if self.grad_clip is not None:
            check_positive("grad_clip", self.grad_clip)
        check_choice("precision", self.precision, PRECISIONS)
        check_int("seed", self.seed)


@dataclass
class TrainResult:
    """What ``fit`` (and ``dlcourse.training.train``) returns.

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


def _fork_rng(device: torch.device):
    """Save and later restore the global RNG state of the CPU and of ``device``."""
    if device.type == "cpu":
        return torch.random.fork_rng(devices=[])
    return torch.random.fork_rng(devices=[device.index or 0], device_type=device.type)


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device_type=device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def _step(model, batch, loss_fn, optimizer, params, device, dtype, grad_clip) -> torch.Tensor:
    """One optimiser step; returns the loss (a scalar tensor, before the step)."""
    with _autocast(device, dtype):
        loss = loss_fn(model, batch)
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
        got = f"shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise ValueError(f"loss_fn: expected a scalar tensor, got {got}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()
    return loss


def _optimizer(params, config: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    # fused=True: one kernel for all parameters instead of a Python loop over them
    # (several ms per step for a small model on a CPU).
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay,
                             fused=device.type in ("cpu", "cuda"))


def measure_precision(model: nn.Module, batch, loss_fn, config: TrainConfig) -> torch.dtype | None:
    """The faster of fp32 and the device's bf16 candidate for training ``model`` on ``batch``.

    Times a few steps of each (``dlcourse.device.fastest_autocast_dtype``; cached per model
    class, parameter count, batch shapes and device for the process) with a scratch optimiser,
    then puts back the weights, drops the gradients and restores the random state, so the
    measurement changes neither the training nor its random numbers. ``model`` and ``batch``
    must already be on the training device.

    Returns:
        None (fp32) or ``torch.bfloat16``.
    """
    device = get_device() if config.device is None else torch.device(config.device)
    candidate = autocast_dtype(device)
    if candidate is None:
        return None
    params = [p for p in model.parameters() if p.requires_grad]
    shapes = tuple(sorted((str(k), tuple(v.shape)) for k, v in batch_tensors(batch)))
    key = (type(model).__qualname__, sum(p.numel() for p in params), shapes, str(device))
    saved = copy.deepcopy(model.state_dict())
    scratch = _optimizer(params, config, device)

    def step(dtype):
        _step(model, batch, loss_fn, scratch, params, device, dtype, config.grad_clip).item()

    try:
        with _fork_rng(device):
            return fastest_autocast_dtype(step, (None, candidate), key)
    finally:
        model.load_state_dict(saved)
        for p in params:
            p.grad = None


def _end_bar_at_time_budget(bar, done: int, seconds: float) -> None:
    """Stopping at the time budget is the plan, not a failure: the bar ends full, saying so.

    (A notebook's bar left short of its step budget ends red, as after an error.)
    """
    if not bar.disable and bar.total and done < bar.total:
        why = "fast mode's" if fast_mode() else "the"
        bar.set_description(f"training: stopped at {why} {seconds:g} s budget after {done} of {bar.total} steps")
        bar.total = done
        bar.refresh()


def fit(model: nn.Module, batches: Iterable, loss_fn: Callable, config: TrainConfig) -> TrainResult:
    """Train ``model`` with AdamW on ``loss_fn`` over ``batches`` until the budget is spent.

    Args:
        model: any ``nn.Module``; moved to the device and put in train mode. Its parameters
            with ``requires_grad=False`` are not optimised (nor changed).
        batches: an iterable of batches: a tensor, or a dict, tuple or list of tensors (and
            other values, passed through); each is moved to the device. Training stops early
            if it runs out. Drawn inside the loop, so ``random_batches`` is seeded by ``config.seed``.
        loss_fn: ``loss_fn(model, batch) -> scalar tensor``, called under autocast.
        config: a ``TrainConfig`` (budget, optimiser, EMA, precision, seed, device).

    Returns:
        A ``TrainResult``. Interrupting (Ctrl-C) returns the steps completed so far with
        ``interrupted=True``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn: expected a function loss_fn(model, batch) -> scalar, got {type(loss_fn).__name__}")
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config: expected a TrainConfig, got {type(config).__name__}")
    device = get_device() if config.device is None else torch.device(config.device)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model.to(device, memory_format=memory_format).train()
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model: expected some parameters with requires_grad=True, got none to train "
                         "(an EMA copy, TrainResult.ema_model, is frozen: call .requires_grad_(True) on it, "
                         "or on a copy, to train it further)")
    optimizer = _optimizer(params, config, device)
    dtype = {"fp32": None, "bf16": torch.bfloat16}.get(config.precision)
    steps, ema, losses, pending, done, interrupted = config.steps, None, [], [], 0, False
    bar = tqdm(total=steps, disable=not config.progress, desc="training", unit="step")
    start = time.perf_counter()
    with _fork_rng(device):
        torch.manual_seed(config.seed)
        try:
            batches = iter(batches)
            while steps is None or done < steps:
                try:
                    batch = move_batch(next(batches), device, config.channels_last)
                except StopIteration:
                    break
                if done == 0 and config.precision == "auto":
                    dtype = measure_precision(model, batch, loss_fn, config)
                    start = time.perf_counter()               # the budget is for training
                if done == 0 and config.ema_decay is not None:
                    ema = EMA(model, config.ema_decay)
                if config.lr_schedule == "cosine":
                    for group in optimizer.param_groups:
                        group["lr"] = config.lr * (1 + math.cos(math.pi * done / steps)) / 2
                loss = _step(model, batch, loss_fn, optimizer, params, device, dtype, config.grad_clip)
                if ema is not None:
                    ema.update(model)
                done += 1
                pending.append(loss.detach())
                if done % 10 == 0:                                # read losses back every 10 steps
                    losses += [v.item() for v in pending]         # (one wait for a GPU, not ten)
                    pending = []
                    bar.set_postfix(loss=f"{sum(losses[-10:]) / 10:.4f}")
                bar.update(1)
                if config.seconds is not None and time.perf_counter() - start >= config.seconds:
                    _end_bar_at_time_budget(bar, done, config.seconds)
                    break
        except KeyboardInterrupt:
            interrupted = True
        finally:
            bar.close()
            losses += [v.item() for v in pending]
    elapsed = time.perf_counter() - start
    if ema is None and config.ema_decay is not None:                 # no step was taken
        ema = EMA(model, config.ema_decay)
    model.eval()
    if config.channels_last:
        model.to(memory_format=torch.contiguous_format)
        if ema is not None:
            ema.model.to(memory_format=torch.contiguous_format)
    if interrupted:
        print(f"Interrupted after {done} steps; returning the model trained so far.")
    return TrainResult(model=model, ema_model=ema.model if ema is not None else None, losses=losses,
                       steps=done, seconds=elapsed, steps_per_second=done / elapsed if elapsed > 0 else 0.0,
                       interrupted=interrupted, device=str(device),
                       precision="bf16" if dtype == torch.bfloat16 else "fp32")
