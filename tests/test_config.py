"""Every config option composes, and every bad value stops the run with a one-line message."""

from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf

from helpers import CONF, assert_one_line_error, compose_config, options, run_script
from mlplab.run.config_checks import check_config
from mlplab.errors import ConfigError
from mlplab.run.build import build_module

GROUPS = ["activation", "norm", "dropout", "l2", "optimizer", "scheduler", "augment", "trainer", "logger",
          "data/normalize"]
EXPERIMENTS = options("experiment")


def test_the_task_experiments_exist():
    assert {"seed_pytorch", "seed_keras", "smoke", "deep_sigmoid", "deep_relu"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_passes_the_checks(compose_cfg, experiment):
    cfg = compose_cfg(f"+experiment={experiment}")
    check_config(cfg)
    assert cfg.name == experiment


@pytest.mark.slow  # 40 compositions of the whole tree: ~15 s
@pytest.mark.parametrize("group, option", [(group, option) for group in GROUPS for option in options(group)])
def test_every_group_option_composes_into_what_its_file_says(compose_cfg, group, option):
    cfg = compose_cfg(f"{group}={option}")
    if (group, option) != ("trainer", "gpu") or torch.cuda.is_available():
        check_config(cfg)
    file = OmegaConf.load(CONF / group / f"{option}.yaml")
    node = OmegaConf.to_container(OmegaConf.select(cfg, group.replace("/", ".")), resolve=False)
    for key, value in OmegaConf.to_container(file, resolve=False).items():
        if key == "defaults":
            continue
        if isinstance(value, (dict, list)):
            assert isinstance(node[key], (dict, list)), f"{group}={option}: {key}"
        else:
            assert node[key] == value, f"{group}={option}: {key}={node[key]!r}, the file says {value!r}"


def test_default_is_the_textbook_reference(compose_cfg):
    cfg = compose_cfg()
    assert list(cfg.model.hidden_sizes) == [100]
    assert cfg.norm._target_ == "torch.nn.BatchNorm1d" and cfg.activation._target_ == "torch.nn.ReLU"
    assert cfg.optimizer._target_ == "torch.optim.Adam" and cfg.optimizer.lr == 1e-3
    assert cfg.data.batch_size == 100 and cfg.trainer.max_epochs == 20
    # The sizes come from the data module: 784 pixels in, 10 classes out.
    net = build_module(cfg).net
    assert [(layer.in_features, layer.out_features) for layer in net.linear_layers()] == [(784, 100), (100, 10)]


def test_seed_keras_carries_keras_defaults(compose_cfg):
    cfg = compose_cfg("+experiment=seed_keras")
    assert cfg.model.init == "xavier" and cfg.norm.eps == 1e-3 and cfg.norm.momentum == 0.01
    assert cfg.optimizer.eps == 1e-7


# Values set on the default config; a bad value in any of them stops the run.
BAD_VALUES = [
    (["dropout.p=1.0"], "dropout.p=1.0"),
    (["dropout.p=-0.1"], "dropout.p=-0.1"),
    (["model.hidden_sizes=[100,0]"], "model.hidden_sizes"),
    (["model.hidden_sizes=[]"], "model.hidden_sizes"),
    (["optimizer.lr=0"], "optimizer.lr=0"),
    (["data.batch_size=0"], "data.batch_size=0"),
    (["data.val_size=60000"], "data.val_size=60000"),
    (["data.val_size=-1"], "data.val_size=-1"),
    (["data.batch_size=1"], "norm=batch needs at least 2"),
    (["model.init=orthogonal"], "model.init='orthogonal'"),
    (["seed=abc"], "seed='abc'"),
    (["seed=-1"], "seed=-1"),
    (["seed=1.5"], "seed=1.5"),
    (["trainer.max_epochs=-2"], "trainer.max_epochs=-2"),
    (["trainer.max_epochs=0"], "would train nothing"),
    (["trainer.log_every_n_steps=0"], "trainer.log_every_n_steps=0"),
    (["fastpath.compile=maybe"], "fastpath.compile='maybe'"),
    (["name=a/b"], "name='a/b'"),
    (["optimizer.lr=.inf"], "optimizer.lr=inf is not allowed: a finite number"),
    (["optimizer.eps=-1"], "optimizer.eps=-1"),
    (["optimizer.betas=[2,3]"], "optimizer.betas"),
    (["data.val_size=4999"], "a last training batch of 1 image"),
]
# Bad values that need another option of a group first.
BAD_COMBINATIONS = [
    (["l2=penalty", "l2.weight=-1e-4"], "l2.weight=-0.0001"),
    (["l2=decoupled", "optimizer=sgd"], "l2=decoupled"),
    (["augment=affine", "augment.rotation=-10"], "augment.rotation=-10"),
    (["optimizer=sgd", "optimizer.momentum=1.6"], "optimizer.momentum=1.6"),
    (["scheduler=step", "scheduler.step_size=0"], "scheduler.step_size=0"),
    (["+experiment=smoke", "trainer.limit_train_batches=0"], "trainer.limit_train_batches=0"),
]
if not torch.cuda.is_available():
    BAD_COMBINATIONS.append((["trainer=gpu"], "GPU(s) asked for"))
# How steps run (chunks, CUDA graphs).
STEP_VALUES = [
    (["fastpath.cuda_graph=1"], "fastpath.cuda_graph=1"),
    (["fastpath.chunk=0"], "fastpath.chunk=0"),
]
BAD_INPUTS = BAD_VALUES + BAD_COMBINATIONS + STEP_VALUES


@pytest.fixture(scope="module")
def default_cfg():
    return compose_config()


@pytest.mark.parametrize("interval", ["100", "0.5"])
def test_a_validation_interval_within_the_epoch_needs_unchunked_batches(interval):
    with pytest.raises(ConfigError, match=f"trainer.val_check_interval={interval} counts Lightning batches"):
        check_config(compose_config(f"++trainer.val_check_interval={interval}"))
    check_config(compose_config(f"++trainer.val_check_interval={interval}", "fastpath.chunk=1"))


@pytest.mark.parametrize("chunk", [1, 8])
def test_a_training_fraction_of_no_batch_is_refused(chunk):
    with pytest.raises(ConfigError, match="no batch would be trained"):
        check_config(compose_config("++trainer.limit_train_batches=0.001", f"fastpath.chunk={chunk}"))
    check_config(compose_config("++trainer.limit_train_batches=0.002", f"fastpath.chunk={chunk}"))


@pytest.mark.parametrize("overrides, expected", BAD_VALUES + STEP_VALUES)
def test_bad_values_are_caught_by_the_checks(default_cfg, overrides, expected):
    cfg = OmegaConf.merge(default_cfg, OmegaConf.from_dotlist(overrides))
    with pytest.raises(ConfigError) as error:
        check_config(cfg)
    assert expected in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("overrides, expected", BAD_COMBINATIONS)
def test_bad_combinations_are_caught_by_the_checks(compose_cfg, overrides, expected):
    with pytest.raises(ConfigError) as error:
        check_config(compose_cfg(*overrides))
    assert expected in str(error.value)


@pytest.mark.slow
@pytest.mark.parametrize("overrides, expected", BAD_INPUTS[::4] + [BAD_INPUTS[-1]])
def test_train_py_stops_before_reading_data(tmp_path, overrides, expected):
    # A data root that does not exist proves the config error comes first.
    result = run_script("train.py", *overrides, f"data.root={tmp_path}/nowhere", f"hydra.run.dir={tmp_path}/run")
    assert result.returncode != 0
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert not (tmp_path / "run" / "metrics.json").exists()
    # The refused run says so in its own folder, which a corrected rerun may reuse.
    assert json.loads((tmp_path / "run" / "status.json").read_text())["status"] == "failed"
    assert expected in (tmp_path / "run" / "error.log").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("override", ["trainer.accelerator=tpu", "++trainer.precision=bogus"])
def test_trainer_values_lightning_refuses_are_one_line_and_a_failed_status(tmp_path, override):
    result = run_script("train.py", "+experiment=smoke", override, f"data.root={tmp_path}/nowhere",
                        f"hydra.run.dir={tmp_path}/run")
    assert_one_line_error(result, "trainer settings refused by Lightning")
    assert json.loads((tmp_path / "run" / "status.json").read_text())["status"] == "failed"


@pytest.mark.slow
def test_an_unknown_option_stops_the_run_before_it_starts(tmp_path):
    result = run_script("train.py", "activation=relu6", f"hydra.run.dir={tmp_path}/run")
    assert result.returncode != 0 and "relu6" in result.stderr
    assert not (tmp_path / "run" / "status.json").exists() and not (tmp_path / "run" / "checkpoints").exists()
