"""Where tensors live: CUDA, then Apple MPS, then CPU, chosen automatically."""

from __future__ import annotations

import functools

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

    On such CPUs bf16 autocast speeds up small models; on CPUs without it
    (AVX2-only laptops) bf16 is many times *slower* than fp32, so use fp32 there.
    """
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast_dtype(device: torch.device | str) -> torch.dtype | None:
    """The dtype to autocast to on ``device`` for training, or None for fp32.

    CPU: bf16 only with native bf16 support. CUDA: None (these small models are
    launch-bound on a GPU; larger batches help there, lower precision does not).
    """
    device = torch.device(device)
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def describe() -> str:
    """One line naming the device, for the welcome notebook's environment check."""
    device = get_device()
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(0)})"
    if device.type == "cpu":
        bf16 = "native bf16" if cpu_has_native_bf16() else "no native bf16"
        return f"cpu ({torch.get_num_threads()} threads, {bf16})"
    return device.type
