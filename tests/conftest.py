"""Fixtures: the real MNIST folder and composed configs. Shared plain code lives in tests/helpers."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import settings
from omegaconf import DictConfig

from helpers import SHORT_RUN, compose_config, mnist_root, run_script

# Generated hostile values: a sample on a developer's machine, four times as many under CI.
settings.register_profile("dev", max_examples=80, deadline=None)
settings.register_profile("ci", max_examples=320, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(scope="session")
def mnist() -> Path:
    """The real MNIST root; a test needing it fails under CI when it is missing, and skips elsewhere."""
    root = mnist_root()
    if not (root / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").is_file():
        message = f"real MNIST not found under {root}/MNIST/raw; set MNIST_ROOT"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return root


@pytest.fixture
def compose_cfg() -> Callable[..., DictConfig]:
    """Compose the real config tree with overrides, as train.py would."""
    return compose_config


@pytest.fixture(scope="session")
def reference_run(mnist, tmp_path_factory) -> Path:
    """SHORT_RUN trained once without interruption, for the tests that compare against it."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    result = run_script("train.py", *SHORT_RUN, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir
