"""Where tensors live (CUDA, then Apple MPS, then CPU, chosen automatically), and which
precision trains faster there.

bf16 autocast is not faster everywhere a CPU can compute it natively: on the same CPU it
can speed up the course's U-Net and slow down its DiT (``bench/train_speed.py`` measures both).
So the automatic choice is measured: ``fastest_autocast_dtype`` times a few training steps
in each candidate precision and keeps the faster, once per model, input shape and device.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable, Hashable

import torch


def get_device(prefer: str | None = None) -> torch.device:
    """The best available device, or ``prefer`` when given ("cuda", "mps", "cpu")."""
    if prefer is not None:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def model_device(model) -> torch.device:
    """The device of ``model``'s first parameter (CPU for a model, or a plain function, without parameters)."""
    params = getattr(model, "parameters", None)
    first = next(iter(params()), None) if callable(params) else None
    return first.device if first is not None else torch.device("cpu")


@functools.lru_cache(maxsize=None)
def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX512-BF16 or AMX).

    On CPUs without it (AVX2-only laptops) bf16 is many times *slower* than fp32; on
    CPUs with it, it depends on the model (see ``fastest_autocast_dtype``).
    """
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast_dtype(device: torch.device | str) -> torch.dtype | None:
    """The lower precision worth *trying* on ``device`` for training, or None when fp32 is the only candidate.

    CPU: bf16 with native bf16 support (whether it is faster depends on the model: measure it
    with ``fastest_autocast_dtype``). CUDA, MPS: None (these small models are launch-bound on a
    GPU; a larger batch helps there, a lower precision does not).
    """
    device = torch.device(device)
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


# key -> (the chosen dtype, {dtype: median seconds per step}), for the life of the process
_measured: dict[Hashable, tuple[torch.dtype | None, dict]] = {}


def fastest_autocast_dtype(step: Callable[[torch.dtype | None], None], candidates, key: Hashable, *,
                           repeats: int = 3, margin: float = 0.05) -> torch.dtype | None:
    """The candidate autocast dtype under which ``step`` runs fastest, measured once per ``key``.

    ``step(dtype)`` runs one training step under ``torch.autocast(dtype=dtype)`` (None: fp32)
    and returns when its work is done. Each candidate runs once to warm up (first calls
    allocate and pick kernels), then ``repeats`` times, alternating between candidates so a
    change in the machine's load falls on both. The first candidate (fp32: the more accurate)
    is kept unless another's median step time is more than ``margin`` shorter (differences of
    a few percent are within the noise of a few steps on a shared machine). ``step`` is
    responsible for leaving the training state as it found it (``dlcourse.loop.measure_precision``
    does).

    Args:
        step: runs one step in the given precision.
        candidates: the dtypes to compare, e.g. ``(None, torch.bfloat16)``.
        key: what the decision is cached under, e.g. (model class, input shapes, device).
        repeats: timed steps per candidate.
        margin: how much faster (a fraction) a later candidate must be to replace an earlier one.

    Returns:
        The faster dtype (None for fp32). ``precision_measurements()`` holds the timings.
    """
    if key in _measured:
        return _measured[key][0]
    candidates = list(candidates)
    for dtype in candidates:
        step(dtype)
    times = {dtype: [] for dtype in candidates}
    for _ in range(repeats):
        for dtype in candidates:
            start = time.perf_counter()
            step(dtype)
            times[dtype].append(time.perf_counter() - start)
    medians = {dtype: statistics.median(ts) for dtype, ts in times.items()}
    best = candidates[0]
    for dtype in candidates[1:]:
        if medians[dtype] < (1 - margin) * medians[best]:
            best = dtype
    _measured[key] = (best, medians)
    return best


def precision_measurements() -> dict:
    """What ``fastest_autocast_dtype`` measured in this process: ``{key: (chosen dtype, {dtype: s/step})}``."""
    return dict(_measured)


def describe() -> str:
    """One line naming the device, for the welcome notebook's environment check."""
    device = get_device()
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(0)})"
    if device.type == "cpu":
        bf16 = "native bf16" if cpu_has_native_bf16() else "no native bf16"
        return f"cpu ({torch.get_num_threads()} threads, {bf16})"
    return device.type
