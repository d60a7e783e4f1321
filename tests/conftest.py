"""Shared fixtures: the real MNIST folder, composed configs, and running the entry points."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"


def mnist_root() -> Path:
    return Path(os.environ.get("MNIST_ROOT", REPO.parent / "shared" / "data")).resolve()


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

    def _compose(*overrides: str, config_name: str = "config") -> DictConfig:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose(config_name=config_name, overrides=list(overrides))

    return _compose


def run_script(script: str, *overrides: str, cwd: Path = REPO, env: dict | None = None, timeout: int = 600):
    """Run train.py or eval.py as a user would; return the CompletedProcess."""
    full_env = {**os.environ, "MNIST_ROOT": str(mnist_root()), "WANDB_MODE": "offline", **(env or {})}
    return subprocess.run(
        [sys.executable, str(REPO / script), *overrides],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
