"""The few-step explorer (notebook 08): samples from the same noise per sampler and number of calls, a figure, a slider."""

import pytest
import torch

from dlcourse import widgets as W
from dlcourse.widgets import SKIPPED, few_step_explorer, few_step_figure, few_step_samples


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch):
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)


def halving(x_T, calls):                       # each call halves the distance to the origin
    return x_T * 0.5 ** calls


def shifted(x_T, calls):
    return x_T + calls


def test_samples_come_from_the_same_noise_and_the_given_calls():
    x_T = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    out = few_step_samples({"halving": halving, "shifted": shifted}, x_T, 3)
    assert list(out) == ["halving", "shifted"]
    assert torch.allclose(out["halving"], x_T / 8) and torch.allclose(out["shifted"], x_T + 3)


def test_figure_is_a_png_with_a_panel_per_sampler():
    x_T = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    png = few_step_figure(few_step_samples({"a": halving, "b": shifted}, x_T, 1), lambda x: float(x.abs().mean()),
                          calls=1)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    one = few_step_figure(few_step_samples({"a": halving}, x_T, 1), calls=1)
    assert len(png) > len(one)                  # two panels draw more than one


def test_explorer_redraws_when_the_slider_moves():
    x_T = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    box = few_step_explorer({"halving": halving}, x_T, lambda x: float(x.abs().mean()))
    first = box.image.value
    box.slider.value = 4
    assert box.image.value != first and torch.allclose(box.last["halving"], x_T / 16)
    assert box.image.layout.width == f"{W._base.png_size(box.image.value)[0]}px", "shown at its own size"


def test_bad_arguments_are_named(monkeypatch):
    x_T = torch.randn(5, 2)
    with pytest.raises(ValueError, match="samplers: expected a non-empty dict"):
        few_step_samples({}, x_T, 1)
    with pytest.raises(ValueError, match="calls: expected an int >= 1, got 0"):
        few_step_samples({"a": halving}, x_T, 0)
    with pytest.raises(ValueError, match=r"samplers\['bad'\]: expected samples shaped like x_T \(5, 2\), got \(5, 3\)"):
        few_step_samples({"bad": lambda x, k: torch.zeros(5, 3)}, x_T, 1)
    with pytest.raises(ValueError, match=r"calls: expected one of \(1, 2, 4, 8\), got 3"):
        few_step_explorer({"a": halving}, x_T, calls=3)


def test_explorer_is_skipped_while_grading(monkeypatch, capsys):
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert few_step_explorer({"a": halving}, torch.randn(5, 2)) is None
    assert SKIPPED in capsys.readouterr().out
