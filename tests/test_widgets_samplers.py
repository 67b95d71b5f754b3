"""Tests of dlcourse.widgets.samplers (notebook 04): the preview against the samplers and a closed form; the explorer.

The model is the exact denoiser of Gaussian data N(mu, s^2) (per pixel), whose probability-flow
ODE has a closed-form solution (see tests/test_samplers.py): a deterministic sampler with many
steps must land there, and every sampler's samples must have mean mu.
"""

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from dlcourse.samplers import SAMPLERS, SPACINGS, get_sampler, model_calls
from dlcourse.schedules import cosine_schedule, linear_schedule
from dlcourse.widgets import SKIPPED, sampler_explorer, sampler_preview, sampler_verdict

pytestmark = pytest.mark.usefixtures("one_thread")

SCHEDULE = linear_schedule(1000)
MU, S = 0.3, 0.2


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch):
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    monkeypatch.delenv("DLCOURSE_FAST", raising=False)


class ExactGaussian(torch.nn.Module):
    """E[eps | x_t] for data N(mu, s^2) in every pixel; counts its calls."""

    def __init__(self, schedule, mu=MU, s=S):
        super().__init__()
        self.ab, self.mu, self.s, self.calls = schedule.alphas_cumprod, mu, s, 0
        self.dummy = torch.nn.Parameter(torch.zeros(()))       # so the model has a device

    def forward(self, x_t, t, cond=None):
        self.calls += 1
        ab = self.ab[t].reshape(-1, *([1] * (x_t.ndim - 1))).to(x_t.dtype)
        return (1 - ab).sqrt() * (x_t - ab.sqrt() * self.mu) / (ab * self.s ** 2 + 1 - ab)


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_preview_is_the_sampler_on_the_seeded_noise(name):
    model = ExactGaussian(SCHEDULE)
    images, seconds = sampler_preview(model, SCHEDULE, name, 10, n=6, seed=4, shape=(3, 4, 4))
    x_T = torch.randn(6, 3, 4, 4, generator=torch.Generator().manual_seed(4))
    expected = get_sampler(name)(model, x_T, SCHEDULE, 10, generator=torch.Generator().manual_seed(5),
                                 progress=False)
    assert images.shape == (6, 3, 4, 4) and images.dtype == torch.float32
    torch.testing.assert_close(images, expected)
    assert 0 < seconds < 60


def test_preview_counts_calls_and_seeds_change_the_noise():
    model = ExactGaussian(SCHEDULE)
    for name, steps in [("ddim", 7), ("heun", 7), ("dpmpp_2m", 7), ("ddpm", 7)]:
        model.calls = 0
        sampler_preview(model, SCHEDULE, name, steps, n=2, shape=(2,))
        assert model.calls == model_calls(name, steps) == (12 if name == "heun" else 7)
    a, _ = sampler_preview(model, SCHEDULE, "ddim", 10, n=8, seed=0, shape=(2,))
    b, _ = sampler_preview(model, SCHEDULE, "ddim", 10, n=8, seed=0, shape=(2,))
    c, _ = sampler_preview(model, SCHEDULE, "ddim", 10, n=8, seed=1, shape=(2,))
    assert torch.equal(a, b), "a deterministic sampler from the same seed gives the same samples"
    assert (a - c).abs().mean() > 0.05, "another seed must give other noise"


