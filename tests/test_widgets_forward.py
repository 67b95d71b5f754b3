"""Tests of dlcourse.widgets.forward (notebook 01): the film against the closed form, and the player's wiring.

Runs headless (no browser, no kernel): the builders must return widgets whose Python-side
observers do the work, and return None while nbgrader executes a notebook.
"""

import io
import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from dlcourse import widgets as W  # noqa: E402
from dlcourse.plotting import to_uint8  # noqa: E402
from dlcourse.schedules import linear_schedule  # noqa: E402


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch):
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    monkeypatch.delenv("DLCOURSE_FAST", raising=False)
    yield
    plt.close("all")


def make_image(size=32):
    """A smooth colour image with an edge: (3, size, size) in [-1, 1], structured like a photo."""
    u = torch.linspace(-1, 1, size)
    yy, xx = torch.meshgrid(u, u, indexing="ij")
    disc = ((xx - 0.2) ** 2 + (yy + 0.1) ** 2 < 0.3).float()
    return torch.stack([xx * 0.8, yy * 0.6, disc * 1.6 - 0.8]).clamp(-1, 1)


X0 = make_image()


@pytest.fixture(scope="module")
def frames():
    return W.forward_reverse_frames(X0, linear_schedule(1000), n_frames=12, seed=0)


# --- forward_reverse_frames ------------------------------------------------------------------

def test_frames_count_phases_and_monotone_t(frames):
    assert len(frames) == 24
    fwd, rev = frames.half("forward"), frames.half("reverse")
    assert [f.phase for f in frames.frames] == ["forward"] * 12 + ["reverse"] * 12
    t_fwd, t_rev = [f.t for f in fwd], [f.t for f in rev]
    assert t_fwd[0] == -1 and t_fwd[1] == 0 and t_fwd[-1] == 999  # clean, then 0 .. T-1
    assert all(a < b for a, b in zip(t_fwd, t_fwd[1:]))
    assert t_rev[0] == 999 and t_rev[-2] == 0 and t_rev[-1] == -1  # T-1 .. 0, then clean
    assert all(a > b for a, b in zip(t_rev, t_rev[1:]))
    assert frames.images().shape == (24, 3, 32, 32)


def test_forward_ends_in_noise_and_reverse_returns_to_x0(frames):
    end = frames.half("forward")[-1]
    assert abs(end.corr) < 0.1, f"x_(T-1) still correlated with x_0: {end.corr:.3f}"
    assert abs(end.std - 1.0) < 0.1
    back = frames.half("reverse")
    assert back[-2].t == 0 and back[-2].corr > 0.99, back[-2].corr
    assert torch.equal(back[-1].image, X0) and back[-1].corr == pytest.approx(1.0)
    assert frames[0].corr == pytest.approx(1.0)
    # the way back is a new chain (fresh posterior noise), not the forward film reversed
    fwd_mid = [f for f in frames.half("forward") if f.t == 500][0]
    rev_mid = [f for f in back if f.t == 500][0]
    assert (fwd_mid.image - rev_mid.image).abs().mean() > 0.1


def test_every_frame_matches_the_closed_form_marginal(frames):
    """Both halves have the marginal q(x_t | x_0) = N(sqrt(ab) x_0, (1 - ab) I), so
    corr(x_t, x_0) = sqrt(ab) s / sqrt(ab s^2 + 1 - ab) and std(x_t) = sqrt(ab s^2 + 1 - ab),
    with s the pixel std of x_0 (3072 pixels: one frame's corr is off by ~0.02, the worst of 22 by
    0.03-0.05 over seeds 0-4)."""
    ab_all = linear_schedule(1000).alphas_cumprod
    s = X0.double().std().item()
    for f in frames.frames:
        if f.t < 0:
            continue
        ab = ab_all[f.t].item()
        assert f.alpha_bar == pytest.approx(ab)
        spread = math.sqrt(ab * s * s + 1 - ab)
        assert f.corr == pytest.approx(math.sqrt(ab) * s / spread, abs=0.07), (f.phase, f.t)
        assert f.std == pytest.approx(spread, abs=0.06), (f.phase, f.t)


