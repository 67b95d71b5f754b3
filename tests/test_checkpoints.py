"""Checkpoints: round trip, atomic writes, the digest checked before loading, weights-only."""

import hashlib
import os
import pickle

import pytest
import torch

import dlcourse.checkpoints as ckpt
from dlcourse import files
from dlcourse.checkpoints import build_model, load_checkpoint, model_config, save_checkpoint
from dlcourse.models import DiT, DiTConfig, MLPDenoiser, UNet, UNetConfig


pytestmark = pytest.mark.usefixtures("one_thread")


def small_unet():
    torch.manual_seed(0)
    model = UNet(UNetConfig(base_channels=16, channel_mults=(1, 2), groups=4, num_classes=3))
    with torch.no_grad():                                   # leave the zero init: outputs must differ
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("make", [small_unet, lambda: DiT(DiTConfig(hidden_dim=32, depth=1, num_heads=2)),
                                  lambda: MLPDenoiser(num_classes=2)])
def test_round_trip_rebuilds_the_same_model(tmp_path, make):
    model = make()
    path = tmp_path / "model.pt"
    digest = save_checkpoint(path, model, model_config(model, prediction_type="v_prediction"),
                             extra={"steps": 10, "losses": [0.5, 0.25]})
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (tmp_path / "model.pt.sha256").read_text() == f"{digest}  model.pt\n"
    checkpoint = load_checkpoint(path)
    assert checkpoint["config"]["prediction_type"] == "v_prediction"
    assert checkpoint["extra"] == {"steps": 10, "losses": [0.5, 0.25]}
    assert checkpoint["format_version"] == ckpt.FORMAT_VERSION
    rebuilt = build_model(checkpoint)
    assert type(rebuilt) is type(model) and not rebuilt.training
    x = torch.randn(2, 2) if isinstance(model, MLPDenoiser) else torch.randn(2, 3, 8, 8)
    model.eval()
    torch.testing.assert_close(rebuilt(x, torch.tensor([3, 70])), model(x, torch.tensor([3, 70])), rtol=0, atol=0)


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    first = save_checkpoint(path, small_unet(), None)         # config defaults to model_config(model)
    assert sorted(os.listdir(tmp_path)) == ["model.pt", "model.pt.sha256"]
    old_bytes = path.read_bytes()

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(path, MLPDenoiser(), None)
    monkeypatch.undo()
    assert path.read_bytes() == old_bytes                     # the old checkpoint is intact
    assert sorted(os.listdir(tmp_path)) == ["model.pt", "model.pt.sha256"]
    assert load_checkpoint(path)["config"]["model"] == "UNet"
    assert hashlib.sha256(old_bytes).hexdigest() == first


def test_tampering_is_detected_before_loading(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    digest = save_checkpoint(path, small_unet(), None)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01                              # flip one bit
    path.write_bytes(bytes(data))

    def must_not_load(*args, **kwargs):
        raise AssertionError("torch.load was called on an unverified file")

    monkeypatch.setattr(ckpt.torch, "load", must_not_load)
    with pytest.raises(ValueError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert str(path) in message and digest in message
    assert hashlib.sha256(bytes(data)).hexdigest() in message
    assert "corrupt or tampered" in message
    with pytest.raises(ValueError, match="mismatch"):           # an explicit digest is checked too
        load_checkpoint(path, sha256=digest)


def test_explicit_digest_and_missing_files(tmp_path):
    path = tmp_path / "model.pt"
    digest = save_checkpoint(path, MLPDenoiser(), None)
    os.remove(f"{path}.sha256")
    with pytest.raises(FileNotFoundError, match="model.pt.sha256"):
        load_checkpoint(path)
    assert load_checkpoint(path, sha256=digest.upper())["config"]["model"] == "MLPDenoiser"
    assert load_checkpoint(path, verify=False)["config"]["model"] == "MLPDenoiser"
    missing = tmp_path / "nowhere" / "missing.pt"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        load_checkpoint(missing)


class Payload:
    """Stands for anything a malicious pickle could build (or execute)."""


def test_load_is_weights_only(tmp_path, monkeypatch):
    """Even with a matching digest, a pickle of an arbitrary object is refused."""
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "config": {}, "format_version": 1, "payload": Payload()}, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(path, sha256=digest)
    calls = []
    real_load = torch.load
    monkeypatch.setattr(ckpt.torch, "load", lambda *a, **k: calls.append(k) or real_load(*a, **k))
    good = tmp_path / "good.pt"
    save_checkpoint(good, MLPDenoiser(), None)
    load_checkpoint(good)
    assert calls and calls[0]["weights_only"] is True


def test_config_must_be_plain_and_model_registered(tmp_path):
    model = MLPDenoiser()
    with pytest.raises(TypeError, match=r"config\['scale'\]"):
        save_checkpoint(tmp_path / "a.pt", model, {"model": "MLPDenoiser", "kwargs": {}, "scale": torch.ones(1)})
    with pytest.raises(TypeError, match="TorchVersion"):      # a str subclass would fail to load
        save_checkpoint(tmp_path / "a.pt", model, None, extra={"torch": torch.__version__})
    with pytest.raises(TypeError, match="extra"):
        save_checkpoint(tmp_path / "a.pt", model, None, extra={"opt": object()})
    assert not list(tmp_path.iterdir())                       # nothing written
    save_checkpoint(tmp_path / "b.pt", model, {"model": "Mystery", "kwargs": {}})
    with pytest.raises(ValueError, match="Mystery"):
        build_model(load_checkpoint(tmp_path / "b.pt"))
    with pytest.raises(TypeError, match="not registered"):
        model_config(torch.nn.Linear(2, 2))
