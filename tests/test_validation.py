"""dlcourse.validation: each check accepts what it should, and its error names the argument,
what was expected and what came."""

import pytest
import torch

from dlcourse.schedules import linear_schedule
from dlcourse.validation import (check_bool, check_choice, check_int, check_labels, check_number, check_positive,
                                 check_probability, check_schedule, check_sha256, check_tensor, check_timesteps)


def test_check_tensor():
    x = torch.zeros(2, 3)
    assert check_tensor("x", x, ndim=(1, 2), shape=(2, None), floating=True) is x
    with pytest.raises(TypeError, match=r"^x: expected a torch.Tensor, got list"):
        check_tensor("x", [1.0])
    with pytest.raises(ValueError, match=r"^x: expected a tensor with 4 dimensions, got shape \(2, 3\)"):
        check_tensor("x", x, ndim=4)
    with pytest.raises(ValueError, match=r"^x: expected shape \(\*, 4\), got \(2, 3\)"):
        check_tensor("x", x, shape=(None, 4))
    with pytest.raises(TypeError, match=r"^x: expected a floating-point tensor, got dtype torch.int64"):
        check_tensor("x", torch.zeros(2, dtype=torch.long), floating=True)


def test_check_timesteps():
    assert check_timesteps("t", 3, 10).dtype == torch.int64
    assert check_timesteps("t", torch.tensor([0, 9], dtype=torch.int32), 10).tolist() == [0, 9]
    with pytest.raises(ValueError, match=r"^t: expected timesteps in 0..9, got values from 0 to 10"):
        check_timesteps("t", torch.tensor([0, 10]), 10)
    with pytest.raises(TypeError, match=r"^t: .*got dtype torch.float32"):
        check_timesteps("t", torch.tensor([1.0]), 10)
    with pytest.raises(TypeError, match="got bool"):
        check_timesteps("t", True, 10)


def test_check_int():
    assert check_int("n", 3, minimum=1, maximum=3) == 3
    with pytest.raises(TypeError, match=r"^n: expected an int, got 2.5"):
        check_int("n", 2.5)
    with pytest.raises(TypeError, match=r"^n: expected an int, got True"):
        check_int("n", True)
    with pytest.raises(ValueError, match=r"^n: expected an int >= 1 and <= 3, got 4"):
        check_int("n", 4, minimum=1, maximum=3)
    with pytest.raises(ValueError, match=r"^n: expected an int >= 0, got -1"):
        check_int("n", -1, minimum=0)


def test_check_number():
    assert check_number("w", 2) == 2.0 and isinstance(check_number("w", 2), float)
    assert check_number("ab", 1.0, above=0, maximum=1) == 1.0
    with pytest.raises(ValueError, match=r"^ab: expected a number > 0 and <= 1, got 0"):
        check_number("ab", 0.0, above=0, maximum=1)
    with pytest.raises(ValueError, match=r"^w: expected a number >= 0, got -0.5"):
        check_number("w", -0.5, minimum=0)
    for bad in (float("nan"), float("inf"), "1", None, False):
        with pytest.raises(TypeError, match=r"^w: expected a finite number"):
            check_number("w", bad)


def test_check_probability_and_positive():
    assert check_probability("p", 0) == 0.0 and check_probability("p", 1) == 1.0
    for bad in (-0.1, 1.5, True, "0.5"):
        with pytest.raises(ValueError, match=r"^p: expected a probability in \[0, 1\]"):
            check_probability("p", bad)
    assert check_positive("s", 0.1) == 0.1
    with pytest.raises(ValueError, match=r"^s: expected a positive value, got 0"):
        check_positive("s", 0)
    with pytest.raises(TypeError, match=r"^k: expected a positive int, got 2.0"):
        check_positive("k", 2.0, integer=True)


def test_check_choice_schedule_labels():
    assert check_choice("kind", "a", ("a", "b")) == "a"
    with pytest.raises(ValueError, match=r"^kind: expected one of 'a', 'b', got 'c'"):
        check_choice("kind", "c", ("a", "b"))
    schedule = linear_schedule(10)
    assert check_schedule("schedule", schedule) is schedule
    with pytest.raises(TypeError, match=r"^schedule: expected a NoiseSchedule .*got str"):
        check_schedule("schedule", "cosine")
    labels = torch.tensor([0, 3, 4])
    assert check_labels("labels", labels, 4, n=3) is labels          # 4 is the null label
    with pytest.raises(ValueError, match=r"^labels: expected values in 0..4 .*got values from 0 to 5"):
        check_labels("labels", torch.tensor([0, 5]), 4)
    with pytest.raises(ValueError, match=r"^labels: expected 3 labels .*got 2"):
        check_labels("labels", torch.tensor([0, 1]), 4, n=3)
    with pytest.raises(TypeError, match=r"^labels: expected integer class labels, got dtype torch.float32"):
        check_labels("labels", torch.tensor([0.0]), 4)


def test_check_bool():
    assert check_bool("gray", False) is False
    for bad in (0, 1, None, "yes"):
        with pytest.raises(TypeError, match=r"^gray: expected True or False, got "):
            check_bool("gray", bad)


def test_check_sha256():
    digest = "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"
    assert check_sha256("sha256", digest) == digest.lower()
    for bad in (digest[:-1], digest[:-1] + "g", 123, None):
        with pytest.raises(ValueError, match=r"^sha256: expected a SHA-256 digest, 64 hexadecimal digits, got "):
            check_sha256("sha256", bad)
