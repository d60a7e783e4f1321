"""Every value a user can set, of every key of every group, ends in a check's one line or a run:
never a traceback, never Hydra's hint, and no smoke check passed off as a result."""

from __future__ import annotations

import copy
import functools
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import DictConfig, OmegaConf

from helpers import CONF, assert_one_line_error, compose_config, options, run_script
from mlplab.run.config_checks import check_config
from mlplab.run.cli import report_errors
from mlplab.errors import ConfigError

GROUPS = ("activation", "norm", "optimizer", "scheduler", "augment", "dropout", "l2", "model", "data", "trainer")
HOSTILE = st.one_of(
    st.sampled_from([-1, 0, -1.0e30, 1.0e30, math.nan, math.inf, -math.inf, "abc", "", None, True, False, [], {},
                     [1, 2, 3], {"a": 1}, 2**64, -(2**63)]),
    st.integers(), st.floats(allow_nan=True), st.text(max_size=8),
)


def leaf_keys() -> list[tuple[str, str, str]]:
    """(group, option, dotted key) for every settable value of every option of every group."""
    found = []
    for group in GROUPS:
        for option in options(group) or [None]:
            cfg = compose_config(*([f"{group}={option}"] if option else []))
            node = OmegaConf.to_container(cfg[group], resolve=False) or {}
            for key in flatten(node, group):
                found.append((group, option or "", key))
    return found


def flatten(node, prefix: str) -> list[str]:
    if isinstance(node, dict):
        return [key for name, value in node.items() if not str(name).startswith("_")
                for key in flatten(value, f"{prefix}.{name}")]
    return [prefix]


KEYS = leaf_keys()


@functools.cache
def composed(group: str, option: str) -> DictConfig:
    return compose_config(*([f"{group}={option}"] if option else []))


# Each example builds the config's objects once (~0.1 s); the number of draws is the profile's
# (tests/conftest.py: more under CI).
@settings(suppress_health_check=[HealthCheck.too_slow])
@given(case=st.sampled_from(KEYS), value=HOSTILE)
def test_a_hostile_value_of_any_key_is_refused_in_one_line_or_accepted(case, value):
    group, option, key = case
    cfg = copy.deepcopy(composed(group, option))
    OmegaConf.update(cfg, key, value, merge=False, force_add=True)
    try:
        check_config(cfg)
    except ConfigError as error:
        assert "\n" not in str(error)
        assert key.split(".")[0] in str(error) or key.split(".")[-1] in str(error), (key, value, str(error))


def test_an_unexpected_error_is_one_line_naming_the_traceback_file(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped, report_errors(tmp_path):
        raise RuntimeError("a library broke\nover two lines")
    assert stopped.value.code == 1
    printed = capsys.readouterr().err.strip().splitlines()
    assert printed == [f"error: RuntimeError: a library broke over two lines (traceback in {tmp_path / 'error.log'})"]
    assert "Traceback" in (tmp_path / "error.log").read_text()


@pytest.mark.parametrize("error", [MemoryError(), RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried "
                                                               "to allocate 80000000000 bytes")])
def test_running_out_of_memory_says_so_and_what_to_change(tmp_path, capsys, error):
    with pytest.raises(SystemExit), report_errors(tmp_path):
        raise error
    line = capsys.readouterr().err.strip()
    assert line.startswith("error: out of memory") and "model.hidden_sizes" in line and "\n" not in line


def test_a_model_too_large_for_this_machine_is_refused_before_allocating():
    with pytest.raises(ConfigError, match=r"needs about \d+\.\d GiB .* free"):
        check_config(compose_config("model.hidden_sizes=[100000,100000]"))


# (overrides, what the one line must name): the reported cases and their neighbours.
REFUSED = [
    (["norm.eps=-1"], "norm"),
    (["norm=layer", "norm.eps=-1"], "norm"),
    (["+optimizer.weight_decay=-1"], "weight_decay"),
    (["optimizer=sgd", "optimizer.nesterov=true", "optimizer.momentum=0"], "optimizer"),
    (["+trainer.check_val_every_n_epoch=0"], "check_val_every_n_epoch"),
    (["+trainer.accumulate_grad_batches=0"], "accumulate_grad_batches"),
    (["+trainer.gradient_clip_val=1"], "gradient_clip_val"),
    (["model.hidden_sizes=[100000,100000]"], "GiB"),
    (["activation=foo"], "activation/foo"),
    (["seed=[1"], "[1"),
    (["trainer.max_epochs=abc"], "max_epochs"),
    (["+activation.bogus=1"], "bogus"),
    (["activation._target_=os.system"], "os.system"),
]


