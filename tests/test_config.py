"""Every config option composes, and every bad value stops the run with a one-line message."""

from __future__ import annotations

import pytest

from conftest import CONF, run_script
from mlplab.checks import check_config
from mlplab.errors import ConfigError

GROUPS = ["activation", "norm", "dropout", "l2", "optimizer", "scheduler", "augment", "trainer", "logger",
          "data/normalize"]
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def test_the_task_experiments_exist():
    assert {"seed_pytorch", "seed_keras", "smoke", "deep_sigmoid", "deep_relu"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_passes_the_checks(compose_cfg, experiment):
    cfg = compose_cfg(f"+experiment={experiment}")
    check_config(cfg)
    assert cfg.name == experiment


@pytest.mark.parametrize(
    "group, option", [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))]
)
def test_every_group_option_composes(compose_cfg, group, option):
    check_config(compose_cfg(f"{group}={option}"))


def test_default_is_the_textbook_reference(compose_cfg):
    cfg = compose_cfg()
    assert list(cfg.model.hidden_sizes) == [100] and cfg.model.input_size == 784
    assert cfg.norm._target_ == "torch.nn.BatchNorm1d" and cfg.activation._target_ == "torch.nn.ReLU"
    assert cfg.optimizer._target_ == "torch.optim.Adam" and cfg.optimizer.lr == 1e-3
    assert cfg.data.batch_size == 100 and cfg.trainer.max_epochs == 20


def test_seed_keras_carries_keras_defaults(compose_cfg):
    cfg = compose_cfg("+experiment=seed_keras")
    assert cfg.model.init == "xavier" and cfg.norm.eps == 1e-3 and cfg.norm.momentum == 0.01
    assert cfg.optimizer.eps == 1e-7


BAD_INPUTS = [
    (["dropout.p=1.0"], "dropout.p=1.0"),
    (["dropout.p=-0.1"], "dropout.p=-0.1"),
    (["model.hidden_sizes=[100,0]"], "model.hidden_sizes"),
    (["model.hidden_sizes=[]"], "model.hidden_sizes"),
    (["l2=penalty", "l2.weight=-1e-4"], "l2.weight=-0.0001"),
    (["optimizer.lr=0"], "optimizer.lr=0"),
    (["data.batch_size=0"], "data.batch_size=0"),
    (["data.val_size=60000"], "data.val_size=60000"),
    (["data.val_size=-1"], "data.val_size=-1"),
    (["norm=batch", "data.batch_size=1"], "norm=batch needs at least 2"),
    (["l2=decoupled", "optimizer=sgd"], "l2=decoupled"),
    (["model.init=orthogonal"], "model.init='orthogonal'"),
]


@pytest.mark.parametrize("overrides, expected", BAD_INPUTS)
def test_bad_values_are_caught_by_the_checks(compose_cfg, overrides, expected):
    with pytest.raises(ConfigError, match=None) as error:
        check_config(compose_cfg(*overrides))
    assert expected in str(error.value)


@pytest.mark.parametrize("overrides, expected", BAD_INPUTS[::3] + [BAD_INPUTS[-3]])
def test_train_py_stops_before_reading_data(tmp_path, overrides, expected):
    # A data root that does not exist proves the config error comes first.
    result = run_script("train.py", *overrides, f"data.root={tmp_path}/nowhere", f"hydra.run.dir={tmp_path}/run")
    assert result.returncode != 0
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert not (tmp_path / "run" / "metrics.json").exists()


@pytest.mark.parametrize("override, group", [("activation=relu6", "activation"), ("norm=group", "norm")])
def test_unknown_option_names_list_the_available_ones(tmp_path, override, group):
    result = run_script("train.py", override, f"hydra.run.dir={tmp_path}/run")
    assert result.returncode != 0
    assert f"Could not find '{group}/" in result.stderr and "Available options" in result.stderr
    assert "relu" in result.stderr or "batch" in result.stderr
