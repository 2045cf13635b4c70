"""Model tests use tiny shapes: one torch thread (restored afterwards), no oversubscription on shared CPUs."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
