"""eval.py refuses, in one line naming the file and the key, every checkpoint no run of this version
could have saved (altered settings, non-finite weights, interpolations, a model too large to build),
before the model is built or the test set is read: never a test accuracy reported for it."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from helpers import compose_config, mnist_root, run_script
from mlplab.run import preflight
from mlplab.errors import UserError
from mlplab.run.evaluation import check_checkpoint, load_checkpoint
from mlplab.run.build import build_module

GIB = 2**30


def saved_checkpoint() -> dict[str, Any]:
    """What a run of the default config saves, as plain containers (weights of an untrained model)."""
    cfg = compose_config()
    module = build_module(cfg)
    hyper_parameters = dict(module.hparams)
    # "chunk": data settings as checkpoints saved them before the fast path had a group of its own.
    datamodule = {"root": str(mnist_root()), "batch_size": 100, "eval_batch_size": 1000, "val_size": 5000,
                  "normalize": {"mode": "minmax"}, "download": True, "seed": 42, "chunk": 8}
    return {"state_dict": module.state_dict(), "hyper_parameters": hyper_parameters,
            "datamodule_hyper_parameters": datamodule}


SAVED = saved_checkpoint()


def setter(section: str, dotted: str, value: Any) -> Callable[[dict], None]:
    def edit(checkpoint: dict) -> None:
        *parents, last = dotted.split(".")
        node = checkpoint[section]
        for parent in parents:
            node = node[parent]
        node[last] = value
    return edit


def first_weight(value: float) -> Callable[[dict], None]:
    def edit(checkpoint: dict) -> None:
        checkpoint["state_dict"]["net.layers.0.weight"][0, 0] = value
    return edit


def all_biases(value: float) -> Callable[[dict], None]:
    def edit(checkpoint: dict) -> None:
        for key, tensor in checkpoint["state_dict"].items():
            if key.endswith("bias"):
                tensor.fill_(value)
    return edit


HP, DM = "hyper_parameters", "datamodule_hyper_parameters"
# (case, edit of a saved checkpoint, what the one line must name besides the file)
HOSTILE = [
    ("nan weight", first_weight(math.nan), "weights are not finite"),
    ("inf weight", first_weight(math.inf), "state_dict.net.layers.0.weight"),
    ("-inf biases", all_biases(-math.inf), "weights are not finite"),
    ("val_size abc", setter(DM, "val_size", "abc"), "datamodule_hyper_parameters.val_size"),
    ("val_size -1", setter(DM, "val_size", -1), "datamodule_hyper_parameters.val_size"),
    ("val_size 60000", setter(DM, "val_size", 60000), "datamodule_hyper_parameters.val_size"),
    ("batch_size -3", setter(DM, "batch_size", -3), "datamodule_hyper_parameters.batch_size"),
    ("batch_size 2.5", setter(DM, "batch_size", 2.5), "datamodule_hyper_parameters.batch_size"),
    ("eval_batch_size 0", setter(DM, "eval_batch_size", 0), "datamodule_hyper_parameters.eval_batch_size"),
    ("seed abc", setter(DM, "seed", "abc"), "datamodule_hyper_parameters.seed"),
    ("seed 2**32", setter(DM, "seed", 2**32), "datamodule_hyper_parameters.seed"),
    ("normalize mode", setter(DM, "normalize.mode", "bogus"), "datamodule_hyper_parameters.normalize.mode"),
    ("normalize not a mapping", setter(DM, "normalize", 3), "datamodule_hyper_parameters.normalize"),
    ("norm eps -1", setter(HP, "norm.eps", -1), "hyper_parameters.norm.eps"),
    ("norm eps inf", setter(HP, "norm.eps", math.inf), "hyper_parameters.norm.eps"),
    ("norm momentum 2", setter(HP, "norm.momentum", 2.0), "hyper_parameters.norm.momentum"),
    ("norm unknown argument", setter(HP, "norm.bogus", 1), "hyper_parameters.norm"),
    ("activation unknown argument", setter(HP, "activation.bogus", 1), "hyper_parameters.activation"),
    ("dropout 1.5", setter(HP, "dropout.p", 1.5), "hyper_parameters.dropout.p"),
    ("l2 weight abc", setter(HP, "l2.weight", "abc"), "hyper_parameters.l2.weight"),
    ("l2 mode", setter(HP, "l2.mode", "bogus"), "hyper_parameters.l2.mode"),
    ("widths abc", setter(HP, "model.hidden_sizes", "abc"), "hyper_parameters.model.hidden_sizes"),
    ("width 0", setter(HP, "model.hidden_sizes", [100, 0]), "hyper_parameters.model.hidden_sizes"),
    ("huge widths", setter(HP, "model.hidden_sizes", [10**6, 10**6]), "GiB"),
    ("init", setter(HP, "model.init", "bogus"), "hyper_parameters.model.init"),
    ("unknown model key", setter(HP, "model.bogus", 1), "hyper_parameters.model.bogus"),
    ("input_size", setter(HP, "model.input_size", 10**9), "hyper_parameters.model.input_size"),
    ("num_classes", setter(HP, "model.num_classes", 0), "hyper_parameters.model.num_classes"),
    ("model not a mapping", setter(HP, "model", "abc"), "hyper_parameters.model"),
    ("a tensor as a setting", setter(HP, "norm.eps", torch.tensor(1.0)), "norm.eps"),
    ("interpolation", setter(HP, "optimizer.lr", "${oc.env:HOME}"), "hyper_parameters.optimizer.lr"),
    ("interpolation in data", setter(DM, "normalize.mode", "x${y}"), "datamodule_hyper_parameters.normalize.mode"),
]
IDS = [case[0] for case in HOSTILE]


def write(tmp_path: Path, edit: Callable[[dict], None], name: str = "hostile.ckpt") -> Path:
    checkpoint = copy.deepcopy(SAVED)
    edit(checkpoint)
    path = tmp_path / name
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="module")
def eval_cfg():
    return compose_config("ckpt_path=unused", "trainer=cpu", config_name="eval")


def refusal(path: Path, cfg) -> str:
    with pytest.raises(UserError) as error:
        check_checkpoint(path, load_checkpoint(path), cfg)
    return str(error.value)


@pytest.mark.parametrize("case, edit, named", HOSTILE, ids=IDS)
def test_a_hostile_checkpoint_is_refused_in_one_line_naming_file_and_key(tmp_path, eval_cfg, case, edit, named):
    path = write(tmp_path, edit)
    message = refusal(path, eval_cfg)
    assert str(path) in message and named in message and "\n" not in message, message


def test_a_checkpoint_as_a_run_saves_it_passes(tmp_path, eval_cfg):
    path = write(tmp_path, lambda checkpoint: None)
    check_checkpoint(path, load_checkpoint(path), eval_cfg)


def test_the_reported_widths_are_refused_with_the_figure_before_building(tmp_path, eval_cfg, monkeypatch):
    # [200000, 200000] needs ~150 GiB; on a machine with less free (here: told 8 GiB) nothing is allocated.
    monkeypatch.setattr(preflight, "available_bytes", lambda: (8 * GIB, "this machine"))
    path = write(tmp_path, setter(HP, "model.hidden_sizes", [200000, 200000]))
    message = refusal(path, eval_cfg)
    assert "needs about 152.8 GiB" in message and "8.0 GiB free" in message and str(path) in message, message


# Anywhere in either settings mapping, in a key or a value, at any depth: "${" is refused.
PLACES = st.sampled_from([(HP, "norm"), (HP, "activation"), (HP, "model"), (HP, "optimizer"), (HP, "l2"),
                          (DM, None)])


@given(place=PLACES, text=st.text(max_size=6), as_key=st.booleans(), nested=st.booleans())
def test_an_interpolation_anywhere_in_the_settings_is_refused(tmp_path_factory, place, text, as_key, nested):
    section, group = place
    hostile = f"{text}${{{text}}}"
    checkpoint = copy.deepcopy(SAVED)
    node = checkpoint[section] if group is None else checkpoint[section][group]
    value = [1, {"deep": hostile}] if nested else hostile
    if as_key:
        node[hostile] = 1
    else:
        node["extra"] = value
    path = tmp_path_factory.mktemp("interpolation") / "hostile.ckpt"
    torch.save(checkpoint, path)
    with pytest.raises(UserError, match="interpolation") as error:
        load_checkpoint(path)
    assert str(path) in str(error.value) and section in str(error.value)


# ---------------------------------------------------------------------------------------------
# Through eval.py, as a user runs it


def assert_refused(result, *named: str) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert "Traceback" not in output and "HYDRA_FULL_ERROR" not in output, output[-3000:]
    assert "test accuracy" not in output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    assert all(text in errors[0] for text in named), errors[0]
    return errors[0]


@pytest.mark.slow
@pytest.mark.parametrize("case, edit, named", HOSTILE, ids=IDS)
def test_eval_py_refuses_a_hostile_checkpoint_before_reading_data(tmp_path, case, edit, named):
    path = write(tmp_path, edit)
    # A data root that does not exist proves the refusal comes before the test set is read.
    result = run_script("eval.py", f"ckpt_path={path}", "trainer=cpu", f"data_root={tmp_path}/nowhere",
                        f"hydra.run.dir={tmp_path}/eval")
    assert_refused(result, str(path), named)
    assert not (tmp_path / "eval" / "metrics.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize("arguments, named", [
    ([], "ckpt_path=... is required"),
    (["ckpt_path=null"], "ckpt_path=None"),
    (["ckpt_path=''"], "ckpt_path=''"),
    (["ckpt_path=[1,2]"], "ckpt_path=[1, 2]"),
], ids=["missing", "null", "empty", "a list"])
def test_eval_py_without_a_checkpoint_says_how_to_pass_one(tmp_path, arguments, named):
    result = run_script("eval.py", *arguments, "trainer=cpu", f"hydra.run.dir={tmp_path}/eval")
    line = assert_refused(result, named)
    assert "ckpt_path=" in line


@pytest.mark.slow
def test_eval_py_tests_a_checkpoint_as_a_run_saves_it(mnist, tmp_path):
    path = write(tmp_path, lambda checkpoint: None)
    result = run_script("eval.py", f"ckpt_path={path}", "trainer=cpu", "+trainer.limit_test_batches=1",
                        f"hydra.run.dir={tmp_path}/eval")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "eval" / "metrics.json").is_file()