def test_frame_labels(frames):
    assert frames[1].label == "forward t = 0 / 999, alpha_bar = 0.9999"
    assert frames.half("forward")[-1].label.startswith("forward t = 999 / 999, alpha_bar = ")
    assert all(f.label.startswith("reverse (exact posterior)") for f in frames.half("reverse"))


def test_frame_png_is_the_image_enlarged(frames):
    png = frames[0].png
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    decoded = np.asarray(Image.open(io.BytesIO(png)))
    assert decoded.shape == (256, 256, 3)  # 32 px x 8, nearest neighbour
    assert np.array_equal(decoded[::8, ::8], to_uint8(X0))


def test_frames_are_reproducible_and_seeded():
    sched = linear_schedule(50)
    a = W.forward_reverse_frames(X0, sched, n_frames=4, seed=1)
    b = W.forward_reverse_frames(X0, sched, n_frames=4, seed=1)
    c = W.forward_reverse_frames(X0, sched, n_frames=4, seed=2)
    assert torch.equal(a.images(), b.images())
    assert not torch.equal(a.images(), c.images())


def test_frames_grey_image():
    f = W.forward_reverse_frames(X0[:1], linear_schedule(20), n_frames=3, display_size=64)
    assert np.asarray(Image.open(io.BytesIO(f[0].png))).shape == (64, 64)


@pytest.mark.parametrize("kwargs, name", [
    (dict(x_0=X0[None], schedule=linear_schedule(10)), "x_0"),
    (dict(x_0=torch.zeros(2, 8, 8), schedule=linear_schedule(10)), "x_0"),
    (dict(x_0=X0, schedule="linear"), "schedule"),
    (dict(x_0=X0, schedule=linear_schedule(10), n_frames=1), "n_frames"),
])
def test_frames_errors_name_the_argument(kwargs, name):
    with pytest.raises((ValueError, TypeError), match=f"^{name}: "):
        W.forward_reverse_frames(**kwargs)


# --- forward_reverse_player ----------------------------------------------------------------

def test_player_slider_spans_frames_and_swaps_the_image():
    box = W.forward_reverse_player(X0, linear_schedule(50), n_frames=6)
    frames = box.frames
    assert len(frames) == 12
    assert (box.slider.min, box.slider.max) == (0, 11) and box.play.max == 11
    assert box.image.value == frames[0].png and box.label.value == frames[0].label
    box.slider.value = 5  # what the Play button does through jslink in the browser
    assert box.image.value == frames[5].png != frames[0].png
    assert box.label.value == frames[5].label
    assert box.slider in box.children[0].children and box.image in box.children[2].children
    assert box.stats in box.children[2].children, "the histogram and SNR panel sits beside the picture"


def test_player_shows_its_pictures_at_their_own_size():
    box = W.forward_reverse_player(X0, linear_schedule(50), n_frames=3)
    # 32 px x 8 = 256 px, and the 512 x 256 panel: never stretched to the output's width
    assert (box.image.layout.width, box.image.layout.height) == ("256px", "256px")
    assert (box.stats.layout.width, box.stats.layout.height) == ("512px", "256px")


def test_player_panel_moves_with_the_frame():
    box = W.forward_reverse_player(X0, linear_schedule(50), n_frames=4)
    pngs = W.forward_reverse_stats_pngs(box.frames)
    assert box.stats.value == pngs[0]
    box.slider.value = 4                                    # the last forward frame, t = T - 1
    assert box.stats.value == pngs[4] != pngs[0]
    assert box.frames[4].t == 49


# --- the histogram and SNR panel ------------------------------------------------------------

