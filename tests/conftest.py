"""Fixtures shared by the test modules. Plain helpers (tiny models, the toy training problem) are in `helpers.py`,
the recipe data and subprocess runs in `recipe_helpers.py`, the fake Hub in `hub_server.py`."""

import os

import datasets
import pytest
import torch

from helpers import tiny_model
from hub_server import fake_hub_in_use


@pytest.fixture
def model():
    return tiny_model()


@pytest.fixture
def datasets_cache_in_tmp_path(tmp_path, monkeypatch):
    """Keep `load_dataset`'s cache and lock files out of the user's home: in `tmp_path / "hf_datasets"`."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_datasets")


@pytest.fixture
def no_pause_after_shuffled_streams(monkeypatch):
    """`datasets` pauses 5 s after iterating a stream that interleaves shards (shuffle), a guard against an Arrow
    thread-shutdown crash on some platforms; the tests iterate such streams often and do not need it."""
    monkeypatch.setattr(datasets.config, "SLEEP_TIME_ON_THREADS_SHUTDOWN", 0)


@pytest.fixture
def full_determinism(monkeypatch):
    """`full_determinism=True` switches torch to deterministic algorithms process-wide: restore it afterwards."""
    for name in ("CUDA_LAUNCH_BLOCKING", "CUBLAS_WORKSPACE_CONFIG", "FLASH_ATTENTION_DETERMINISTIC"):
        monkeypatch.setenv(name, os.environ.get(name, ""))
    enabled = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(enabled)


@pytest.fixture
def fake_hub(monkeypatch, tmp_path_factory):
    """A running fake Hub (`hub_server.py`) with `huggingface_hub` pointed at it, in this process and in subprocesses,
    with a Hub cache of its own."""
    with fake_hub_in_use(monkeypatch, str(tmp_path_factory.mktemp("fake_hub_cache"))) as hub:
        yield hub
