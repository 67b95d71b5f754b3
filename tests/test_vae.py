"""The VAE: shapes, the reparameterised forward pass, the checkpoint round trip, bad inputs,
and the shipped ``vae_shapes32`` (reconstructions keep what the judge reads; a tampered file is refused)."""

import math
import shutil

import pytest
import torch

import dlcourse.pretrained as pretrained
from dlcourse.checkpoints import build_model, load_checkpoint, model_config, save_checkpoint
from dlcourse.data import make_shapes
from dlcourse.latent import compression_factor, decode, encode, latent_scale_factor
from dlcourse.models import VAE, VAEConfig

pytestmark = pytest.mark.usefixtures("one_thread")

HELD_OUT_SEED = 3            # shapes seeds the shipped models never trained on (they used seed 0)


def small_vae(**kwargs) -> VAE:
    torch.manual_seed(0)
    return VAE(VAEConfig(base_channels=8, channel_mults=(1, 2, 2), groups=4, **kwargs)).eval()


def test_shapes_and_the_compression_of_the_default_vae():
    vae = VAE()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    mean, logvar = vae.encode(x)
    assert mean.shape == logvar.shape == (2, 4, 8, 8) and vae.latent_shape == (4, 8, 8)
    assert vae.decode(mean).shape == (2, 3, 32, 32)
    assert compression_factor(vae) == 3 * 32 * 32 / (4 * 8 * 8) == 12.0
    # other layouts follow from the config: 2 levels halve once, 16 px images
    other = VAE(VAEConfig(base_channels=8, channel_mults=(1, 2), groups=4, image_size=16, latent_channels=2))
    assert other.latent_shape == (2, 8, 8) and other.encode(torch.zeros(1, 3, 16, 16))[0].shape == (1, 2, 8, 8)


def test_forward_draws_z_by_the_reparameterisation_trick():
    vae = small_vae()
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    eps = torch.randn(3, 4, 8, 8)
    with torch.no_grad():
        mean, logvar = vae.encode(x)
        x_rec, m, lv = vae(x, eps)
        expected = vae.decode(mean + torch.exp(logvar / 2) * eps)
        torch.testing.assert_close(x_rec, expected, rtol=0, atol=0)
        torch.testing.assert_close((m, lv), (mean, logvar), rtol=0, atol=0)
        # eps = 0 decodes the mean; no eps draws one (so two calls differ)
        torch.testing.assert_close(vae(x, torch.zeros_like(eps))[0], vae.decode(mean), rtol=0, atol=0)
        assert not torch.equal(vae(x)[0], vae(x)[0])


def test_the_log_variance_is_clamped_so_its_exponential_stays_finite():
    vae = small_vae()
    with torch.no_grad():
        vae.encoder[-1].bias[4:].fill_(1e4)               # the log-variance half of the last conv
        _, logvar = vae.encode(torch.zeros(1, 3, 32, 32))
    assert float(logvar.max()) == 20.0 and torch.isfinite(logvar.exp()).all()


def test_checkpoint_round_trip_rebuilds_the_same_vae(tmp_path):
    vae = small_vae()
    path = tmp_path / "vae.pt"
    save_checkpoint(path, vae, model_config(vae, scale_factor=0.5))
    rebuilt = build_model(load_checkpoint(path))
    assert isinstance(rebuilt, VAE) and rebuilt.config == vae.config
    x, eps = torch.rand(2, 3, 32, 32) * 2 - 1, torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x, eps), vae(x, eps), rtol=0, atol=0)


def test_bad_inputs_name_what_was_expected():
    vae = small_vae()
    with pytest.raises(ValueError, match=r"x: expected shape \(\*, 3, 32, 32\), got \(2, 3, 16, 16\)"):
        vae.encode(torch.zeros(2, 3, 16, 16))
    with pytest.raises(ValueError, match=r"z: expected shape \(\*, 4, 8, 8\), got \(2, 4, 4, 4\)"):
        vae.decode(torch.zeros(2, 4, 4, 4))
    with pytest.raises(ValueError, match=r"eps: expected shape \(2, 4, 8, 8\)"):
        vae(torch.zeros(2, 3, 32, 32), torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match="groups"):
        VAEConfig(base_channels=12, groups=8)
    with pytest.raises(ValueError, match="image_size: must be divisible by 4"):
        VAEConfig(image_size=30)


# --- the shipped VAE -------------------------------------------------------------------------------------

def shipped_or_skip(name):
    if name not in pretrained.PRETRAINED or not pretrained.pretrained_path(name).is_file():
        pytest.skip(f"{name} not in dlcourse/assets (train it: {pretrained.PRETRAINED[name].command})")
    return pretrained.load_pretrained(name, device="cpu")


@pytest.mark.parametrize("name, beta", [("vae_shapes32", 1e-3), ("ae_shapes32", 0.0)])
def test_shipped_autoencoder_reconstructions_keep_what_the_judge_reads(name, beta):
    from dlcourse.judge import load_judge

    vae, info = shipped_or_skip(name)
    assert info["model"] == "VAE" and vae.latent_shape == (4, 8, 8)
    assert info["scale_factor"] > 0 and info["beta"] == beta
    data = make_shapes(300, size=32, seed=HELD_OUT_SEED)
    x_rec = decode(vae, encode(vae, data.images, info["scale_factor"]), info["scale_factor"])
    out = load_judge(16).predict(x_rec)
    kept = ((out["shape_probs"].argmax(1) == data.labels) & (out["color_probs"].argmax(1) == data.colors)
            & (out["scale_probs"].argmax(1) == data.scales))
    assert float(kept.float().mean()) >= 0.99, f"attributes kept by {float(kept.float().mean()):.3f} of 300"
    assert float(out["valid"].float().mean()) >= 0.97
    psnr = 10 * math.log10(4 / float((x_rec - data.images).square().mean()))     # peak-to-peak 2 in [-1, 1]
    assert psnr >= 25, f"PSNR {psnr:.1f} dB"


@pytest.mark.parametrize("name", ["vae_shapes32", "ae_shapes32"])
def test_shipped_scale_factor_gives_unit_variance_on_unseen_images(name):
    vae, info = shipped_or_skip(name)
    images = make_shapes(400, size=32, seed=HELD_OUT_SEED).images
    z = encode(vae, images, info["scale_factor"])
    assert abs(float(z.std()) - 1) < 0.05                     # measured on other images when trained
    assert latent_scale_factor(vae, images) == pytest.approx(info["scale_factor"], rel=0.05)


def test_a_tampered_vae_checkpoint_is_refused_before_loading(tmp_path, monkeypatch):
    shipped_or_skip("vae_shapes32")
    entry = pretrained.PRETRAINED["vae_shapes32"]
    copy = tmp_path / entry.filename
    shutil.copyfile(pretrained.pretrained_path("vae_shapes32"), copy)
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0x01                               # one bit, somewhere in the weights
    copy.write_bytes(bytes(data))
    monkeypatch.setattr(pretrained, "ASSET_DIR", tmp_path)
    with pytest.raises(ValueError, match=rf"SHA-256 mismatch: expected {entry.sha256}.*not loaded"):
        pretrained.load_pretrained("vae_shapes32", device="cpu")
