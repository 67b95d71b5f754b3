"""Tests of dlcourse.widgets: the computations behind the widgets, and the widgets' wiring.

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
from dlcourse.forward import q_sample  # noqa: E402
from dlcourse.learned_schedule import LearnedSchedule  # noqa: E402
from dlcourse.plotting import to_uint8  # noqa: E402
from dlcourse.schedules import NoiseSchedule, cosine_schedule, linear_schedule  # noqa: E402


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


def test_builders_skip_while_grading(monkeypatch, capsys):
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert W.forward_reverse_player(X0, linear_schedule(50)) is None
    assert W.schedule_explorer(X0) is None
    assert capsys.readouterr().out == (W.SKIPPED + "\n") * 2
    W.show(None)  # nothing to show, no error


# --- schedule_curves and collect_schedules -------------------------------------------------

def test_schedule_curves_agree_with_the_schedules():
    scheds = {"linear": linear_schedule(100), "cosine": cosine_schedule(100)}
    curves = W.schedule_curves(scheds)
    assert list(curves) == ["linear", "cosine"]
    for name, s in scheds.items():
        c = curves[name]
        assert np.array_equal(c["t"], np.arange(100))
        assert np.allclose(c["alpha_bar"], s.alphas_cumprod.numpy())
        assert np.allclose(c["log_snr"], s.log_snr.numpy())
    # independently: DDPM's linear betas (scaled for T = 100) and log SNR = log(ab / (1 - ab))
    ab = np.cumprod(1 - np.linspace(1e-3, 0.2, 100))
    assert np.allclose(curves["linear"]["alpha_bar"], ab, rtol=1e-5)
    assert np.allclose(curves["linear"]["log_snr"], np.log(ab / (1 - ab)), atol=1e-4)


@pytest.mark.parametrize("arg, name", [
    ([linear_schedule(10)], "schedules"),
    ({}, "schedules"),
    ({"mine": torch.ones(10)}, r"schedules\['mine'\]"),
])
def test_schedule_curves_errors_name_the_argument(arg, name):
    with pytest.raises(TypeError, match=f"^{name}: "):
        W.schedule_curves(arg)


def test_collect_schedules_defaults_and_additions():
    default = W.collect_schedules(None, T=100)
    assert list(default) == ["linear", "cosine", "learned"]
    assert all(s.T == 100 for s in default.values())
    # the fresh learned schedule is the same every time: a line in log-SNR from +10 to -10
    again = W.collect_schedules(None, T=100)
    assert torch.equal(default["learned"].alphas_cumprod, again["learned"].alphas_cumprod)
    assert default["learned"].log_snr[-1].item() == pytest.approx(-10, abs=0.05)

    module = LearnedSchedule(log_snr_min=-6.0, log_snr_max=6.0)
    got = W.collect_schedules(module, T=100)
    assert list(got) == ["linear", "cosine", "learned"]
    assert torch.allclose(got["learned"].alphas_cumprod, module.to_schedule(100).alphas_cumprod)

    mine = NoiseSchedule(torch.full((100,), 0.03), name="constant")
    got = W.collect_schedules({"constant beta": mine}, T=100)
    assert list(got) == ["linear", "cosine", "constant beta", "learned"] and got["constant beta"] is mine
    got = W.collect_schedules(NoiseSchedule(torch.full((100,), 0.03), name="learned"), T=100)
    assert list(got) == ["linear", "cosine", "learned"] and got["learned"].betas[0].item() == pytest.approx(0.03)


def test_collect_schedules_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"^schedules\['short'\]: .*T=50"):
        W.collect_schedules({"short": linear_schedule(50)}, T=100)
    with pytest.raises(TypeError, match="^schedules: "):
        W.collect_schedules("cosine", T=100)


# --- schedule_figure and schedule_explorer -------------------------------------------------

def test_schedule_figure_draws_curves_marker_and_noised_image():
    scheds = W.collect_schedules(None, T=100)
    eps = torch.randn(X0.shape, generator=torch.Generator().manual_seed(3))
    fig = W.schedule_figure(X0, scheds, "cosine", 40, eps=eps)
    ax_ab, ax_snr, ax_img = fig.axes
    for ax, key in [(ax_ab, "alphas_cumprod"), (ax_snr, "log_snr")]:
        lines = {ln.get_label(): ln for ln in ax.get_lines() if not ln.get_label().startswith("_")}
        assert set(lines) == set(scheds)
        for name, ln in lines.items():
            assert np.allclose(ln.get_ydata(), getattr(scheds[name], key).numpy())
        assert lines["cosine"].get_linewidth() > lines["linear"].get_linewidth()  # highlighted
        marker = [ln for ln in ax.get_lines() if ln.get_marker() == "o"][0]
        assert marker.get_xdata()[0] == 40
        assert marker.get_ydata()[0] == pytest.approx(getattr(scheds["cosine"], key)[40].item(), rel=1e-5)
        assert ax.get_xlabel().startswith("timestep t") and ax.get_ylabel() and ax.get_title()
    expected = to_uint8(q_sample(X0[None], 40, scheds["cosine"], eps[None])[0])
    assert np.array_equal(np.asarray(ax_img.images[0].get_array()), expected)
    assert "cosine, t = 40" in ax_img.get_title()


@pytest.mark.parametrize("kwargs, name", [
    (dict(selected="quadratic", t=5), "selected"),
    (dict(selected="linear", t=100), "t"),
    (dict(selected="linear", t=5, image=X0[None]), "image"),
    (dict(selected="linear", t=5, eps=torch.zeros(3, 8, 8)), "eps"),
])
def test_schedule_figure_errors_name_the_argument(kwargs, name):
    kwargs = {"image": X0, "schedules": {"linear": linear_schedule(100)}, **kwargs}
    with pytest.raises((ValueError, TypeError), match=f"^{name}: "):
        W.schedule_figure(**kwargs)


def test_schedule_explorer_redraws_on_slider_and_toggle():
    box = W.schedule_explorer(X0, T=100)
    assert (box.slider.min, box.slider.max, box.slider.value) == (0, 99, 50)
    assert list(box.buttons.options) == ["linear", "cosine", "learned"] and box.buttons.value == "cosine"

    def png():
        (out,) = box.output.outputs  # exactly one figure, replaced on each redraw
        return out["data"]["image/png"]

    first = png()
    box.slider.value = 80
    after_slider = png()
    assert after_slider != first
    box.buttons.value = "linear"
    assert png() not in (first, after_slider)


def test_schedule_explorer_accepts_the_learners_schedules():
    mine = NoiseSchedule(torch.full((100,), 0.03), name="constant")
    box = W.schedule_explorer(X0, schedules={"constant beta": mine}, T=100, t=10)
    assert "constant beta" in box.buttons.options and box.slider.value == 10
    with pytest.raises(ValueError, match="^t: "):
        W.schedule_explorer(X0, T=100, t=100)
