"""Shared fixtures: tiny models and inputs so the suite stays fast on two CPU cores."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)  # pytest-xdist runs two workers on two cores


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
