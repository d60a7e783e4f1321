"""wandb offline runs, Hydra multirun through submitit, and DDP over two CPU processes."""

from __future__ import annotations

import json
import subprocess

import pytest

from helpers import run_script, start_script


def wandb_records(run_dir) -> bytes:
    files = list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1, files
    return files[0].read_bytes()


@pytest.mark.slow
def test_offline_wandb_runs_in_parallel_each_keep_config_and_summary(mnist, tmp_path):
    runs = [tmp_path / "relu", tmp_path / "gelu"]
    processes = [start_script("train.py", "+experiment=smoke", "logger=default", f"activation={run.name}",
                              f"hydra.run.dir={run}", stderr=subprocess.STDOUT) for run in runs]
    outputs = [process.communicate(timeout=300)[0] for process in processes]
    for run, process, output in zip(runs, processes, outputs):
        assert process.returncode == 0, output[-3000:]
        assert "wandb sync" in output
        records = wandb_records(run)
        test_acc = json.loads((run / "metrics.json").read_text())["test_acc"]
        assert b"final/test_acc" in records and str(test_acc).encode()[:6] in records
        assert f"torch.nn.{'ReLU' if run.name == 'relu' else 'GELU'}".encode() in records
        assert b"val/acc" in records and (run / "csv" / "metrics.csv").is_file()


@pytest.mark.slow
def test_submitit_local_multirun_runs_each_job(mnist, tmp_path):
    result = run_script("train.py", "-m", "hydra/launcher=submitit_local", "+experiment=smoke", "seed=1,2",
                        f"hydra.sweep.dir={tmp_path}", timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    metrics = [json.loads((tmp_path / str(job) / "metrics.json").read_text()) for job in (0, 1)]
    assert [m["seed"] for m in metrics] == [1, 2]
    assert metrics[0]["test_acc"] != metrics[1]["test_acc"] or metrics[0]["test_loss"] != metrics[1]["test_loss"]


@pytest.mark.slow
def test_ddp_over_two_cpu_processes_finishes_with_metrics(mnist, tmp_path):
    result = run_script("train.py", "+experiment=smoke", "trainer=ddp", "trainer.accelerator=cpu",
                        f"hydra.run.dir={tmp_path}", timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["test_acc"] > 0.5
    # 20 batches of 100 per rank: each of the 2 ranks sees half of every epoch.
    assert metrics["global_steps"] == 20
    assert json.loads((tmp_path / "run_info.json").read_text())["metrics"] == metrics
