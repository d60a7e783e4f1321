"""End to end: train.py and eval.py run as a user runs them, on real MNIST."""

from __future__ import annotations

import json

import pytest
import yaml

from helpers import run_script

# Every test here starts train.py or eval.py.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke_run(mnist, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("smoke") / "run"
    result = run_script("train.py", "+experiment=smoke", "trainer.limit_test_batches=1.0",
                        "activation=gelu", "norm=layer", "dropout=p02", "l2=penalty", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir, result


def test_train_writes_config_metrics_and_checkpoints(smoke_run):
    run_dir, result = smoke_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"test_acc", "test_loss", "val_acc_best", "epochs", "wall_seconds"} <= set(metrics)
    assert 0.5 < metrics["test_acc"] <= 1.0 and metrics["epochs"] == 1
    # Fitting is part of the run, and the run is part of the process.
    assert 0 < metrics["fit_seconds"] < metrics["wall_seconds"] < 120
    assert (run_dir / "checkpoints" / "best.ckpt").is_file() and (run_dir / "checkpoints" / "last.ckpt").is_file()
    config = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    assert config["activation"]["_target_"] == "torch.nn.GELU" and config["l2"]["mode"] == "penalty"
    assert "activation=gelu" in (run_dir / ".hydra" / "overrides.yaml").read_text()
    assert f"test accuracy {metrics['test_acc']:.2%}" in result.stdout and str(run_dir) in result.stdout


def test_eval_reproduces_the_recorded_test_accuracy(smoke_run, tmp_path):
    run_dir, _ = smoke_run
    result = run_script("eval.py", f"ckpt_path={run_dir}/checkpoints/best.ckpt", "trainer=cpu",
                        f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    recorded = json.loads((run_dir / "metrics.json").read_text())["test_acc"]
    assert json.loads((tmp_path / "metrics.json").read_text())["test_acc"] == pytest.approx(recorded, abs=1e-6)


def test_eval_with_a_missing_checkpoint_says_so(tmp_path):
    result = run_script("eval.py", f"ckpt_path={tmp_path}/none.ckpt", f"hydra.run.dir={tmp_path}")
    assert result.returncode != 0 and "ckpt_path=" in result.stderr and "Traceback" not in result.stderr


def test_one_epoch_of_seed_pytorch_reaches_95_percent(mnist, tmp_path):
    result = run_script("train.py", "+experiment=seed_pytorch", "trainer=cpu", "trainer.max_epochs=1",
                        "logger=none", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "metrics.json").read_text())["test_acc"] >= 0.95
