"""Every public function that takes a model feeds it on the model's device, wherever the caller's tensors are.

A GPU is not needed to catch the bug of notebook 03 on a GPU (noise made on the CPU handed to a model on
CUDA): conftest's ``MetaProbe`` lives on PyTorch's "meta" device, a device that is never the CPU, and
refuses any input that is not there. The functions are called with CPU tensors, as a learner would; each must move
them (and the noise it draws) to the model's device before the first call. What happens after the first
call does not matter here (meta tensors hold no values, so computing a figure from them fails); only
what the model was given.
"""

import pytest
import torch

from dlcourse.metrics import guidance_sweep
from dlcourse.samplers import LOOPS, SAMPLERS, VPDenoiser, get_sampler, vp_times
from dlcourse.schedules import linear_schedule

from conftest import MetaProbe


def MetaModel(num_classes=None):
    """conftest's ``MetaProbe`` answering on the meta device, with ``num_classes`` for guidance."""
    probe = MetaProbe(output=lambda shape: torch.empty(shape, device="meta"))
    probe.num_classes = num_classes
    return probe


def fed_on_the_models_device(call, model):
    """Run ``call(model)``; fail if the model got a tensor elsewhere, or was never called."""
    try:
        call(model)
    except AssertionError:       # the probe's: an input reached the model on another device
        raise
    except Exception:            # after the first call: computing with meta tensors' (absent) values
        pass
    assert model.calls > 0, "the model was never called"


SCHEDULE = linear_schedule(50)


@pytest.mark.parametrize("name", list(SAMPLERS))
@pytest.mark.parametrize("guidance_scale", [1.0, 3.0])
def test_samplers_move_cpu_noise_and_labels_to_the_model(name, guidance_scale):
    x_T, labels = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 0])
    fed_on_the_models_device(lambda m: get_sampler(name)(
        m, x_T, SCHEDULE, 5, cond=labels, guidance_scale=guidance_scale,
        generator=torch.Generator().manual_seed(0), progress=False), MetaModel(num_classes=3))


@pytest.mark.parametrize("name", list(LOOPS))
def test_loops_move_cpu_noise_and_dict_conditions_to_the_model(name):
    x_T, cond = torch.randn(2, 4), {"label": torch.tensor([1, 0]), "context": torch.randn(2, 5, 3)}
    fed_on_the_models_device(lambda m: LOOPS[name](VPDenoiser(m, SCHEDULE, cond=cond), x_T, vp_times(SCHEDULE, 4),
                                                   progress=False), MetaModel())


def test_notebook_03s_energy_distance_cell():
    """The cell that broke on CUDA: DDPM from CPU noise with a CPU generator, the model elsewhere."""
    x_T = torch.randn(100, 2, generator=torch.Generator().manual_seed(0))
    fed_on_the_models_device(lambda m: get_sampler("ddpm")(m, x_T, SCHEDULE, steps=25, clip_x0=False,
                                                           generator=torch.Generator().manual_seed(1),
                                                           progress=False), MetaModel())


def test_guidance_sweep_samples_on_the_model_device():
    from dlcourse.data import make_shapes
    from dlcourse.judge import load_judge

    reference = make_shapes(60, size=16, seed=3)
    fed_on_the_models_device(lambda m: guidance_sweep(m, SCHEDULE, load_judge(16), reference, [2.0], classes=[0],
                                                      n=2, steps=2), MetaModel(num_classes=3))


def test_the_probe_itself_catches_a_cpu_input():
    with pytest.raises(AssertionError, match="x_t reached the model on cpu"):
        MetaModel()(torch.randn(2, 2), torch.zeros(2, dtype=torch.long))
