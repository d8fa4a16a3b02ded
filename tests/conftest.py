"""Shared fixtures: tiny models and inputs so the suite stays fast on two CPU cores."""

from __future__ import annotations

import pytest
import torch

from vmt_adapter.models.backbones import FAMILIES

torch.set_num_threads(1)  # pytest-xdist runs two workers on two cores


def common_backbones() -> dict[str, tuple[str, int]]:
    """The common tester's backbones, read from the family registry: each family's smallest variant (built on
    the meta device, so nothing is allocated) -> its family's name and its number of blocks."""
    out = {}
    for family in FAMILIES:
        with torch.device("meta"):
            built = {v: family.build(v, 64) for v in family.variants}
        name = min(built, key=lambda v: sum(p.numel() for p in built[v].parameters()))
        out[name] = (family.name, sum(len(stage) for stage in family.stages(built[name])))
    return out


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
