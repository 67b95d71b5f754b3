"""Tests of dlcourse.widgets.latent: both interpolation paths against exact answers, and the explorer's wiring.

``LinearVAE`` encodes by 4x4 average pooling (plus a fourth channel, the mean of the other three) and
decodes by nearest upsampling of the first three channels: a linear code, so mixing codes is exactly
decoding a cross-fade of the two pooled images, which the test can compute by hand.
"""

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from dlcourse import widgets as W  # noqa: E402
from dlcourse.widgets import SKIPPED, Interpolation, latent_explorer, latent_interpolation  # noqa: E402


class LinearVAE(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))          # gives the VAE a device

    def encode(self, x):
        pooled = F.avg_pool2d(x, 4)                                # (B, 3, h, w)
        mean = torch.cat([pooled, pooled.mean(1, keepdim=True)], 1)  # (B, 4, h, w)
        return mean, torch.zeros_like(mean)

    def decode(self, z):
        return F.interpolate(z[:, :3], scale_factor=4, mode="nearest")


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch):
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    monkeypatch.delenv("DLCOURSE_FAST", raising=False)


def two_images():
    g = torch.Generator().manual_seed(0)
    return (torch.rand(2, 3, 16, 16, generator=g) * 2 - 1).unbind(0)


def test_both_paths_against_their_formulas():
    x_a, x_b = two_images()
    path = latent_interpolation(LinearVAE(), x_a, x_b, n=5)
    assert isinstance(path, Interpolation) and path.a.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    for k, a in enumerate(path.a.tolist()):
        assert torch.allclose(path.pixel[k], (1 - a) * x_a + a * x_b)
        blurred = F.interpolate(F.avg_pool2d(((1 - a) * x_a + a * x_b)[None], 4), scale_factor=4)[0]
        assert torch.allclose(path.latent[k], blurred, atol=1e-6)
    assert path.z_a.shape == (4, 4, 4) and torch.allclose(path.z_a[:3], F.avg_pool2d(x_a[None], 4)[0])


def test_the_latent_path_is_not_the_pixel_path_for_a_nonlinear_decoder():
    class Squash(LinearVAE):
        def decode(self, z):
            return torch.tanh(3 * super().decode(z))

    x_a, x_b = two_images()
    path = latent_interpolation(Squash(), x_a, x_b, n=3)
    mid_from_ends = (path.latent[0] + path.latent[2]) / 2
    assert (path.latent[1] - mid_from_ends).abs().max() > 0.05, "a nonlinear decoder does not cross-fade"


def test_the_vae_is_fed_on_its_device():
    """A VAE whose parameter is on the meta device records where its inputs arrive; it answers on the
    CPU (meta tensors hold no numbers), as a model's output brought back from its device would."""
    class MetaVAE(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.anchor = torch.nn.Parameter(torch.empty(0, device="meta"))
            self.seen = []

        def encode(self, x):
            self.seen.append(x.device.type)
            return LinearVAE().encode(torch.zeros(x.shape))

        def decode(self, z):
            self.seen.append(z.device.type)
            return LinearVAE().decode(torch.zeros(z.shape))

    vae = MetaVAE()
    x_a, x_b = two_images()
    path = latent_interpolation(vae, x_a, x_b, n=3)
    assert vae.seen == ["meta", "meta"] and path.latent.device.type == "cpu"


def test_bad_arguments_are_named():
    x_a, x_b = two_images()
    with pytest.raises(ValueError, match=r"x_b: expected the shape of x_a, \(3, 16, 16\), got \(3, 8, 8\)"):
        latent_interpolation(LinearVAE(), x_a, x_b[:, :8, :8])
    with pytest.raises(ValueError, match="n: expected an int >= 2, got 1"):
        latent_interpolation(LinearVAE(), x_a, x_b, n=1)
    with pytest.raises(ValueError, match=r"images: expected \(N, C, H, W\) images with N >= 2"):
        latent_explorer(LinearVAE(), x_a[None])


def test_explorer_redraws_when_the_slider_moves():
    images = torch.stack(two_images())
    box = latent_explorer(LinearVAE(), images, mix=0.0)
    first = (box.pixel.value, box.latent.value)
    box.slider.value = 1.0
    assert (box.pixel.value, box.latent.value) != first and "a = 1.00" in box.label.value
    for image in (box.pixel, box.latent, box.channels):    # shown at their own size, not stretched
        assert image.layout.width == f"{W._base.png_size(image.value)[0]}px"


def test_explorer_is_skipped_while_grading(monkeypatch, capsys):
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert latent_explorer(LinearVAE(), torch.stack(two_images())) is None
    assert SKIPPED in capsys.readouterr().out


def test_explorer_menu_switches_the_autoencoder():
    images = torch.stack(two_images())
    class FlippedVAE(LinearVAE):                             # another decoder draws another latent path
        def decode(self, z):
            return -super().decode(z)

    one, other = LinearVAE(), FlippedVAE()
    box = latent_explorer({"VAE": one, "plain AE": other}, images, mix=0.5)
    assert list(box.menu.options) == ["VAE", "plain AE"] and box.menu.layout.display is None
    before = box.latent.value
    box.menu.value = "plain AE"
    assert box.latent.value != before
    box.menu.value = "VAE"
    assert box.latent.value == before                         # the same pictures back: nothing else changed
    assert latent_explorer(one, images).menu.layout.display == "none"     # one autoencoder: no menu shown
    with pytest.raises(ValueError, match="vae: expected an autoencoder or a non-empty dict"):
        latent_explorer({}, images)
