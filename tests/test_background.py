import math
import operator

import pytest
import torch

from dlcourse.background import cpu_threads, in_background
from dlcourse.data import make_toy
from dlcourse.models import MLPDenoiser
from dlcourse.schedules import cosine_schedule
from dlcourse.training import train


def test_cpu_threads_sets_and_restores():
    before = torch.get_num_threads()
    with cpu_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads"):
        with cpu_threads(0):
            pass


def test_value_threads_and_errors_come_back():
    job = in_background(operator.add, 2, 3)
    assert job.result(timeout=120) == 5 and job.done()
    assert in_background(torch.get_num_threads, threads=1).result(timeout=120) == 1
    with pytest.raises(ValueError, match="math domain error"):
        in_background(math.sqrt, -1.0).result(timeout=120)


def test_training_in_background_returns_the_trained_model_and_leaves_the_argument():
    torch.manual_seed(0)
    model = MLPDenoiser()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = make_toy("two_moons", 512, seed=0)
    job = in_background(train, model, data, cosine_schedule(100), steps=3, batch_size=64, progress=False,
                        precision="fp32", device="cpu")
    result = job.result(timeout=300)
    assert result.steps == 3 and len(result.losses) == 3
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())      # the argument is a copy
    assert any(not torch.equal(before[k], v) for k, v in result.model.state_dict().items())


def test_bad_input_names_the_argument():
    with pytest.raises(TypeError, match="fn"):
        in_background(3)
    with pytest.raises(ValueError, match="importable"):
        in_background(lambda: 1)
    with pytest.raises(ValueError, match="threads"):
        in_background(operator.add, 1, 2, threads=0)
