"""Reruns are bit-identical on the CPU and runs describe themselves (stops and resumes: test_stops.py)."""

from __future__ import annotations

import json

import pytest
import torch

from helpers import SHORT_RUN, assert_same_weights, final_metrics, final_weights, run_script

# Every test here trains through train.py.
pytestmark = pytest.mark.slow

RUN = SHORT_RUN


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


def test_resume_with_other_settings_is_refused_naming_the_original_overrides(reference_run):
    result = run_script("train.py", "+experiment=smoke", "activation=tanh", f"resume={reference_run}")
    assert result.returncode != 0
    assert "activation" in result.stderr and "dropout=p02" in result.stderr and "Traceback" not in result.stderr
