"""Shared pytest settings: deterministic, small thread counts (CI has 2 cores)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _fixed_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def tiny_model():
    """A tiny random Locater (configs/model/tiny.yaml) in eval mode."""
    import locater

    torch.manual_seed(0)
    return locater.build_model("configs/model/tiny.yaml").eval()
