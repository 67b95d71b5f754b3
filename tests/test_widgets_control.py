"""Tests of dlcourse.widgets.control (notebook 07b): drawn outlines, samples with and without a control, the picker."""

from __future__ import annotations

import pytest
import torch

from dlcourse.conditioning import load_text_to_image
from dlcourse.conditioning.controlnet import ControlledModel, ControlNet
from dlcourse.data import make_shapes
from dlcourse.samplers import sample_ddim
from dlcourse.schedules import get_schedule
from dlcourse.tensors import seeded_noise
from dlcourse.widgets._base import png_size
from dlcourse.widgets.control import control_explorer, controlled_samples, drawn_controls, outline

SCHEDULE = get_schedule("cosine", 1000)


@pytest.fixture(scope="module")
def model():
    pipe = load_text_to_image("shapes16_unet_text", device="cpu")[0]
    torch.manual_seed(0)
    return ControlledModel(pipe, ControlNet.from_base(pipe.unet))


def _perturbed(model):
    controlnet = ControlNet.from_base(model.unet)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for z in [*controlnet.zero_convs, controlnet.mid_zero_conv, controlnet.hint[-1]]:
            z.weight.copy_(0.1 * torch.randn(z.weight.shape, generator=g))
    return ControlledModel(model.base, controlnet)


def test_outline_draws_the_boundary_of_a_square_and_a_circle():
    square = outline(16, "square", (8, 8), 4)[0, 0]
    assert square.shape == (16, 16) and set(square.unique().tolist()) == {-1.0, 1.0}
    on = (square > 0).nonzero()
    # pixel centres at |dx| or |dy| = 3.5 or 4.5 with the other within the box: rows/columns 3-4 and 11-12
    assert on[:, 0].min() == 3 and on[:, 0].max() == 12 and on[:, 1].min() == 3 and on[:, 1].max() == 12
    assert square[8, 8] < 0                                            # hollow
    circle = outline(16, "circle", (8, 8), 5)[0, 0]
    yy, xx = torch.meshgrid(torch.arange(16) + 0.5, torch.arange(16) + 0.5, indexing="ij")
    r = torch.sqrt((xx - 8) ** 2 + (yy - 8) ** 2)
    assert torch.equal(circle > 0, (r - 5).abs() <= 0.5)
    with pytest.raises(ValueError, match="kind: expected 'square' or 'circle'"):
        outline(16, "star", (8, 8), 3)


def test_drawn_controls_are_edge_maps_no_caption_names():
    drawn = drawn_controls(16)
    assert len(drawn) >= 4
    for name, edges in drawn.items():
        assert edges.shape == (1, 1, 16, 16) and float(edges.min()) == -1 and float(edges.max()) == 1, name
    assert drawn_controls(32)["drawn: large ring"].shape == (1, 1, 32, 32)


def test_without_control_is_the_base_and_at_initialisation_both_rows_agree(model):
    control = make_shapes(1, size=16, seed=3).edges
    without, with_control = controlled_samples(model, SCHEDULE, control, "a large red circle in the centre", n=3,
                                               steps=3, seed=5)
    x_T = seeded_noise((3, 3, 16, 16), 5)
    pipe = model.pipe
    want = sample_ddim(pipe, x_T, SCHEDULE, 3, cond=pipe.cond(["a large red circle in the centre"] * 3),
                       prediction_type="v_prediction", progress=False)
    assert torch.equal(without, want)
    assert torch.equal(with_control, without)                          # zero convs: the control changes nothing yet


def test_a_trained_control_changes_the_samples_and_the_bound_control_is_restored(model):
    m = _perturbed(model)
    bound = -torch.ones(1, 1, 16, 16)
    m.set_control(bound)
    control = drawn_controls(16)["drawn: large ring"]
    without, with_control = controlled_samples(m, SCHEDULE, control, "", n=2, steps=3)
    assert not torch.allclose(without, with_control)
    assert m.control is bound


def test_errors_name_the_argument(model):
    control = drawn_controls(16)["drawn: large ring"]
    with pytest.raises(TypeError, match="model: expected a ControlledModel"):
        controlled_samples(model.base, SCHEDULE, control)
    with pytest.raises(TypeError, match="prompt: expected one caption"):
        controlled_samples(model, SCHEDULE, control, ["a red circle"])
    with pytest.raises(ValueError, match="control: expected a background of -1"):
        controlled_samples(model, SCHEDULE, (control + 1) / 2)
    with pytest.raises(ValueError, match="control: expected a tensor with 4 dimensions"):
        controlled_samples(model, SCHEDULE, control[0])


def test_explorer_builds_headless_redraws_and_reports_unknown_words(model):
    pytest.importorskip("ipywidgets")
    data = make_shapes(3, size=16, seed=4)
    box = control_explorer(model, SCHEDULE, data, n_data=2, n=2, steps=2)
    assert len(box.picker.options) == 2 + len(drawn_controls(16))
    first = box.image.value
    assert first[:4] == b"\x89PNG"
    width, height = png_size(first)                   # shown at its own size, never stretched to the output's width
    assert (box.image.layout.width, box.image.layout.height) == (f"{width}px", f"{height}px")
    box.picker.value = box.picker.options[-1]
    assert box.image.value != first and "with ControlNet" in box.label.value
    box.prompt.value = "a purple circle"
    assert "purple" in box.label.value


def test_explorer_is_inert_while_grading(model, monkeypatch, capsys):
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert control_explorer(model, SCHEDULE) is None
    assert "skipped while grading" in capsys.readouterr().out
