"""Tests of dlcourse.widgets.score (notebook 09): the frames against a Gaussian mixture's exact score; the explorer."""

import io

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from dlcourse.plotting import grid_points  # noqa: E402
from dlcourse.score import eight_gaussians_mixture  # noqa: E402
from dlcourse.widgets import SKIPPED, score_explorer, score_frame_png, score_frames  # noqa: E402

MIX = eight_gaussians_mixture()
SIGMAS = [2.0, 0.5, 0.1]


def exact(x, sigma):
    return MIX.smoothed(sigma).score(x)


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch):
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    monkeypatch.delenv("DLCOURSE_FAST", raising=False)


def test_frames_hold_the_exact_score_on_the_grid_at_each_level():
    samples = [MIX.smoothed(s).sample(50, torch.Generator().manual_seed(i)) for i, s in enumerate(SIGMAS)]
    frames = score_frames(exact, SIGMAS, samples, lim=2.0, n=9)
    assert [f.sigma for f in frames] == SIGMAS
    for f, s, pts in zip(frames, SIGMAS, samples):
        assert torch.equal(f.points, grid_points(2.0, 9))
        assert torch.allclose(f.vectors, MIX.smoothed(s).score(grid_points(2.0, 9)))
        assert torch.equal(f.samples, pts)
    # smoothing makes the field shorter: the mean length falls as sigma grows
    mean_length = [float(f.vectors.norm(dim=1).mean()) for f in frames]
    assert mean_length[0] < mean_length[1] < mean_length[2]


def test_frames_accept_samples_as_a_dict_with_gaps():
    frames = score_frames(exact, SIGMAS, {1: torch.zeros(4, 2)}, n=5)
    assert frames[0].samples is None and frames[1].samples.shape == (4, 2) and frames[2].samples is None


@pytest.mark.parametrize("kwargs, name", [
    (dict(sigmas=[]), "sigmas"),
    (dict(sigmas=SIGMAS, samples=[torch.zeros(3, 2)]), "samples"),
    (dict(sigmas=SIGMAS, samples=[torch.zeros(3, 3)] * 3), r"samples\[0\]"),
])
def test_frames_errors_name_the_argument(kwargs, name):
    with pytest.raises((ValueError, TypeError), match=f"^{name}"):
        score_frames(exact, **kwargs)


def test_frames_check_the_score_functions_output():
    with pytest.raises(ValueError, match=r"^score_fn\(points, sigma\)"):
        score_frames(lambda x, s: x[:, :1], SIGMAS)


def test_frame_png_is_an_image():
    png = score_frame_png(score_frames(exact, [0.3], [torch.zeros(5, 2)], n=5)[0])
    assert Image.open(io.BytesIO(png)).format == "PNG"


def test_explorer_moves_between_levels_headless():
    box = score_explorer(exact, SIGMAS, n=7)
    assert box.slider.max == 3 and "sigma = 2" in box.label.value
    first = box.image.value
    box.slider.value = 3
    assert box.image.value != first and "sigma = 0.1" in box.label.value
    assert box.image.layout.width == "400px", "the 400 px figure is shown at its own size"


def test_explorer_slider_counts_levels_as_the_title_does(monkeypatch):
    import dlcourse.widgets.score as module

    titles = {}

    def recording(frame, lim=2.5, clim=None, title=None):
        png = score_frame_png(frame, lim, clim, title)
        titles[png] = title
        return png

    monkeypatch.setattr(module, "score_frame_png", recording)
    box = score_explorer(exact, SIGMAS, n=7)
    assert (box.slider.min, box.slider.max, box.slider.value) == (1, 3, 1)
    for level in (1, 3, 2):
        box.slider.value = level
        sigma = SIGMAS[level - 1]
        assert titles[box.image.value] == f"level {level} of 3: sigma = {sigma:.3g}"
        assert box.label.value.startswith(f"level {level} of 3, sigma = {sigma:.4g}")


def test_explorer_builds_nothing_while_grading(monkeypatch, capsys):
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    calls = []
    assert score_explorer(lambda x, s: calls.append(s) or x, SIGMAS) is None
    assert calls == [] and SKIPPED in capsys.readouterr().out
