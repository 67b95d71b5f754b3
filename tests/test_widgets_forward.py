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
    assert box.image in box.children and any(box.slider in c.children for c in box.children[:1])


def test_player_uses_fewer_frames_in_fast_mode(monkeypatch):
    monkeypatch.setenv("DLCOURSE_FAST", "1")
    box = W.forward_reverse_player(X0, linear_schedule(50))
    assert len(box.frames) == 24 and box.slider.max == 23


def test_player_skips_while_grading(monkeypatch, capsys):
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert W.forward_reverse_player(X0, linear_schedule(50)) is None
    assert capsys.readouterr().out == W.SKIPPED + "\n"
    W.show(None)  # nothing to show, no error
