"""Imagen's thresholding of the x_0 guess (dlcourse.systems.imagen) and the samplers' threshold_x0 hook."""

import math

import numpy as np
import pytest
import torch

from dlcourse.samplers import VPDenoiser, sample_ddim, sample_dpmpp_2m
from dlcourse.schedules import cosine_schedule
from dlcourse.systems.imagen import dynamic_threshold, saturation, static_threshold

pytestmark = pytest.mark.usefixtures("one_thread")


def numpy_dynamic(x: np.ndarray, p: float) -> np.ndarray:
    """An independent reading of Saharia et al. 2022, sec. 2.3, one sample at a time."""
    out = np.empty_like(x)
    for b in range(x.shape[0]):
        s = max(1.0, float(np.quantile(np.abs(x[b]), p)))
        out[b] = np.clip(x[b], -s, s) / s
    return out


@pytest.mark.parametrize("p", [0.995, 0.9, 0.5, 1.0])
def test_dynamic_threshold_matches_the_paper_sample_by_sample(p):
    g = torch.Generator().manual_seed(0)
    scales = torch.tensor([0.2, 1.0, 2.0, 4.0, 9.0], dtype=torch.float64)[:, None, None, None]
    x = torch.randn(5, 3, 8, 8, generator=g, dtype=torch.float64) * scales
    out = dynamic_threshold(x, p)
    np.testing.assert_allclose(out.numpy(), numpy_dynamic(x.numpy(), p), rtol=1e-12, atol=1e-12)
    assert out.abs().max() <= 1 and out.dtype == x.dtype and out.shape == x.shape


def test_a_sample_inside_the_range_is_left_alone_whatever_the_others_do():
    # a percentile over the whole batch would shrink the quiet sample because of the loud one
    quiet = torch.rand(1, 3, 16, 16) * 1.8 - 0.9
    loud = 6 * torch.randn(1, 3, 16, 16)
    out = dynamic_threshold(torch.cat([quiet, loud]))
    assert torch.equal(out[0], quiet[0])
    assert out[1].abs().max() == pytest.approx(1.0) and not torch.equal(out[1], loud[0].clamp(-1, 1))


def test_an_overshooting_sample_is_divided_by_s_not_only_clipped():
    x = torch.linspace(-4, 4, 801).reshape(1, 801)           # |x| has its 0.5 percentile at 2
    out = dynamic_threshold(x, 0.5)
    assert torch.allclose(out, x.clamp(-2, 2) / 2, atol=1e-6)
    assert float(out[0, 600]) == pytest.approx(1.0)          # x = 2 -> s / s
    assert float(out[0, 500]) == pytest.approx(0.5)          # x = 1 -> 1 / s: contrast kept inside


def test_static_threshold_clips_and_saturation_counts_the_bounds():
    x = torch.tensor([[-3.0, -0.995, 0.0, 0.5, 0.99, 2.0]])
    assert torch.equal(static_threshold(x), x.clamp(-1, 1))
    assert saturation(static_threshold(x)) == pytest.approx(4 / 6)
    assert saturation(x, level=0.4) == pytest.approx(5 / 6)


@pytest.mark.parametrize("kwargs, match", [
    (dict(x_0=torch.zeros(4)), "x_0"), (dict(x_0=torch.zeros(2, 4, dtype=torch.long)), "x_0"),
    (dict(x_0=torch.zeros(2, 4), percentile=0.0), "percentile"),
    (dict(x_0=torch.zeros(2, 4), percentile=99.5), "percentile"),
])
def test_bad_input_names_the_argument(kwargs, match):
    with pytest.raises((TypeError, ValueError), match=match):
        dynamic_threshold(**kwargs)


class ConstantSample(torch.nn.Module):
    """Predicts x_0 = value everywhere ("sample" prediction): a guess far out of range."""

    def __init__(self, value):
        super().__init__()
        self.value = value
        self.anchor = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, t, cond=None):
        return torch.full_like(x, self.value) + 0 * self.anchor


def test_the_hook_changes_the_guess_and_keeps_eps_consistent_with_x():
    schedule = cosine_schedule(100)
    den = VPDenoiser(ConstantSample(3.0), schedule, prediction_type="sample",
                     threshold_x0=lambda x_0: dynamic_threshold(x_0, 0.5))
    x = torch.randn(2, 3, 4, 4)
    x_0, eps = den(x, 50)
    ab = den.alpha_bar(50)
    assert torch.allclose(x_0, torch.ones_like(x))                        # 3 / s, s = 3
    assert torch.allclose(math.sqrt(ab) * x_0 + math.sqrt(1 - ab) * eps, x, atol=1e-5)


def test_a_clamping_hook_is_clip_x0_and_no_hook_changes_nothing():
    schedule = cosine_schedule(100)
    g = torch.Generator().manual_seed(0)
    model = torch.nn.Conv2d(3, 3, 3, padding=1)
    wrapped = lambda x, t, cond=None: 3 * model(x)                          # noqa: E731
    net = type("Net", (torch.nn.Module,), {"forward": lambda self, x, t, cond=None: wrapped(x, t, cond)})()
    net.model = model
    x_T = torch.randn(4, 3, 8, 8, generator=g)
    for sampler in (sample_ddim, sample_dpmpp_2m):
        kw = dict(prediction_type="sample", progress=False)
        assert torch.equal(sampler(net, x_T, schedule, 10, clip_x0=True, **kw),
                           sampler(net, x_T, schedule, 10, clip_x0=False, threshold_x0=static_threshold, **kw))
        assert torch.equal(sampler(net, x_T, schedule, 10, clip_x0=False, **kw),
                           sampler(net, x_T, schedule, 10, clip_x0=False, threshold_x0=None, **kw))
        assert not torch.equal(sampler(net, x_T, schedule, 10, clip_x0=False, **kw),
                               sampler(net, x_T, schedule, 10, clip_x0=False, threshold_x0=dynamic_threshold, **kw))


def test_a_hook_that_is_not_a_function_is_refused():
    with pytest.raises(TypeError, match="threshold_x0"):
        VPDenoiser(ConstantSample(1.0), cosine_schedule(10), threshold_x0=0.995)
