"""Fixtures of the training tests (helpers live in ``train_fixtures``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from train_fixtures import write_cohort


@pytest.fixture(scope="session")
def cohort_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 cases, 12^3, half HGG (planted t1ce enhancement)."""
    return write_cohort(tmp_path_factory.mktemp("cohort"))


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one intra-op thread is faster than two on a shared 2-core machine (no spinning)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
