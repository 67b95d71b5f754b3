"""Tests of dlcourse.widgets.guidance (notebook 05): guided_grid against an exact answer, and the explorer's wiring.

The exact answer comes from a model whose classes are Gaussians: class c has pixels N(mu_c, s^2),
the null label N(mu_null, s^2). Its eps is affine in the mean, so guidance with scale w is exactly
the model of N(mu_null + w (mu_c - mu_null), s^2), and DDIM with many steps lands there.
"""

import io

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from dlcourse.plotting import image_grid
from dlcourse.samplers import sample_ddim
from dlcourse.schedules import cosine_schedule
from dlcourse.widgets import SKIPPED, guidance_explorer, guided_grid, png_bytes

pytestmark = pytest.mark.usefixtures("one_thread")
SCHEDULE = cosine_schedule(200)
SHAPE = (3, 4, 4)


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch):
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    monkeypatch.delenv("DLCOURSE_FAST", raising=False)


class GaussianClasses(nn.Module):
    """E[eps | x_t] for pixels N(mus[label], s^2); label num_classes (or None) is the null class."""

    def __init__(self, mus=(-0.5, 0.4, 0.1), s=0.2, schedule=SCHEDULE):
        super().__init__()
        self.mus, self.s, self.ab = torch.tensor(mus), s, schedule.alphas_cumprod.float()
        self.num_classes = len(mus) - 1
        self.dummy = nn.Parameter(torch.zeros(()))            # so the model has a device
        self.calls = 0

    def forward(self, x_t, t, cond=None):
        self.calls += 1
        label = torch.full((x_t.shape[0],), self.num_classes) if cond is None else cond
        mu = self.mus[label].view(-1, 1, 1, 1)
        ab = self.ab[t].view(-1, 1, 1, 1)
        return (1 - ab).sqrt() * (x_t - ab.sqrt() * mu) / (ab * self.s ** 2 + 1 - ab)


@pytest.mark.parametrize("w", [0.0, 1.0, 2.0])
def test_grid_mean_is_the_guided_mean(w):
    """Class 1 (mean 0.4) against null (0.1): samples centred on 0.1 + w * 0.3; 64 x 48 pixels, s = 0.2,
    so the standard error of the mean is 0.2 / sqrt(3072) ~ 0.004; allowed 0.02."""
    x = guided_grid(GaussianClasses(), SCHEDULE, 1, w, n=64, steps=100, image_shape=SHAPE)
    assert x.shape == (64, *SHAPE) and x.dtype == torch.float32
    assert x.mean().item() == pytest.approx(0.1 + w * 0.3, abs=0.02)


def test_grid_is_ddim_from_the_seeded_noise_and_the_same_noise_for_every_w():
    model = GaussianClasses()
    x_T = torch.randn((6, *SHAPE), generator=torch.Generator().manual_seed(3))
    expected = sample_ddim(model, x_T, SCHEDULE, 10, cond=torch.full((6,), 0), guidance_scale=1.5, progress=False)
    torch.testing.assert_close(guided_grid(model, SCHEDULE, 0, 1.5, n=6, seed=3, steps=10, image_shape=SHAPE),
                               expected)
    a = guided_grid(model, SCHEDULE, 0, 1.5, n=6, seed=4, steps=10, image_shape=SHAPE)
    assert (a - expected).abs().mean() > 0.01, "another seed gives other noise"


@pytest.mark.parametrize("kwargs, name", [
    (dict(label=2), "label"), (dict(label=-1), "label"), (dict(label=1.0), "label"),
    (dict(w=float("inf")), "w"), (dict(w=None), "w"), (dict(n=0), "n"), (dict(steps=0), "steps"),
    (dict(schedule="cosine"), "schedule"), (dict(model=nn.Linear(2, 2)), "model"),
])
def test_errors_name_the_argument(kwargs, name):
    args = dict(model=GaussianClasses(), schedule=SCHEDULE, label=0, w=1.0, image_shape=SHAPE) | kwargs
    with pytest.raises((TypeError, ValueError), match=name):
        guided_grid(**args)


def _png(image_widget):
    return np.asarray(Image.open(io.BytesIO(image_widget.value)))


class FakeJudge:
    """Accepts every image and calls it class 1."""

    def predict(self, x):
        probs = torch.zeros(x.shape[0], 2)
        probs[:, 1] = 1
        return {"valid": torch.ones(x.shape[0], dtype=torch.bool), "shape_probs": probs}


def test_explorer_builds_headless_and_redraws():
    model = GaussianClasses()
    box = guidance_explorer(model, SCHEDULE, class_names=["a", "b"], n=4, steps=5, image_shape=SHAPE,
                               judge=FakeJudge())
    assert (box.slider.min, box.slider.max, box.slider.value) == (0.0, 10.0, 1.0)
    assert [o[0] for o in box.selector.options] == ["a", "b"] and box.selector.value == 0
    first = _png(box.image)
    assert "a, w = 1 (conditional, no guidance)" in box.label.value
    assert "accepts 4 of 4, and 0 of those show a a" in box.label.value
    box.slider.value = 3.0
    assert not np.array_equal(_png(box.image), first), "moving w redraws"
    assert "w = 3 (guided)" in box.label.value
    box.selector.value = 1
    assert "b, w = 3" in box.label.value and "4 of those show a b" in box.label.value
    grid = guided_grid(model, SCHEDULE, 1, 3.0, n=4, steps=5, image_shape=SHAPE)
    assert box.image.value == png_bytes(image_grid(grid, nrow=2), 400), "the image is guided_grid's"
    width, height = Image.open(io.BytesIO(box.image.value)).size
    assert (box.image.layout.width, box.image.layout.height) == (f"{width}px", f"{height}px"), \
        "shown at its own size, not stretched to the output's width"
    assert width <= 400


def test_explorer_errors_name_the_argument():
    with pytest.raises(ValueError, match="class_names"):
        guidance_explorer(GaussianClasses(), SCHEDULE, class_names=["only one"], image_shape=SHAPE)
    with pytest.raises(ValueError, match="w"):
        guidance_explorer(GaussianClasses(), SCHEDULE, w=11.0, image_shape=SHAPE)
    with pytest.raises(ValueError, match="model"):
        guidance_explorer(nn.Linear(2, 2), SCHEDULE)


def test_explorer_is_inert_while_grading(monkeypatch, capsys):
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    model = GaussianClasses()
    assert guidance_explorer(model, SCHEDULE, image_shape=SHAPE) is None
    assert SKIPPED in capsys.readouterr().out
    assert model.calls == 0, "nothing is sampled while grading"