def test_pixel_histogram_is_a_density_matching_numpy():
    x = torch.randn(3, 40, 40, generator=torch.Generator().manual_seed(0)).clamp(-3.9, 3.9)
    h = W.pixel_histogram(x)
    width = np.diff(W.HIST_EDGES)
    assert h.shape == (48,) and math.isclose(float((h * width).sum()), 1.0, rel_tol=1e-12)
    counts, _ = np.histogram(x.double().numpy(), bins=W.HIST_EDGES)
    np.testing.assert_allclose(h * width * x.numel(), counts, rtol=1e-9)


def test_pixel_histogram_counts_values_outside_in_the_end_bins():
    h = W.pixel_histogram(torch.tensor([-9.0, 0.1, 9.0]), edges=[-1.0, 0.0, 1.0])
    np.testing.assert_allclose(h, [1 / 3, 2 / 3])          # -9 in the first bin; 0.1 and 9 in the last


@pytest.mark.parametrize("kwargs, name", [
    (dict(image=torch.zeros(0)), "image"), (dict(image=[0.0]), "image"),
    (dict(image=torch.zeros(3), edges=[1.0, 0.0]), "edges"), (dict(image=torch.zeros(3), edges=[0.0]), "edges"),
])
def test_pixel_histogram_errors_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=f"^{name}: "):
        W.pixel_histogram(**kwargs)


def test_the_histogram_reaches_n01_as_the_chain_ends(frames):
    # the closed form: x_{T-1} ~ N(sqrt(ab) x_0, 1 - ab) with ab ~ 4e-5, so its pixels follow N(0, 1)
    centres = (W.HIST_EDGES[1:] + W.HIST_EDGES[:-1]) / 2
    normal = np.exp(-centres ** 2 / 2) / math.sqrt(2 * math.pi)
    width = np.diff(W.HIST_EDGES)

    def l1(image):                                          # total variation against N(0, 1), 0..2
        return float(np.abs(W.pixel_histogram(image) - normal) @ width)

    noise, clean = frames.half("forward")[-1], frames[0]
    assert l1(noise.image) < 0.15, "3072 pixels of N(0, 1): the histogram is close to its density"
    assert l1(clean.image) > 0.5, "the clean image's pixels are nothing like N(0, 1)"


def test_frames_carry_the_snr_and_the_curve(frames):
    ab = linear_schedule(1000).alphas_cumprod.double()
    np.testing.assert_allclose(frames.log_snr, (ab / (1 - ab)).log().numpy(), rtol=1e-10)
    assert frames[0].snr == math.inf
    f = frames.half("forward")[3]
    assert math.isclose(f.snr, f.alpha_bar / (1 - f.alpha_bar)) and math.isclose(math.log(f.snr), frames.log_snr[f.t],
                                                                                 rel_tol=1e-6)


def test_stats_pngs_one_per_frame_each_its_own(frames):
    pngs = W.forward_reverse_stats_pngs(frames)
    assert len(pngs) == len(frames)
    images = [np.asarray(Image.open(io.BytesIO(p)).convert("RGB")) for p in pngs]
    assert images[0].shape == (256, 512, 3)
    n = len(frames) // 2
    # the clean image's panel shows at both ends of the film; every noisy frame's differs from it
    assert np.array_equal(images[0], images[-1])
    assert all(not np.array_equal(images[0], images[i]) for i in range(1, n))
    assert not np.array_equal(images[1], images[n - 1])


def test_player_uses_fewer_frames_in_fast_mode(monkeypatch):
    monkeypatch.setenv("DLCOURSE_FAST", "1")
    box = W.forward_reverse_player(X0, linear_schedule(50))
    assert len(box.frames) == 24 and box.slider.max == 23


def test_player_skips_while_grading(monkeypatch, capsys):
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert W.forward_reverse_player(X0, linear_schedule(50)) is None
    assert capsys.readouterr().out == W.SKIPPED + "\n"
    W.show(None)  # nothing to show, no error
