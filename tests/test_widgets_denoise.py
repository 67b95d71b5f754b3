"""Tests of dlcourse.widgets.denoise (notebook 03): the preview against exact answers, and the explorer's wiring.

The exact answers come from "oracle" models that know the clean image: one that returns the
true noise, one the true x_0, one the true v. Each must give back x_0 exactly, whatever it predicts.
"""

import io

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from dlcourse.forward import q_sample
from dlcourse.models import UNet, UNetConfig
from dlcourse.parameterization import eps_from_x0, v_from_x0_eps
from dlcourse.schedules import cosine_schedule, linear_schedule
from dlcourse.widgets import SKIPPED, denoise_explorer, denoise_preview, denoise_strip, png_bytes

SCHEDULE = cosine_schedule(100)


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch):
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    monkeypatch.delenv("DLCOURSE_FAST", raising=False)


def make_images(n=3, size=8, channels=3):
    g = torch.Generator().manual_seed(7)
    return torch.rand(n, channels, size, size, generator=g) * 2 - 1


class Oracle(nn.Module):
    """Knows the clean image x_0 and returns exactly what a perfect model of ``prediction_type`` would."""

    def __init__(self, x_0, schedule, prediction_type):
        super().__init__()
        self.x_0, self.schedule, self.prediction_type = x_0, schedule, prediction_type
        self.calls = []
        self.dummy = nn.Parameter(torch.zeros(()))          # so the model has a device and a mode

    def forward(self, x_t, t, cond=None):
        self.calls.append((x_t.clone(), t.clone(), self.training))
        ab = self.schedule.alphas_cumprod[t].float()         # (N,)
        x_0 = self.x_0.expand_as(x_t)
        eps = eps_from_x0(x_t, x_0, ab)
        if self.prediction_type == "epsilon":
            return eps
        if self.prediction_type == "sample":
            return x_0.clone()
        return v_from_x0_eps(x_0, eps, ab)


class Zero(nn.Module):
    """Predicts eps = 0 everywhere: its guess of x_0 is x_t / sqrt(alpha_bar_t)."""

    def forward(self, x_t, t, cond=None):
        return torch.zeros_like(x_t)


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
def test_a_perfect_model_gives_back_x0(prediction_type):
    x_0 = make_images(1)[0]
    model = Oracle(x_0, SCHEDULE, prediction_type)
    for t in (0, 17, 50, 98):                               # t = 99 has alpha_bar ~ 0: x_0 is not recoverable
        x_t, guess = denoise_preview(model, x_0, SCHEDULE, t, seed=3, prediction_type=prediction_type)
        assert x_t.shape == guess.shape == x_0.shape
        torch.testing.assert_close(guess, x_0, atol=2e-3, rtol=1e-3)


def test_x_t_is_the_closed_form_with_the_seeded_noise():
    x_0 = make_images(1)[0]
    eps = torch.randn(x_0.shape, generator=torch.Generator().manual_seed(5))
    for t in (0, 40, 99):
        x_t, _ = denoise_preview(Zero(), x_0, SCHEDULE, t, seed=5)
        torch.testing.assert_close(x_t, q_sample(x_0[None], t, SCHEDULE, eps[None])[0])
    a, _ = denoise_preview(Zero(), x_0, SCHEDULE, 40, seed=5)
    b, _ = denoise_preview(Zero(), x_0, SCHEDULE, 40, seed=6)
    assert (a - b).abs().mean() > 0.1, "another seed must give other noise"


def test_zero_model_guess_is_x_t_over_sqrt_alpha_bar():
    x_0 = make_images(1)[0]
    x_t, guess = denoise_preview(Zero(), x_0, SCHEDULE, 30)
    torch.testing.assert_close(guess, x_t / SCHEDULE.alphas_cumprod[30].float().sqrt())


def test_strip_uses_one_noise_for_every_t_and_matches_the_preview():
    x_0 = make_images(1)[0]
    ts = [5, 30, 60, 90]
    model = Oracle(x_0, SCHEDULE, "epsilon")
    x_t, guess = denoise_strip(model, x_0, SCHEDULE, ts, seed=2)
    assert x_t.shape == guess.shape == (4,) + tuple(x_0.shape)
    ab = SCHEDULE.alphas_cumprod[ts].float().view(4, 1, 1, 1)
    eps = (x_t - ab.sqrt() * x_0) / (1 - ab).sqrt()          # the noise in each x_t
    torch.testing.assert_close(eps, eps[:1].expand_as(eps), atol=1e-4, rtol=1e-4)
    assert len(model.calls) == 1, "one batched call to the model for the whole strip"
    for i, t in enumerate(ts):
        x_t1, g1 = denoise_preview(model, x_0, SCHEDULE, t, seed=2)
        torch.testing.assert_close(x_t1, x_t[i])
        torch.testing.assert_close(g1, guess[i])


