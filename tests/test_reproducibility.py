"""Reruns are bit-identical on the CPU, runs describe themselves, and a killed run resumes exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO, mnist_root, run_script

# Dropout and affine augmentation draw from every generator the project seeds.
RUN = ["+experiment=smoke", "trainer.max_epochs=3", "trainer.limit_train_batches=60", "dropout=p02",
       "augment=affine", "trainer.limit_val_batches=2"]
TIMING_KEYS = {"fit_seconds", "wall_seconds", "output_dir"}


def final_metrics(run_dir: Path) -> dict:
    return {k: v for k, v in json.loads((run_dir / "metrics.json").read_text()).items() if k not in TIMING_KEYS}


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]


def assert_same_weights(first: Path, second: Path) -> None:
    a, b = final_weights(first), final_weights(second)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "final weights differ"


@pytest.fixture(scope="module")
def reference_run(mnist, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    result = run_script("train.py", *RUN, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def test_same_config_and_seed_give_identical_metrics_and_weights(reference_run, tmp_path):
    result = run_script("train.py", *RUN, f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert final_metrics(tmp_path) == final_metrics(reference_run)
    assert_same_weights(tmp_path, reference_run)


def test_another_seed_gives_other_weights(reference_run, tmp_path):
    result = run_script("train.py", *RUN, "seed=7", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert not torch.equal(final_weights(tmp_path)["net.layers.0.weight"],
                           final_weights(reference_run)["net.layers.0.weight"])


def test_run_directory_describes_itself(reference_run):
    info = json.loads((reference_run / "run_info.json").read_text())
    assert info["seed"] == 42 and len(info["git"]["commit"] or "") == 40 and isinstance(info["git"]["dirty"], bool)
    assert {"python", "torch", "pytorch-lightning", "hydra-core", "wandb", "torchmetrics"} <= info["versions"].keys()
    assert info["data_md5"]["train-images-idx3-ubyte.gz"] == "f68b3c2dcbeaaa9fbdd348bbdeb94873"
    assert info["hardware"]["cpu"] and "gpus" in info["hardware"]
    assert info["started"] <= info["ended"] and info["metrics"]["test_acc"] == final_metrics(reference_run)["test_acc"]
    assert (reference_run / ".hydra" / "config.yaml").is_file() and (reference_run / ".hydra" / "overrides.yaml").is_file()


def test_rerun_from_the_saved_config_reproduces_the_metrics(reference_run, tmp_path):
    result = run_script("train.py", "--config-path", str(reference_run / ".hydra"), "--config-name", "config",
                        f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert final_metrics(tmp_path) == final_metrics(reference_run)


def start_training(run_dir: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "MNIST_ROOT": str(mnist_root()), "WANDB_MODE": "offline"}
    return subprocess.Popen([sys.executable, str(REPO / "train.py"), *RUN, *extra, f"hydra.run.dir={run_dir}"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_checkpoint(process: subprocess.Popen, run_dir: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not (run_dir / "checkpoints" / "last.ckpt").exists():
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)


def test_sigkill_then_resume_equals_an_uninterrupted_run(reference_run, tmp_path):
    run_dir = tmp_path / "run"
    process = start_training(run_dir)
    wait_for_checkpoint(process, run_dir)
    process.kill()
    process.wait()
    assert not (run_dir / "metrics.json").exists()
    result = run_script("train.py", *RUN, f"resume={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert final_metrics(run_dir) == final_metrics(reference_run)
    assert_same_weights(run_dir, reference_run)
    assert json.loads((run_dir / "run_info.json").read_text())["resumed"]


def test_ctrl_c_saves_a_checkpoint_and_says_how_to_resume(mnist, tmp_path):
    process = start_training(tmp_path, "trainer.max_epochs=50")
    wait_for_checkpoint(process, tmp_path)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode != 0
    assert (tmp_path / "checkpoints" / "interrupted.ckpt").is_file()
    assert f"resume={tmp_path}" in stderr and "Traceback" not in stderr


def test_resume_with_other_settings_is_refused_naming_the_original_overrides(reference_run):
    result = run_script("train.py", "+experiment=smoke", "activation=tanh", f"resume={reference_run}")
    assert result.returncode != 0
    assert "activation" in result.stderr and "dropout=p02" in result.stderr and "Traceback" not in result.stderr
