"""Shared fixtures."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # for `import nbtools`


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run faster on one thread, and much faster on a shared, busy CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class MetaProbe(torch.nn.Module):
    """Stands for a model on another device, as a GPU model is for data on the CPU.

    Its one parameter is on PyTorch's "meta" device (shapes, no data), so
    ``dlcourse.device.model_device`` says "meta" for it. ``forward`` fails unless every tensor it
    is given (x_t, t, labels in cond) is on the meta device, counts the calls, and answers
    ``output(x_t.shape)``, made on the CPU: the model's answer brought back (meta tensors hold no
    numbers to bring back). A function that forgets to move its inputs, or makes ``t`` or noise
    where the data is, fails here on a CPU-only machine as it would on a GPU.
    """

    def __init__(self, output=torch.zeros):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.empty(0, device="meta"))
        self.output, self.calls = output, 0

    def forward(self, x_t, t, cond=None):
        tensors = {"x_t": x_t, "t": t}
        if isinstance(cond, torch.Tensor):
            tensors["cond"] = cond
        elif isinstance(cond, dict):
            tensors.update({f"cond[{k!r}]": v for k, v in cond.items() if isinstance(v, torch.Tensor)})
        for name, value in tensors.items():
            assert isinstance(value, torch.Tensor) and value.device.type == "meta", \
                f"{name} reached the model on {getattr(value, 'device', type(value).__name__)}, not on its device (meta)"
        self.calls += 1
        return self.output(x_t.shape)


@pytest.fixture
def meta_probe():
    """``meta_probe(output=torch.zeros)``: a ``MetaProbe``, a model that lives on another device."""
    return MetaProbe
