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