def test_model_runs_in_eval_mode_and_its_mode_is_restored():
    x_0 = make_images(1)[0]
    model = Oracle(x_0, SCHEDULE, "epsilon").train()
    denoise_preview(model, x_0, SCHEDULE, 10)
    assert model.calls[-1][2] is False and model.training
    model.eval()
    denoise_preview(model, x_0, SCHEDULE, 10)
    assert not model.training


def test_a_real_network_and_grey_images():
    torch.manual_seed(0)
    model = UNet(UNetConfig(in_channels=1, base_channels=8, channel_mults=(1, 2), num_heads=2, groups=4))
    x_0 = make_images(1, size=8, channels=1)[0]
    x_t, guess = denoise_preview(model, x_0, linear_schedule(50), 25)
    assert x_t.shape == guess.shape == (1, 8, 8) and torch.isfinite(guess).all()
    assert not torch.is_grad_enabled() or guess.grad_fn is None, "no autograd graph is kept"


@pytest.mark.parametrize("kwargs, name", [
    (dict(t=100), "timesteps"), (dict(t=-1), "timesteps"), (dict(t=2.0), "t"),
    (dict(x_0=torch.zeros(2, 3, 8, 8)), "x_0"), (dict(prediction_type="noise"), "prediction_type"),
    (dict(schedule="cosine"), "schedule"),
])
def test_errors_name_the_argument(kwargs, name):
    args = dict(model=Zero(), x_0=make_images(1)[0], schedule=SCHEDULE, t=10) | kwargs
    with pytest.raises((TypeError, ValueError), match=name):
        denoise_preview(**args)


def _png(image_widget):
    return np.asarray(Image.open(io.BytesIO(image_widget.value)))


def test_explorer_slider_and_selector_redraw():
    images = make_images(3)
    model = Oracle(images[0], SCHEDULE, "epsilon")
    box = denoise_explorer(model, images, SCHEDULE, labels=["a", "b", "c"])
    assert (box.slider.min, box.slider.max, box.slider.value) == (0, 99, 50)
    assert [o[0] for o in box.selector.options] == ["a", "b", "c"] and box.selector.value == 0
    x_0_png, x_t_png, guess_png = (_png(im) for im in box.images)
    # the oracle knows image 0, so its guess is image 0 (up to rounding to 8 bits)
    assert np.abs(guess_png.astype(int) - x_0_png.astype(int)).max() <= 1
    assert "t = 50 / 99" in box.label.value
    box.slider.value = 90
    assert not np.array_equal(_png(box.images[1]), x_t_png), "moving t redraws x_t"
    assert "t = 90 / 99" in box.label.value
    box.selector.value = 2
    assert not np.array_equal(_png(box.images[0]), x_0_png), "picking an image redraws x_0"
    assert box.images[0].value == png_bytes(images[2], 160)


def test_explorer_shows_its_three_pictures_at_one_size_with_aligned_captions():
    images = make_images(2)
    box = denoise_explorer(Oracle(images[0], SCHEDULE, "epsilon"), images, SCHEDULE, display_size=100)
    side = images.shape[-1] * (100 // images.shape[-1])                  # enlarged by a whole factor, <= 100 px
    columns = box.children[2].children
    assert len(columns) == 3
    for column, picture, caption in zip(columns, box.images, box.captions):
        # a column as wide as its picture: a long caption wraps instead of widening it
        assert column.children == (picture, caption)
        assert column.layout.width == caption.layout.width == picture.layout.width == f"{side}px"
        assert picture.layout.height == f"{side}px"
    assert box.children[2].layout.align_items == "flex-start", "pictures, then captions, start at one height"


def test_explorer_errors_name_the_argument():
    with pytest.raises(ValueError, match="images"):
        denoise_explorer(Zero(), make_images(1)[0], SCHEDULE)
    with pytest.raises(ValueError, match="labels"):
        denoise_explorer(Zero(), make_images(2), SCHEDULE, labels=["only one"])
    with pytest.raises(ValueError, match="t"):
        denoise_explorer(Zero(), make_images(2), SCHEDULE, t=100)


def test_explorer_skips_while_grading(monkeypatch, capsys):
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert denoise_explorer(Zero(), make_images(2), SCHEDULE) is None
    assert SKIPPED in capsys.readouterr().out
