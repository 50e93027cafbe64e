"""Shared fixtures: a tiny randomly initialised toy backend and a weights file for runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Tests are small; one thread avoids oversubscription when something else uses the cores.
torch.set_num_threads(int(os.environ.get("RELAXBENCH_TEST_THREADS", "1")))

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def random_toy():
    from bench.toy.model import build_toy, toy_backend

    torch.manual_seed(0)
    dit, text = build_toy()
    return toy_backend(dit, text)


@pytest.fixture(scope="session")
def random_toy_weights(tmp_path_factory) -> Path:
    """A toy checkpoint with random weights, for runs that must not depend on the shipped one."""
    from bench.toy.model import build_toy, save_toy

    torch.manual_seed(0)
    dit, text = build_toy()
    path = tmp_path_factory.mktemp("weights") / "toy_random.safetensors"
    save_toy(path, dit, text, {"note": "random init for tests"})
    return path
