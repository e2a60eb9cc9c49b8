"""Shared fixtures: deterministic seeds, two threads (the CI machine has two cores)."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("MDLPRUNE_QUICK", "1")
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