def test_deterministic_samplers_approach_the_closed_form_and_all_have_the_data_mean():
    """PF-ODE from x_T at t = T-1 ends at mu + s (x_T - sqrt(ab_T) mu) / sqrt(ab_T s^2 + 1 - ab_T).

    Measured largest errors (float32, 512 points) at 50 and 200 steps: DDIM 0.099 and 0.026 (4x, first
    order), Heun 0.0099 and 0.00033 (30x, second order), DPM-Solver++(2M) 0.12 and 0.011 (11x: with
    timesteps evenly spaced in t its last step stays long, see dpmpp_2m.py)."""
    model = ExactGaussian(SCHEDULE)
    x_T = torch.randn(512, 1, generator=torch.Generator().manual_seed(0))
    ab_T = float(SCHEDULE.alphas_cumprod[-1])
    exact = MU + S * (x_T - math.sqrt(ab_T) * MU) / math.sqrt(ab_T * S ** 2 + 1 - ab_T)
    for name, min_gain, tol_200 in [("ddim", 3, 0.04), ("heun", 15, 1e-3), ("dpmpp_2m", 6, 0.02)]:
        err = []
        for steps in (50, 200):
            images, _ = sampler_preview(model, SCHEDULE, name, steps, n=512, seed=0, shape=(1,), clip_x0=False)
            err.append(float((images - exact).abs().max()))
        assert err[0] / err[1] > min_gain and err[1] < tol_200, (name, err)
    for name in SAMPLERS:                           # mean mu, standard error of the mean 0.2 / sqrt(512) ~ 0.009
        images, _ = sampler_preview(model, SCHEDULE, name, 50, n=512, seed=1, shape=(1,), clip_x0=False)
        assert images.mean().item() == pytest.approx(MU, abs=0.04), name


def test_sampler_kwargs_reach_the_sampler():
    model = ExactGaussian(SCHEDULE)
    a, _ = sampler_preview(model, SCHEDULE, "ddim", 10, n=16, shape=(2,), eta=1.0)
    b, _ = sampler_preview(model, SCHEDULE, "ddpm", 10, n=16, shape=(2,))
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)          # DDIM with eta = 1 is DDPM, same noise


@pytest.mark.parametrize("kwargs, name", [
    (dict(name="dpm"), "name"), (dict(steps=0), "steps"), (dict(steps=1001), "steps"), (dict(steps=2.0), "steps"),
    (dict(n=0), "n"), (dict(shape=(3, 0, 4)), "shape"), (dict(shape=16), "shape"), (dict(schedule="cosine"), "schedule"),
    (dict(prediction_type="eps"), "prediction_type"),
])
def test_errors_name_the_argument(kwargs, name):
    args = dict(model=ExactGaussian(SCHEDULE), schedule=SCHEDULE, name="ddim", steps=10, n=2) | kwargs
    with pytest.raises((TypeError, ValueError), match=name):
        sampler_preview(**args)


def _png(image_widget):
    return np.asarray(Image.open(io.BytesIO(image_widget.value)))


def test_explorer_builds_and_redraws():
    sched = cosine_schedule(100)
    model = ExactGaussian(sched)
    box = sampler_explorer(model, sched, name="ddim", steps=5, n=8, shape=(3, 4, 4), max_steps=50, nrow=4)
    assert [v for _, v in box.dropdown.options] == list(SAMPLERS) and box.dropdown.value == "ddim"
    assert (box.slider.min, box.slider.max, box.slider.value) == (1, 50, 5)
    first = _png(box.image)
    images, seconds = box.last
    assert images.shape == (8, 3, 4, 4) and seconds > 0
    assert "5 steps (linspace) = 5 network calls" in box.label.value and "DDIM" in box.label.value
    expected, _ = sampler_preview(model, sched, "ddim", 5, n=8, shape=(3, 4, 4))
    torch.testing.assert_close(images, expected)
    box.slider.value = 1
    assert not np.array_equal(_png(box.image), first), "moving the slider redraws the grid"
    assert "1 step (linspace) = 1 network call:" in box.label.value
    box.dropdown.value = "heun"
    box.slider.value = 3
    assert "Heun" in box.label.value and "3 steps (linspace) = 4 network calls" in box.label.value
    assert list(box.spacing.options) == list(SPACINGS)
    box.slider.value = 10
    linspace_grid = box.last[0]
    box.spacing.value = "karras"
    assert "10 steps (karras) = 18 network calls" in box.label.value
    expected, _ = sampler_preview(model, sched, "heun", 10, n=8, shape=(3, 4, 4), spacing="karras")
    torch.testing.assert_close(box.last[0], expected)
    assert not torch.equal(box.last[0], linspace_grid), "the spacing changes the samples"