@pytest.mark.slow
@pytest.mark.parametrize("overrides, named", REFUSED, ids=[" ".join(case[0]) for case in REFUSED])
def test_train_py_refuses_in_one_line_before_reading_data(tmp_path, overrides, named):
    result = run_script("train.py", "+experiment=smoke", *overrides, f"paths.output_root={tmp_path}",
                        "data.root=/nonexistent-so-reading-data-would-fail", "data.download=false")
    line = assert_one_line_error(result, named)
    assert "HYDRA_FULL_ERROR" not in result.stderr + result.stdout and "Traceback" not in result.stdout
    assert "MNIST" not in line


@pytest.mark.slow
def test_hydra_full_error_still_gives_the_whole_traceback(tmp_path):
    result = run_script("train.py", "activation=foo", f"paths.output_root={tmp_path}", env={"HYDRA_FULL_ERROR": "1"})
    assert result.returncode != 0 and "Traceback" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("smoke", ["+trainer.fast_dev_run=true", "trainer.limit_test_batches=2",
                                   "trainer.limit_train_batches=1", "trainer.limit_val_batches=1",
                                   "+trainer.overfit_batches=1", "+trainer.max_steps=3"])
def test_a_smoke_check_is_recorded_as_such_never_as_a_result(tmp_path, smoke):
    run = tmp_path / "run"
    # 5000 training images: a whole epoch in seconds, so each limit alone decides what is a smoke check.
    result = run_script("train.py", "+experiment=smoke", "trainer.limit_train_batches=1.0", "data.val_size=55000",
                        "trainer.limit_val_batches=1.0", "trainer.limit_test_batches=1.0", smoke, f"hydra.run.dir={run}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "smoke check only" in result.stdout and smoke.lstrip("+").split("=")[0] in result.stdout, result.stdout
    status = json.loads((run / "status.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    assert status["status"] == "finished" and status["smoke"] and metrics["smoke"] == status["smoke"]


@pytest.mark.slow
def test_a_full_run_is_not_a_smoke_check(tmp_path):
    run = tmp_path / "run"
    result = run_script("train.py", "+experiment=smoke", "trainer.limit_train_batches=1.0",
                        "trainer.limit_val_batches=1.0", "trainer.limit_test_batches=1.0", "data.val_size=55000",
                        f"hydra.run.dir={run}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((run / "metrics.json").read_text())["smoke"] is None


def test_conf_dir_of_the_tests_is_the_project_conf():
    assert (CONF / "config.yaml").is_file()


# Values that were accepted and gave a broken finished run, were silently ignored, or failed only
# after the data was read: (overrides, the key the one line must name).
BROKEN_PROMISES = [
    (["norm=rms", "norm.eps=inf"], "norm.eps"),
    (["norm=layer", "norm.eps=nan"], "norm.eps"),
    (["norm=batch", "norm.eps=0"], "norm.eps"),
    (["norm=rms", "norm.eps=abc"], "norm.eps"),
    (["norm.momentum=1.5"], "norm.momentum"),
    (["norm.momentum=-0.1"], "norm.momentum"),
    (["norm.momentum=abc"], "norm.momentum"),
    (["+optimizer.fused=abc"], "optimizer.fused"),
    (["+optimizer.foreach=1"], "optimizer.foreach"),
    (["+optimizer.amsgrad=abc"], "optimizer.amsgrad"),
    (["+optimizer.maximize=yes"], "optimizer.maximize"),
    (["+optimizer.capturable=0"], "optimizer.capturable"),
    (["+optimizer.differentiable=[]"], "optimizer.differentiable"),
    (["optimizer=sgd", "optimizer.nesterov=abc"], "optimizer.nesterov"),
    (["data.download=abc"], "data.download"),
    (["data.download=1"], "data.download"),
    (["+model.bogus=1"], "model.bogus"),
    (["+model.hidden_size=[100]"], "model.hidden_size"),
    (["tags=abc"], "tags"),
    (["tags=[1,{a:b}]"], "tags"),
    (["tags=['']"], "tags"),
    (["tags=null"], "tags"),
    (["data.seed=abc"], "data.seed"),
    (["data.seed=-1"], "data.seed"),
    (["data.seed=4294967296"], "data.seed"),
    (["data.seed=1.5"], "data.seed"),
    (["name=null"], "name"),
    (["name=''"], "name"),
    (["+trainer.val_check_interval=abc"], "trainer.val_check_interval"),
    (["+trainer.val_check_interval=0"], "trainer.val_check_interval"),
    (["+trainer.val_check_interval=1.5"], "trainer.val_check_interval"),
    (["+trainer.val_check_interval=-2"], "trainer.val_check_interval"),
    (["+trainer.val_check_interval=true"], "trainer.val_check_interval"),
]
PROMISE_IDS = [" ".join(case[0]) for case in BROKEN_PROMISES]
# Their neighbours that work.
STILL_ACCEPTED = [["norm.momentum=null"], ["+optimizer.foreach=null"], ["+optimizer.fused=false"],
                  ["optimizer=adam", "+optimizer.amsgrad=true"], ["tags=[a,b]"], ["tags=[]"], ["data.seed=0"],
                  ["data.download=false"], ["+trainer.val_check_interval=1.0"],
                  ["+trainer.val_check_interval=0.5", "fastpath.chunk=1"],
                  ["+trainer.val_check_interval=10", "fastpath.chunk=1"]]


@pytest.mark.parametrize("overrides, named", BROKEN_PROMISES, ids=PROMISE_IDS)
def test_a_broken_promise_is_refused_by_the_checks(overrides, named):
    with pytest.raises(ConfigError) as error:
        check_config(compose_config("+experiment=smoke", *overrides))
    message = str(error.value)
    assert message.startswith(f"{named}=") and "\n" not in message, message


@pytest.mark.parametrize("overrides", STILL_ACCEPTED, ids=[" ".join(case) for case in STILL_ACCEPTED])
def test_the_neighbours_of_a_broken_promise_pass(overrides):
    check_config(compose_config("+experiment=smoke", *overrides))


def test_an_address_space_limit_bounds_the_memory_a_run_may_plan_for(monkeypatch):
    import resource

    from mlplab.run import preflight

    limit = 5_000_000 * 1024  # ulimit -v 5000000
    monkeypatch.setattr(resource, "getrlimit", lambda which: (limit, limit) if which == resource.RLIMIT_AS
                        else (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    free, where = preflight.available_bytes()
    assert free < limit and "ulimit -v" in where  # what the process already maps is not free
    with pytest.raises(ConfigError, match=r"needs about 7\.\d GiB .* ulimit -v of 4\.8 GiB\) has \d+\.\d GiB free"):
        check_config(compose_config("+experiment=smoke", "model.hidden_sizes=[20000,20000]"))


def assert_refused_before_data(result, run_dir, named: str) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert "Traceback" not in output and "HYDRA_FULL_ERROR" not in output, output[-3000:]
    line = assert_one_line_error(result, named)
    assert "MNIST" not in line and not (run_dir / "metrics.json").exists()
    if (run_dir / "status.json").exists():
        assert json.loads((run_dir / "status.json").read_text())["status"] == "failed"
    return line


@pytest.mark.slow
@pytest.mark.parametrize("overrides, named", BROKEN_PROMISES, ids=PROMISE_IDS)
def test_train_py_refuses_a_broken_promise_before_reading_data(tmp_path, overrides, named):
    run_dir = tmp_path / "run"
    # The hostile overrides come last, so the safe values before them cannot mask them.
    result = run_script("train.py", "+experiment=smoke", f"hydra.run.dir={run_dir}",
                        "data.root=/nonexistent-so-reading-data-would-fail", "data.download=false", *overrides)
    assert_refused_before_data(result, run_dir, f"{named}=")


@pytest.mark.slow
def test_train_py_under_an_address_space_limit_is_refused_before_reading_data(tmp_path):
    import resource
    import subprocess

    from helpers import start_script

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (5_000_000 * 1024, 5_000_000 * 1024))

    run_dir = tmp_path / "run"
    process = start_script("train.py", "+experiment=smoke", "model.hidden_sizes=[20000,20000]",
                           f"hydra.run.dir={run_dir}", "data.root=/nonexistent-so-reading-data-would-fail",
                           "data.download=false", preexec_fn=limited)
    stdout, stderr = process.communicate(timeout=300)
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    line = assert_refused_before_data(result, run_dir, "model.hidden_sizes=[20000, 20000]")
    assert "ulimit -v" in line and "GiB free" in line


@pytest.mark.slow
def test_train_py_names_an_output_root_it_cannot_create(tmp_path):
    result = run_script("train.py", "+experiment=smoke", "paths.output_root=/proc/x")
    assert_refused_before_data(result, tmp_path, "paths.output_root")


# Hydra resolves the run directory (named from `name`) and creates a multirun's sweep directory
# before the task runs, so these are answered by mlplab.run.records / mlplab.run.resume, not by the checks.
@pytest.mark.slow
def test_train_py_names_a_null_name_when_it_names_the_run_directory(tmp_path):
    result = run_script("train.py", "+experiment=smoke", "name=null", f"paths.output_root={tmp_path}")
    assert_refused_before_data(result, tmp_path, "name=")


@pytest.mark.slow
def test_a_multirun_names_an_output_root_it_cannot_create(tmp_path):
    result = run_script("train.py", "-m", "+experiment=smoke", "paths.output_root=/proc/x")
    assert_refused_before_data(result, tmp_path, "paths.output_root")


@pytest.mark.slow
def test_a_fit_cut_short_by_max_time_is_a_smoke_check(tmp_path):
    run = tmp_path / "run"
    result = run_script("train.py", "+experiment=smoke", "trainer.limit_train_batches=1.0", "trainer.limit_val_batches=1.0",
                        "trainer.limit_test_batches=1.0", "trainer.max_epochs=5", "+trainer.max_time=00:00:00:01",
                        f"hydra.run.dir={run}")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] < 5 and metrics["smoke"].startswith("training ended after")
