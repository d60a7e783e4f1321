"""Misuse and faults: each gives one clear message, a non-zero exit, and loses nothing already done."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from helpers import assert_one_line_error, run_script, start_script
from mlplab.core.data import raw_dir
from mlplab.run.records import unique_dir


@pytest.mark.slow
def test_typo_in_a_key_names_the_key(tmp_path):
    result = run_script("train.py", "trainer.max_epoch=3", f"hydra.run.dir={tmp_path}")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "max_epoch" in result.stderr and "not in struct" in result.stderr


@pytest.mark.slow
def test_missing_mnist_names_files_folder_and_mnist_root(tmp_path):
    result = run_script("train.py", "+experiment=smoke", f"data.root={tmp_path}", "data.download=false",
                        f"hydra.run.dir={tmp_path}/run")
    assert_one_line_error(result, "train-images-idx3-ubyte.gz", str(tmp_path), "MNIST_ROOT")


@pytest.mark.slow
def test_altered_mnist_file_stops_the_run_before_training(mnist, tmp_path):
    shutil.copytree(raw_dir(mnist), raw_dir(tmp_path))
    victim = raw_dir(tmp_path) / "train-labels-idx1-ubyte.gz"
    victim.write_bytes(victim.read_bytes()[:-10])
    result = run_script("train.py", "+experiment=smoke", f"data.root={tmp_path}", f"hydra.run.dir={tmp_path}/run")
    assert_one_line_error(result, "train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432")
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.slow
def test_unwritable_output_folder_says_where_to_write(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = run_script("train.py", "+experiment=smoke", f"paths.output_root={blocker}")
    assert_one_line_error(result, "cannot create the run directory", str(blocker), "paths.output_root")


@pytest.mark.slow
def test_diverging_loss_stops_at_once_and_keeps_the_last_good_checkpoint(mnist, tmp_path):
    # A learning rate multiplied by 1000 every epoch: the loss overflows after a few epochs.
    result = run_script("train.py", "+experiment=smoke", "trainer.max_epochs=30", "optimizer=sgd", "optimizer.lr=0.01",
                        "norm=none", "scheduler=step", "scheduler.step_size=1", "scheduler.gamma=1000",
                        f"hydra.run.dir={tmp_path}")
    line = assert_one_line_error(result, "training loss became", "at epoch", "step", "last good checkpoint")
    failed_epoch = int(line.split("at epoch ")[1].split(",")[0])
    assert failed_epoch >= 1
    kept = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert kept["epoch"] < failed_epoch
    assert not (tmp_path / "metrics.json").exists() and (tmp_path / "error.log").is_file()


def test_unique_dir_never_hands_out_an_existing_directory(tmp_path):
    taken = tmp_path / "12-00-00_run"
    taken.mkdir()
    first = unique_dir(str(taken))
    assert first == f"{taken}-1" and Path(first).is_dir()
    assert unique_dir(str(taken)) == first  # Hydra resolves the run dir more than once


@pytest.mark.slow
def test_runs_started_together_get_their_own_directories(mnist, tmp_path):
    processes = [start_script("train.py", "+experiment=smoke", f"paths.output_root={tmp_path}",
                              stdout=subprocess.DEVNULL) for _ in range(2)]
    for process in processes:
        assert process.wait(timeout=300) == 0, process.stderr.read()[-3000:]
    runs = sorted(p.parent for p in tmp_path.rglob("metrics.json"))
    assert len(runs) == 2
    for run in runs:
        assert json.loads((run / "metrics.json").read_text())["output_dir"] == str(run.resolve())
        assert (run / ".hydra" / "config.yaml").is_file()
