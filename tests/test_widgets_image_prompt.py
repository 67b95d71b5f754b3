"""Tests of dlcourse.widgets.image_prompt (notebook 07b): image_prompt_samples against the sampler with the
model's lambda set and put back, lambda = 0 giving the text model's samples, and the explorer's wiring headless
and while grading."""

import pytest
import torch

from dlcourse.data import make_shapes
from dlcourse.plotting import image_grid
from dlcourse.samplers import sample_ddim
from dlcourse.schedules import cosine_schedule
from dlcourse.widgets import SKIPPED, image_prompt_explorer, image_prompt_samples, png_bytes, prompt_samples
from test_ip_adapter import small_model

pytestmark = pytest.mark.usefixtures("one_thread")
SCHEDULE = cosine_schedule(100)


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch):
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    monkeypatch.delenv("DLCOURSE_FAST", raising=False)


@pytest.fixture(scope="module")
def models():
    return small_model(scale=0.7)


@pytest.fixture(scope="module")
def references():
    return make_shapes(3, size=8, seed=4)


def test_samples_are_ddim_with_the_reference_at_lambda_and_lambda_is_put_back(models, references):
    pipe, model = models
    ref = references.images[1]
    x = image_prompt_samples(model, SCHEDULE, ref, 0.4, prompt="a red circle", w=2.0, n=3, seed=2, steps=4)
    assert model.scale == 0.7, "the model's own lambda is put back"
    x_T = torch.randn((3, 3, 8, 8), generator=torch.Generator().manual_seed(2))
    model.set_scale(0.4)
    try:
        expected = sample_ddim(model, x_T, SCHEDULE, 4, cond=model.cond(["a red circle"] * 3, ref[None]),
                               guidance_scale=2.0, prediction_type="v_prediction", progress=False)
    finally:
        model.set_scale(0.7)
    torch.testing.assert_close(x, expected)
    other = image_prompt_samples(model, SCHEDULE, references.images[2], 0.4, prompt="a red circle", w=2.0, n=3,
                                 seed=2, steps=4)
    assert (other - x).abs().mean() > 1e-4, "another reference, other samples"
    at_zero = image_prompt_samples(model, SCHEDULE, ref, 0.0, prompt="a red circle", w=2.0, n=3, seed=2, steps=4)
    text_only = prompt_samples(pipe, SCHEDULE, "a red circle", 2.0, n=3, seed=2, steps=4, image_size=8)
    assert torch.equal(at_zero, text_only), "lambda = 0 is the text model"


@pytest.mark.parametrize("kwargs, match", [
    (dict(reference=torch.zeros(1, 3, 8, 8)), "reference: expected one image"),
    (dict(reference=torch.full((3, 8, 8), 2.0)), r"values in \[-1, 1\]"),
    (dict(scale=float("nan")), "scale"), (dict(prompt="a purple circle"), "does not know 'purple'"),
    (dict(model=torch.nn.Linear(2, 2)), "model"), (dict(n=0), "n"),
])
def test_errors_name_the_argument(models, references, kwargs, match):
    args = dict(model=models[1], schedule=SCHEDULE, reference=references.images[0], scale=0.5, n=2, steps=2) | kwargs
    with pytest.raises((TypeError, ValueError), match=match):
        image_prompt_samples(**args)


class FakeJudge:
    """Reads shape 1 and colour 2 in every image."""

    def predict(self, x):
        B = x.shape[0]
        shape, color = torch.zeros(B, 4), torch.zeros(B, 6)
        shape[:, 1], color[:, 2] = 1, 1
        return {"valid": torch.ones(B, dtype=torch.bool), "shape_probs": shape, "color_probs": color}


def test_explorer_builds_headless_and_redraws(models, references):
    _, model = models
    box = image_prompt_explorer(model, SCHEDULE, references.images, names=references.captions, n=2, steps=2,
                                scale=0.5, judge=FakeJudge())
    assert [o[0] for o in box.picker.options] == references.captions
    assert (box.slider.min, box.slider.max, box.slider.value) == (0.0, 1.0, 0.5)
    assert box.label.value == ("left: the reference; right: 2 samples at lambda = 0.5 with the empty prompt; "
                               "the judge reads the reference's shape in 2 of 2, its colour in 2")
    x = image_prompt_samples(model, SCHEDULE, references.images[0], 0.5, n=2, steps=2)
    ref = references.images[:1]
    assert box.image.value == png_bytes(image_grid(torch.cat([ref, torch.ones_like(ref), x]), nrow=4), 520)
    first = box.image.value
    box.picker.value = 2
    assert box.image.value != first
    box.slider.value = 0.0
    assert "lambda = 0 with" in box.label.value
    box.text.value = "a purple circle"
    box.button.click()
    assert "does not know 'purple'" in box.label.value
    box.text.value = "a small red square"
    box.button.click()
    assert "with a small red square" in box.label.value
    assert model.scale == 0.7


def test_explorer_checks_its_arguments_and_is_inert_while_grading(models, references, monkeypatch, capsys):
    _, model = models
    with pytest.raises(ValueError, match="names"):
        image_prompt_explorer(model, SCHEDULE, references.images, names=["one"])
    with pytest.raises(ValueError, match="references"):
        image_prompt_explorer(model, SCHEDULE, references.images[0])
    with pytest.raises(ValueError, match="scale"):
        image_prompt_explorer(model, SCHEDULE, references.images, scale=1.5)
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert image_prompt_explorer(model, SCHEDULE, references.images) is None
    assert SKIPPED in capsys.readouterr().out