class FakeJudge:
    """Accepts the samples whose mean pixel is above MU: about half of them."""

    def predict(self, x):
        return {"valid": x.flatten(1).mean(1) > MU}


def test_sampler_verdict_counts_what_the_judge_accepts():
    images = torch.full((5, 3, 4, 4), MU) + torch.tensor([-1, 1, 1, -1, 1.0]).view(5, 1, 1, 1) * 0.1
    assert sampler_verdict(FakeJudge(), images) == (3, "the judge accepts 3 of 5 as clean shapes (60%)")
    with pytest.raises(TypeError, match="^judge: expected a dlcourse.judge.Judge"):
        sampler_verdict("judge", images)


def test_explorer_gives_the_judges_verdict_on_every_redraw():
    sched = cosine_schedule(100)
    box = sampler_explorer(ExactGaussian(sched), sched, name="ddim", steps=5, n=8, shape=(3, 4, 4), judge=FakeJudge())
    assert box.verdict in box.children and box.verdict.value == sampler_verdict(FakeJudge(), box.last[0])[1]
    box.slider.value = 2
    assert box.verdict.value == sampler_verdict(FakeJudge(), box.last[0])[1]
    assert sampler_explorer(ExactGaussian(sched), sched, steps=5, n=2, shape=(3, 4, 4), judge=None).verdict.value == ""
    with pytest.raises(ValueError, match="^judge: "):
        sampler_explorer(ExactGaussian(sched), sched, steps=5, n=2, shape=(3, 4, 4), judge="strict")


def test_explorer_loads_the_shipped_judge_for_rgb_images():
    from dlcourse.judge import Judge

    sched = cosine_schedule(100)
    box = sampler_explorer(ExactGaussian(sched), sched, steps=3, n=4, shape=(3, 16, 16))
    assert isinstance(box.judge, Judge) and box.verdict.value.startswith("the judge accepts ")
    assert box.verdict.value == sampler_verdict(box.judge, box.last[0])[1]
    grey = sampler_explorer(ExactGaussian(sched), sched, steps=3, n=4, shape=(1, 16, 16))
    assert grey.judge is None and grey.verdict.value == "", "the judge scores colour shapes only"


def test_explorer_slider_reaches_200_steps_and_says_its_range():
    # notebook 04 suggests DDPM at 200 steps: the slider must reach it, not clamp it to a lower maximum
    model = ExactGaussian(SCHEDULE)
    box = sampler_explorer(model, SCHEDULE, name="ddpm", steps=20, n=2, shape=(3, 4, 4), judge=None)
    assert box.slider.max == 200
    box.slider.value = 200
    assert box.slider.value == 200 and "DDPM (ancestral), 200 steps (linspace) = 200 network calls" in box.label.value
    assert any(getattr(c, "value", None) == "(1 to 200)" for c in box.children[0].children), "the range is shown"
    small = cosine_schedule(50)
    assert sampler_explorer(ExactGaussian(small), small, steps=5, n=2, shape=(3, 4, 4), judge=None).slider.max == 50
    width = Image.open(io.BytesIO(box.image.value)).size[0]
    assert box.image.layout.width == f"{width}px" and width <= 720, "the grid at its own size"


def test_explorer_errors_name_the_argument():
    model = ExactGaussian(SCHEDULE)
    with pytest.raises(ValueError, match="shape"):
        sampler_explorer(model, SCHEDULE, shape=(2,))
    with pytest.raises(ValueError, match="max_steps"):
        sampler_explorer(model, SCHEDULE, steps=20, max_steps=10)
    with pytest.raises(ValueError, match="name"):
        sampler_explorer(model, SCHEDULE, name="euler_a")
    with pytest.raises(ValueError, match="^spacing: expected one of"):
        sampler_explorer(model, SCHEDULE, spacing="uniform")


def test_explorer_skips_while_grading(monkeypatch, capsys):
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    model = ExactGaussian(SCHEDULE)
    assert sampler_explorer(model, SCHEDULE) is None
    assert SKIPPED in capsys.readouterr().out
    assert model.calls == 0, "nothing is computed while grading"
