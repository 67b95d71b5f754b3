"""The training loop's progress bar in a notebook: stopping at the time budget ends it green, saying so.

tqdm's notebook bar turns red ("danger") when it is closed short of its total, as after an error;
fast mode stops most training runs at a time budget long before their step budget, and a learner
would read the red bar as a failure. Runs headless: tqdm.notebook's widgets are built without a
browser, and their state is read back.
"""

import pytest
import torch
from torch import nn

import dlcourse.loop as loop
from dlcourse.loop import TrainConfig, fit

pytestmark = pytest.mark.filterwarnings("ignore::tqdm.TqdmExperimentalWarning")


@pytest.fixture
def notebook_bars(monkeypatch):
    tqdm_notebook = pytest.importorskip("tqdm.notebook")
    bars = []

    class Recorded(tqdm_notebook.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            bars.append(self)

    monkeypatch.setattr(loop, "tqdm", Recorded)
    return bars


def _fit(config):
    model = nn.Linear(2, 1)
    batches = (torch.randn(8, 2) for _ in range(10_000))
    return fit(model, batches, lambda m, x: m(x).square().mean(), config)


def _style(bar):
    return bar.container.children[1].bar_style


@pytest.mark.parametrize("fast", [False, True])
def test_a_run_stopped_by_its_time_budget_ends_green_and_says_why(notebook_bars, monkeypatch, fast):
    monkeypatch.setenv("DLCOURSE_FAST", "1") if fast else monkeypatch.delenv("DLCOURSE_FAST", raising=False)
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    result = _fit(TrainConfig(steps=1_000_000, seconds=0.05, device="cpu", precision="fp32", ema_decay=None))
    (bar,) = notebook_bars
    assert 0 < result.steps < 1_000_000
    assert _style(bar) == "success", "not 'danger': the budget ended the run as planned"
    assert bar.n == bar.total == result.steps
    expected = ("fast mode's" if fast else "the") + f" 0.05 s budget after {result.steps} of 1000000 steps"
    assert expected in bar.desc


def test_a_run_that_spends_its_steps_is_unchanged(notebook_bars):
    result = _fit(TrainConfig(steps=5, device="cpu", precision="fp32", ema_decay=None))
    (bar,) = notebook_bars
    assert result.steps == 5 and bar.n == bar.total == 5 and _style(bar) == "success"
    assert bar.desc == "training"


def test_an_interrupted_run_still_ends_red(notebook_bars):
    def loss(m, x):
        if loss.calls == 3:
            raise KeyboardInterrupt
        loss.calls += 1
        return m(x).square().mean()

    loss.calls = 0
    result = fit(nn.Linear(2, 1), (torch.randn(8, 2) for _ in range(100)), loss,
                 TrainConfig(steps=50, device="cpu", precision="fp32", ema_decay=None))
    (bar,) = notebook_bars
    assert result.interrupted and _style(bar) == "danger", "a run cut short by the learner is not dressed as done"
