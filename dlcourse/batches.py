"""Where ``fit``'s batches come from and how they change on the way: random batches from
in-memory tensors, label dropout for classifier-free guidance, the move to the device.

    batches = random_batches(images, labels, batch_size=32,
                             transform=drop_labels_transform(0.1, null_label=10))
    next(batches)     # {"x_0": (32, C, H, W), "labels": (32,)}, about 10% of the labels 10

A batch is a tensor, or a dict, tuple or list of them (and of other values, such as
captions, that pass through); ``loss_fn(model, batch)`` decides what it means.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .guidance import drop_labels
from .validation import check_int, check_labels, check_positive, check_probability, check_tensor


def random_batches(data: torch.Tensor, labels: torch.Tensor | None = None, *, batch_size: int,
                   transform: Callable[[dict], dict] | None = None):
    """Endless batches of examples drawn uniformly with replacement from in-memory tensors.

    The indices come from torch's global random state, which ``fit`` seeds with its
    ``seed`` (and restores afterwards), so a run is repeatable.

    Args:
        data: (N, ...) floating-point examples, on any device (the batch stays there; ``fit``
            moves it).
        labels: (N,) integer labels of ``data``, or None.
        batch_size: examples per batch.
        transform: applied to every batch, e.g. ``drop_labels_transform(0.1, null_label=10)``.

    Yields:
        ``{"x_0": (batch_size, ...), "labels": (batch_size,)}`` ("labels" only when given).
    """
    check_tensor("data", data, floating=True)
    if data.ndim < 2 or data.shape[0] == 0:
        raise ValueError(f"data: expected (N, ...) examples with N >= 1, got shape {tuple(data.shape)}")
    if labels is not None:
        check_labels("labels", labels, n=data.shape[0])
    check_positive("batch_size", batch_size, integer=True)

    def generate():
        while True:
            idx = torch.randint(0, data.shape[0], (batch_size,), device=data.device)    # (batch_size,)
            batch = {"x_0": data[idx]}
            if labels is not None:
                batch["labels"] = labels[idx.to(labels.device)]
            yield batch if transform is None else transform(batch)

    return generate()


def drop_labels_transform(p_uncond: float, null_label: int, *, key: str | int = "labels"):
    """A batch transform that replaces each label by ``null_label`` with probability ``p_uncond``.

    Label dropout lets one model learn both the conditional and the unconditional
    prediction (classifier-free guidance, Ho & Salimans 2022); the draws are
    ``dlcourse.guidance.drop_labels``'s, from torch's global random state.

    Args:
        p_uncond: probability of dropping each label; 0 returns every batch as it came.
        null_label: the label meaning "no condition" (``model.num_classes``).
        key: where the labels are in a batch: a dict key, or an index into a tuple.

    Returns:
        ``transform(batch) -> batch``, a new batch whose ``batch[key]`` (B,) has labels dropped.
    """
    p_uncond = check_probability("p_uncond", p_uncond)
    null_label = check_int("null_label", null_label, minimum=0)

    def transform(batch):
        if p_uncond == 0:
            return batch
        dropped = drop_labels(batch[key], p_uncond, null_label)
        if isinstance(batch, dict):
            return {**batch, key: dropped}
        items = list(batch)
        items[key] = dropped
        return type(batch)(items)

    return transform


def move_batch(batch, device: torch.device, channels_last: bool = False):
    """``batch`` (a tensor, or a dict, tuple or list of them) with every tensor on ``device``.

    With ``channels_last``, 4-D floating tensors (B, C, H, W) are made channels-last in memory.
    Values that are not tensors (captions, None) pass through.
    """
    if isinstance(batch, torch.Tensor):
        x = batch.to(device, non_blocking=True)
        if channels_last and x.ndim == 4 and x.is_floating_point():
            x = x.contiguous(memory_format=torch.channels_last)
        return x
    if isinstance(batch, dict):
        return {k: move_batch(v, device, channels_last) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        items = [move_batch(v, device, channels_last) for v in batch]
        return type(batch)(*items) if hasattr(batch, "_fields") else type(batch)(items)
    return batch


def batch_tensors(batch, prefix=""):
    """(path, tensor) for every tensor in a (nested) batch."""
    if isinstance(batch, torch.Tensor):
        return [(prefix, batch)]
    if isinstance(batch, dict):
        return [pair for k, v in batch.items() for pair in batch_tensors(v, f"{prefix}/{k}")]
    if isinstance(batch, (tuple, list)):
        return [pair for i, v in enumerate(batch) for pair in batch_tensors(v, f"{prefix}/{i}")]
    return []
