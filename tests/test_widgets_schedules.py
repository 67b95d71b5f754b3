"""Tests of dlcourse.widgets.schedules (notebook 02): the curves against DDPM's betas, and the explorer's wiring.

Runs headless (no browser, no kernel); the builder returns None while nbgrader executes a notebook.
"""

import matplotlib
import matplotlib.figure

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from dlcourse.forward import q_sample  # noqa: E402
from dlcourse.learned_schedule import LearnedSchedule  # noqa: E402
from dlcourse.plotting import to_uint8  # noqa: E402
from dlcourse.schedules import NoiseSchedule, cosine_schedule, linear_schedule  # noqa: E402
from dlcourse.widgets import (SKIPPED, collect_schedules, schedule_curves, schedule_explorer,  # noqa: E402
                              schedule_figure)


from test_widgets_forward import X0, _quiet_env, make_image  # noqa: E402,F401  (the fixture is autouse)


# --- schedule_curves and collect_schedules -------------------------------------------------

def test_schedule_curves_agree_with_the_schedules():
    scheds = {"linear": linear_schedule(100), "cosine": cosine_schedule(100)}
    curves = schedule_curves(scheds)
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
        schedule_curves(arg)


def test_collect_schedules_defaults_and_additions():
    default = collect_schedules(None, T=100)
    assert list(default) == ["linear", "cosine", "learned"]
    assert all(s.T == 100 for s in default.values())
    # the fresh learned schedule is the same every time: a line in log-SNR from +10 to -10
    again = collect_schedules(None, T=100)
    assert torch.equal(default["learned"].alphas_cumprod, again["learned"].alphas_cumprod)
    assert default["learned"].log_snr[-1].item() == pytest.approx(-10, abs=0.05)

    module = LearnedSchedule(log_snr_min=-6.0, log_snr_max=6.0)
    got = collect_schedules(module, T=100)
    assert list(got) == ["linear", "cosine", "learned"]
    assert torch.allclose(got["learned"].alphas_cumprod, module.to_schedule(100).alphas_cumprod)

    mine = NoiseSchedule(torch.full((100,), 0.03), name="constant")
    got = collect_schedules({"constant beta": mine}, T=100)
    assert list(got) == ["linear", "cosine", "constant beta", "learned"] and got["constant beta"] is mine
    got = collect_schedules(NoiseSchedule(torch.full((100,), 0.03), name="learned"), T=100)
    assert list(got) == ["linear", "cosine", "learned"] and got["learned"].betas[0].item() == pytest.approx(0.03)


def test_collect_schedules_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"^schedules\['short'\]: .*T=50"):
        collect_schedules({"short": linear_schedule(50)}, T=100)
    with pytest.raises(TypeError, match="^schedules: "):
        collect_schedules("cosine", T=100)


# --- schedule_figure and schedule_explorer -------------------------------------------------

def test_schedule_figure_draws_curves_marker_and_noised_image():
    scheds = collect_schedules(None, T=100)
    eps = torch.randn(X0.shape, generator=torch.Generator().manual_seed(3))
    fig = schedule_figure(X0, scheds, "cosine", 40, eps=eps)
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
        schedule_figure(**kwargs)


def test_schedule_explorer_redraws_on_slider_and_toggle():
    box = schedule_explorer(X0, T=100)
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


def test_no_pyplot_figure_is_left_open():
    # an open pyplot figure is displayed again by the kernel after the cell: a second copy of the explorer
    before = plt.get_fignums()
    fig = schedule_figure(X0, collect_schedules(T=100), "cosine", 10)
    assert isinstance(fig, matplotlib.figure.Figure) and fig.canvas.manager is None, "not a pyplot figure"
    box = schedule_explorer(X0, T=100)
    box.slider.value = 70
    box.buttons.value = "linear"
    assert plt.get_fignums() == before


def test_schedule_explorer_accepts_the_learners_schedules():
    mine = NoiseSchedule(torch.full((100,), 0.03), name="constant")
    box = schedule_explorer(X0, schedules={"constant beta": mine}, T=100, t=10)
    assert "constant beta" in box.buttons.options and box.slider.value == 10
    with pytest.raises(ValueError, match="^t: "):
        schedule_explorer(X0, T=100, t=100)


def test_explorer_skips_while_grading(monkeypatch, capsys):
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert schedule_explorer(X0) is None
    assert capsys.readouterr().out == SKIPPED + "\n"
