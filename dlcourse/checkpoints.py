"""Saving and loading trained models safely.

    digest = save_checkpoint("unet.pt", model, model_config(model, prediction_type="epsilon"))
    model = build_model(load_checkpoint("unet.pt"))

Three habits worth learning with the code:

1. **Atomic writes.** The checkpoint is written to a temporary file in the same
   directory and moved into place with ``os.replace``, which is atomic: a crash or
   a full disk mid-save leaves the previous checkpoint intact, never half a file
   (``dlcourse.files.atomic_write``).
2. **A digest, checked before loading.** The SHA-256 of the file is written next to
   it (``<path>.sha256``, in ``sha256sum`` format) and verified before a single byte
   is unpickled, so a corrupt download or a modified file is refused.
3. **``weights_only=True``.** A pickle can run arbitrary code when loaded; PyTorch's
   weights-only loader accepts only tensors and plain containers. So the config
   must be plain types, and ``build_model`` rebuilds only classes registered with
   ``dlcourse.models.register_model``, never an import path taken from the file.
"""

from __future__ import annotations

import hmac
import io
from pathlib import Path

import torch
from torch import nn

from .files import atomic_write_bytes, sha256_bytes, sha256_file
from .models.common import MODELS
from .validation import check_sha256

__all__ = ["FORMAT_VERSION", "build_model", "load_checkpoint", "model_config", "save_checkpoint", "sha256_file"]

FORMAT_VERSION = 1
_PLAIN = (type(None), bool, int, float, str)


def _check_plain(name: str, value) -> None:
    """Raise unless ``value`` is made of None, bool, int, float, str, list, tuple and str-keyed dict."""
    if type(value) in _PLAIN:                     # exact types: a str subclass is not plain
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(f"{name}[{i}]", v)
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{name}: dict keys must be str, got {k!r}")
            _check_plain(f"{name}[{k!r}]", v)
        return
    raise TypeError(f"{name}: expected plain types (None, bool, int, float, str, list, tuple, dict), "
                    f"got {type(value).__name__}; convert it (e.g. a tensor with .tolist())")


def model_config(model: nn.Module, **extra) -> dict:
    """``{"model": class name, "kwargs": model.get_config(), **extra}`` for ``save_checkpoint``.

    ``extra`` records what sampling needs besides the weights, e.g.
    ``prediction_type="v_prediction"`` or ``schedule="cosine"``.
    """
    cls = type(model).__name__
    if cls not in MODELS or not hasattr(model, "get_config"):
        raise TypeError(f"model: {cls} is not registered (decorate the class with "
                        f"dlcourse.models.register_model); known: {sorted(MODELS)}")
    return {"model": cls, "kwargs": model.get_config(), **extra}


def save_checkpoint(path, model: nn.Module, config: dict | None = None, *, extra: dict | None = None) -> str:
    """Save ``model``'s weights and ``config`` atomically; return the file's SHA-256.

    Args:
        path: where to write; ``<path>.sha256`` is written next to it.
        model: the model whose ``state_dict`` is saved (moved to the CPU).
        config: plain-type dict; ``build_model`` needs its keys "model" (a registered
            class name) and "kwargs". Defaults to ``model_config(model)``.
        extra: plain-type dict of anything else (training steps, losses, ...).

    Returns:
        The SHA-256 hex digest of the written file.
    """
    path = Path(path)
    if config is None:
        config = model_config(model)
    if not isinstance(config, dict):
        raise TypeError(f"config: expected a dict, got {type(config).__name__}")
    _check_plain("config", config)
    _check_plain("extra", extra)
    payload = {
        "format_version": FORMAT_VERSION,
        "config": config,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": extra,
        "torch_version": str(torch.__version__),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    digest = sha256_bytes(data)
    atomic_write_bytes(path, data)
    atomic_write_bytes(Path(f"{path}.sha256"), f"{digest}  {path.name}\n".encode())
    return digest


def load_checkpoint(path, *, sha256: str | None = None, map_location="cpu", verify: bool = True) -> dict:
    """Verify a checkpoint's SHA-256, then load it with ``weights_only=True``.

    Args:
        path: the checkpoint file.
        sha256: expected hex digest; if None, read from ``<path>.sha256``.
        map_location: where to put the tensors.
        verify: set False to skip the digest check (the load is still weights-only).

    Returns:
        The dict saved by ``save_checkpoint``: "state_dict", "config", "format_version",
        "extra", "torch_version".

    Raises:
        FileNotFoundError: the checkpoint (or, with no ``sha256``, its sidecar) is missing.
        ValueError: the digest does not match (the file may be corrupt or tampered with),
            or the expected digest is not 64 hex digits.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    data = path.read_bytes()                     # verify exactly the bytes that get loaded
    if verify:
        name = "sha256"
        if sha256 is None:
            sidecar = name = Path(f"{path}.sha256")
            if not sidecar.is_file():
                raise FileNotFoundError(f"digest file not found: {sidecar} (needed to verify {path}); "
                                        f"pass sha256=... or verify=False")
            fields = sidecar.read_text().split()            # "<hex digest>  <file name>"
            sha256 = fields[0] if fields else ""
        expected = check_sha256(str(name), sha256.strip())
        actual = sha256_bytes(data)
        if not hmac.compare_digest(expected, actual):
            raise ValueError(f"{path}: SHA-256 mismatch: expected {expected}, got {actual}. The file may be "
                             f"corrupt or tampered with; it was not loaded.")
    checkpoint = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "config" not in checkpoint:
        raise ValueError(f"{path}: not a dlcourse checkpoint (no 'state_dict' and 'config')")
    version = checkpoint.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(f"{path}: checkpoint format_version {version}, this dlcourse reads {FORMAT_VERSION}")
    return checkpoint


def build_model(checkpoint: dict) -> nn.Module:
    """Rebuild the model a checkpoint describes and load its weights.

    Args:
        checkpoint: as returned by ``load_checkpoint``; its config needs "model"
            (a class registered with ``register_model``) and "kwargs".

    Returns:
        The model, in eval mode, on the device of the loaded tensors.
    """
    config = checkpoint.get("config") or {}
    name = config.get("model")
    if name not in MODELS:
        raise ValueError(f"checkpoint config['model']: unknown model {name!r}; registered: {sorted(MODELS)}")
    model = MODELS[name].from_config(config.get("kwargs", {}))
    model.load_state_dict(checkpoint["state_dict"])
    tensors = list(checkpoint["state_dict"].values())
    if tensors:
        model.to(tensors[0].device)
    return model.eval()
