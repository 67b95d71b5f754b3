"""Device choice and the measured choice of autocast precision (a fake clock makes the timings exact)."""

import pytest
import torch

import dlcourse.device as device_mod
from dlcourse.device import autocast_dtype, fastest_autocast_dtype, get_device, model_device


def test_get_device_and_model_device():
    assert get_device("cpu") == torch.device("cpu")
    assert model_device(torch.nn.Linear(2, 2)) == torch.device("cpu")
    assert model_device(lambda x: x) == torch.device("cpu")


def test_bf16_is_a_candidate_only_on_a_cpu_that_computes_it_natively(monkeypatch):
    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda: True)
    assert autocast_dtype("cpu") is torch.bfloat16
    assert autocast_dtype("cuda") is None and autocast_dtype("mps") is None
    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda: False)
    assert autocast_dtype("cpu") is None


def fake_steps(monkeypatch, cost):
    """A step function whose step in precision `dtype` takes exactly cost[dtype] seconds of a fake clock."""
    clock, calls = {"now": 0.0}, []
    monkeypatch.setattr(device_mod.time, "perf_counter", lambda: clock["now"])

    def step(dtype):
        calls.append(dtype)
        clock["now"] += cost[dtype]
    return step, calls


@pytest.mark.parametrize("bf16_seconds, expected", [
    (0.90, torch.bfloat16),     # 10% faster: kept
    (0.97, None),               # 3% faster: within the 5% margin, fp32 stays
    (1.20, None),               # slower
])
def test_fastest_autocast_dtype_keeps_the_faster_beyond_the_margin(monkeypatch, bf16_seconds, expected):
    monkeypatch.setattr(device_mod, "_measured", {})
    step, calls = fake_steps(monkeypatch, {None: 1.0, torch.bfloat16: bf16_seconds})
    assert fastest_autocast_dtype(step, (None, torch.bfloat16), key="model") is expected
    # one warm-up each, then 3 timed steps alternating between the two
    assert calls == [None, torch.bfloat16] * 4
    chosen, medians = device_mod.precision_measurements()["model"]
    assert chosen is expected and medians == {None: 1.0, torch.bfloat16: pytest.approx(bf16_seconds)}


def test_the_decision_is_cached_per_key(monkeypatch):
    monkeypatch.setattr(device_mod, "_measured", {})
    step, calls = fake_steps(monkeypatch, {None: 1.0, torch.bfloat16: 0.5})
    assert fastest_autocast_dtype(step, (None, torch.bfloat16), key=("UNet", (32, 3, 16, 16), "cpu")) is torch.bfloat16
    n = len(calls)
    assert fastest_autocast_dtype(step, (None, torch.bfloat16), key=("UNet", (32, 3, 16, 16), "cpu")) is torch.bfloat16
    assert len(calls) == n, "measured once per key"
    fastest_autocast_dtype(step, (None, torch.bfloat16), key=("UNet", (64, 3, 16, 16), "cpu"))
    assert len(calls) == 2 * n, "another input shape is measured again"
