"""Sweep files and the sweep launcher (src/mlplab/tools/sweep/): every file in sweeps/ keeps wandb's rules and
its trials compose; grid, random and Optuna search draw what the file says; offline sweeps run, fail,
stop and rerun as a user expects, on real MNIST."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

from helpers import REPO, compose_config, script_env, wait_until
from mlplab.run.config_checks import check_config
from mlplab.run.overrides import override
from mlplab.tools.sweep import search
from mlplab.tools.sweep.__main__ import listed_trials, main
from mlplab.tools.sweep.composition import check_trials_compose
from mlplab.tools.sweep.shared import open_trials
from mlplab.tools.sweep.slots import Slot, make_slots, slot_env
from mlplab.errors import SweepError
from mlplab.tools.sweep.spec import load_sweep, validate_sweep
from mlplab.tools.sweep.trial_commands import make_trial, program_arguments
from mlplab.tools.sweep.trials import CRASHED, FAILED, FINISHED, INTERRUPTED, outcome_of, recorded_outcome

SWEEPS = REPO / "sweeps"
SWEEP_FILES = sorted(SWEEPS.glob("*.yaml"))
# Every cell of the chapter's tables has seeds 1-10.
GRID_TRIALS = {"activations": 100, "norms": 120, "dropout": 40, "l2_penalty": 40, "l2_decoupled": 40, "augmentation": 40,
               "depth": 140,
               "baselines": 20, "baselines_full_train": 20, "best_mlp": 10}
BAYES_FILES = {"bayes", "bayes_penalty"}

# wandb's sweep schema, written out here so the test does not lean on the code it checks.
WANDB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
WANDB_KEYS = {
    "constant": {"value"}, "categorical": {"values", "probabilities"}, "int_uniform": {"min", "max"},
    "uniform": {"min", "max"}, "q_uniform": {"min", "max", "q"}, "log_uniform": {"min", "max"},
    "q_log_uniform": {"min", "max", "q"}, "log_uniform_values": {"min", "max"},
    "q_log_uniform_values": {"min", "max", "q"}, "normal": {"mu", "sigma"}, "q_normal": {"mu", "sigma", "q"},
    "log_normal": {"mu", "sigma"}, "q_log_normal": {"mu", "sigma", "q"},
}


def raw(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def covering(trials: list) -> list:
    """The fewest trials, in order, that between them use every value of every parameter once."""
    seen: set[str] = set()
    chosen = []
    for trial in trials:
        if not set(trial.overrides) <= seen:
            chosen.append(trial)
            seen |= set(trial.overrides)
    return chosen


def test_every_sweep_file_is_known_here():
    assert {path.stem for path in SWEEP_FILES} == {*GRID_TRIALS, *BAYES_FILES}


@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda path: path.stem)
def test_sweep_file_keeps_wandbs_rules(path):
    config = raw(path)
    assert config["method"] in ("grid", "random", "bayes") and config["program"] == "train.py"
    assert config["metric"]["goal"] in ("minimize", "maximize") and isinstance(config["metric"]["name"], str)
    for name, spec in config["parameters"].items():
        assert WANDB_NAME.match(name), f"{path.name}: wandb refuses the parameter name {name!r}"
        distribution = spec.get("distribution", "categorical" if "values" in spec else "constant")
        assert set(spec) - {"distribution"} <= WANDB_KEYS[distribution], (path.name, name, spec)
        if config["method"] == "grid":
            assert distribution in ("constant", "categorical")
        for key in ("min", "max", "mu", "sigma", "q"):
            assert key not in spec or isinstance(spec[key], (int, float)), (path.name, name, key)  # not "1e-5"
    command = config["command"]
    assert command[:3] == ["${env}", "${interpreter}", "${program}"] and command[-1] == "${args_no_hyphens}"
    assert any(part.startswith("trainer.max_epochs=") for part in command)
    load_sweep(path)  # the launcher agrees


@pytest.mark.slow  # composes every trial of every file: ~20 s
@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda path: path.stem)
def test_sweep_file_expands_and_its_trials_compose(path, tmp_path):
    config = load_sweep(path)
    if config["method"] == "bayes":
        assignments = search.probe_assignments(config["parameters"])
        trials = [make_trial(config, tmp_path, index, values) for index, values in enumerate(assignments)]
    else:
        trials = listed_trials(config, tmp_path, count=None, seed=0)
        assert len(trials) == GRID_TRIALS[path.stem]
        assert len({tuple(trial.overrides) for trial in trials}) == len(trials)
    assert len({trial.directory for trial in trials}) == len(trials)
    for trial in covering(trials):
        assert trial.command[0] == sys.executable
        assert trial.command[-1] == override("hydra.run.dir", str(trial.directory)) == f"hydra.run.dir='{trial.directory}'"
        check_config(compose_config(*program_arguments(config, trial.command)))


@pytest.mark.slow
def test_baselines_sweep_the_experiment_group_as_plus_experiment_would(tmp_path):
    config = load_sweep(SWEEPS / "baselines.yaml")
    for trial in listed_trials(config, tmp_path, None, 0):
        values = dict(override.split("=", 1) for override in trial.overrides)
        swept = compose_config(*program_arguments(config, trial.command))
        direct = compose_config(f"+experiment={values['experiment']}", f"seed={values['seed']}",
                                "trainer.max_epochs=20")
        assert swept == direct and swept.name == values["experiment"]


def test_depth_sweep_reaches_ten_layers_without_norm(tmp_path):
    config = load_sweep(SWEEPS / "depth.yaml")
    ten = "model.hidden_sizes=[" + ",".join(["100"] * 10) + "]"
    deepest = next(trial for trial in listed_trials(config, tmp_path, None, 0) if ten in trial.overrides)
    cfg = compose_config(*program_arguments(config, deepest.command))
    assert list(cfg.model.hidden_sizes) == [100] * 10 and cfg.norm._target_ == "torch.nn.Identity"


@pytest.mark.parametrize("stem", sorted(BAYES_FILES))
def test_bayes_spaces_draw_only_values_that_change_training(stem):
    config = raw(SWEEPS / f"{stem}.yaml")
    parameters, command = config["parameters"], config["command"]
    assert "l2" not in parameters  # l2=none would leave l2.weight a dead dimension
    mode = next(part.split("=")[1] for part in command if str(part).startswith("l2="))
    weight, lr = parameters["l2.weight"], parameters["optimizer.lr"]
    assert weight["distribution"] == lr["distribution"] == "log_uniform_values"
    if mode == "decoupled":
        # Each step multiplies the weights by 1 - lr*weight: under ~6e-8 float32 rounds it back to 1.
        assert lr["min"] * weight["min"] >= 1.0e-7
    else:
        assert mode == "penalty" and weight["min"] >= 1.0e-5
    assert compose_config(f"l2={mode}").l2.mode == mode


# ---------------------------------------------------------------------------------------------
# Draws: grid, random (Optuna's RandomSampler), and the wandb -> Optuna distributions


def test_random_draws_are_seeded_and_a_larger_count_extends_them():
    parameters = {"optimizer.lr": {"distribution": "log_uniform_values", "min": 1.0e-5, "max": 1.0e-1},
                  "data.batch_size": {"min": 32, "max": 256}, "activation": {"values": ["relu", "gelu"]}}
    draws = search.random_assignments(parameters, 200, seed=3)
    assert draws == search.random_assignments(parameters, 200, seed=3) != search.random_assignments(parameters, 200, 4)
    assert draws[:10] == search.random_assignments(parameters, 10, seed=3)
    assert all(isinstance(draw["data.batch_size"], int) and 32 <= draw["data.batch_size"] <= 256 for draw in draws)
    assert {draw["activation"] for draw in draws} == {"relu", "gelu"}


def draws(spec: dict, count: int = 2000) -> list:
    return [draw["p"] for draw in search.random_assignments({"p": spec}, count, seed=0)]


def per_decade(values: list, low_exponent: int, high_exponent: int) -> list[int]:
    return [sum(10.0 ** e <= value < 10.0 ** (e + 1) for value in values) for e in range(low_exponent, high_exponent)]


def test_log_uniform_distributions_spread_evenly_over_the_decades():
    for spec in ({"distribution": "log_uniform_values", "min": 1.0e-5, "max": 1.0e-1},
                 {"distribution": "log_uniform", "min": math.log(1.0e-5), "max": math.log(1.0e-1)}):  # natural logs
        values = draws(spec)
        assert all(1.0e-5 <= value <= 1.0e-1 * (1 + 1e-9) for value in values)
        assert all(400 < count < 600 for count in per_decade(values, -5, -1)), spec  # ~500 each


def test_quantized_distributions_round_to_multiples_of_q():
    values = draws({"distribution": "q_uniform", "min": 0.0, "max": 1.0, "q": 0.1})
    assert set(values) == {round(0.1 * k, 1) for k in range(11)}
    integers = draws({"distribution": "q_log_uniform_values", "min": 16, "max": 1024, "q": 16})
    assert all(isinstance(value, int) and value % 16 == 0 and 16 <= value <= 1024 for value in integers)
    assert sum(value <= 128 for value in integers) > sum(value > 512 for value in integers)  # log-spaced
    assert set(draws({"distribution": "int_uniform", "min": 1, "max": 4}, 400)) == {1, 2, 3, 4}


def test_normal_distributions_have_their_mean_and_spread():
    values = draws({"distribution": "normal", "mu": 2.0, "sigma": 0.5}, 4000)
    mean = sum(values) / len(values)
    spread = math.sqrt(sum((value - mean) ** 2 for value in values) / len(values))
    assert abs(mean - 2.0) < 0.05 and abs(spread - 0.5) < 0.05
    logs = [math.log(value) for value in draws({"distribution": "log_normal", "mu": -3.0, "sigma": 1.0}, 4000)]
    assert abs(sum(logs) / len(logs) + 3.0) < 0.1
    assert set(draws({"distribution": "q_normal", "mu": 0, "sigma": 3, "q": 1}, 200)) <= set(range(-20, 21))


def test_categorical_probabilities_are_kept():
    values = draws({"values": ["a", "b"], "probabilities": [0.9, 0.1]}, 2000)
    assert 1700 < values.count("a") < 1900 and values.count("b") > 100
    assert draws({"values": [[1, 2], [3]]}, 50)[0] in ([1, 2], [3])  # lists pass through Optuna as indices


# ---------------------------------------------------------------------------------------------
# The bayes study: Optuna's TPE, stored in the sweep dir, continued by a rerun


BAYES_TINY = {"program": "train.py", "method": "bayes", "metric": {"name": "val/acc", "goal": "maximize"},
              "parameters": {"optimizer.lr": {"distribution": "log_uniform_values", "min": 1.0e-4, "max": 1.0e-1},
                             "seed": {"values": [1, 2]}},
              "command": ["${env}", "${interpreter}", "${program}", "${args_no_hyphens}"]}


def fake_run(trial, accuracy: float) -> None:
    """What train.py leaves behind when it finishes (no training: the objective is made up)."""
    trial.directory.mkdir(parents=True, exist_ok=True)
    (trial.directory / "metrics.json").write_text(json.dumps({"val_acc_best": accuracy, "test_acc": accuracy}))


def made_up_accuracy(trial) -> float:
    lr = float(next(o for o in trial.overrides if o.startswith("optimizer.lr=")).split("=")[1])
    return 1.0 - abs(math.log10(lr) + 2.0) / 10  # best at lr = 1e-2


def test_bayes_is_an_optuna_tpe_study_that_a_rerun_continues(tmp_path):
    validate_sweep(BAYES_TINY)
    first = open_trials(BAYES_TINY, tmp_path, count=6, seed=0)
    assert isinstance(first.study.sampler, optuna.samplers.TPESampler)
    assert (tmp_path / "optuna.journal").is_file()
    started = [first.next_trial() for _ in range(4)]
    for trial in started[:3]:
        fake_run(trial, made_up_accuracy(trial))
        assert first.record(trial, FINISHED) is None
    first.record(started[3], INTERRUPTED)  # the launcher was stopped while it ran

    rerun = open_trials(BAYES_TINY, tmp_path, count=6, seed=0)
    assert rerun.skipped == 3 and "6 trials in all, 3 finished before" in rerun.describe()
    continued = rerun.next_trial()
    # The interrupted trial, queued again (a new Optuna trial) into its own directory, to continue there.
    assert continued.trial_id == started[3].trial_id and continued.directory == started[3].directory
    assert continued.number == 4 and started[3].number == 3
    drawn = [rerun.next_trial(), rerun.next_trial()]
    assert rerun.next_trial() is None  # 6 in all: 3 finished + 1 continued + 2 new
    assert [trial.number for trial in drawn] == [5, 6]
    assert all(trial.overrides not in [old.overrides for old in started] for trial in drawn)  # no replayed draws
    for trial in [continued, *drawn]:
        fake_run(trial, made_up_accuracy(trial))
        rerun.record(trial, FINISHED)
    study = rerun.study
    assert len(search.finished_trials(study)) == 6 and [frozen.state for frozen in study.trials].count(
        optuna.trial.TrialState.FAIL) == 1  # the interrupted attempt
    assert study.best_value == max(made_up_accuracy(trial) for trial in [*started[:3], continued, *drawn])
    assert open_trials(BAYES_TINY, tmp_path, count=6, seed=0).next_trial() is None  # done: a rerun runs nothing


def test_a_failed_bayes_trial_is_told_and_does_not_count(tmp_path):
    source = open_trials(BAYES_TINY, tmp_path, count=2, seed=0)
    trial = source.next_trial()
    source.record(trial, FAILED)
    other = source.next_trial()
    other.directory.mkdir(parents=True)  # finished, but without a metrics.json
    assert "no number at val_acc_best" in source.record(other, FINISHED)
    states = [frozen.state for frozen in source.study.trials]
    assert states == [optuna.trial.TrialState.FAIL] * 2
    assert open_trials(BAYES_TINY, tmp_path, count=2, seed=0).describe().endswith("2 to draw with Optuna's TPE")


def test_a_metric_no_trial_records_is_refused_up_front():
    assert search.metric_key("val/acc") == "val_acc_best" and search.metric_key("test_loss") == "test_loss"
    with pytest.raises(SweepError, match="metric.name='train/loss_epoch' is not in a trial's metrics.json"):
        search.metric_key("train/loss_epoch")


# ---------------------------------------------------------------------------------------------
# The file, the options, slots, outcomes


GRID_TINY = {"program": "train.py", "method": "grid", "parameters": {"seed": {"values": [1, 2]}},
             "command": ["${env}", "${interpreter}", "${program}", "${args_no_hyphens}"]}


@pytest.mark.parametrize(("change", "message"), [
    ({"command": ["${env}", "${interpreter}", "${program}", "${args}"]}, "args_no_hyphens"),
    ({"parameters": {"optimizer.lr": {"distribution": "uniform", "min": 0.1, "max": 1.0}}}, "a grid needs value"),
    ({"method": "random", "parameters": {"l2.weight": {"distribution": "log_uniform_values", "min": "1e-5",
                                                        "max": 1.0e-2}}}, "write 1.0e-5"),
    ({"method": "hyperband"}, "one of grid, random, bayes"),
    ({"parameters": {"+experiment": {"values": ["smoke"]}}}, r"parameters.\+experiment is not allowed: wandb accepts"),
    ({"method": "random", "parameters": {"x": {"distribution": "uniform", "min": 0, "max": 1, "q": 2}}},
     "x.q is not allowed with distribution uniform"),
    ({"method": "random", "parameters": {"x": {"distribution": "normal", "mu": 0, "sigma": 0}}}, "sigma=0"),
    ({"metric": {"name": "val/acc", "goal": "max"}}, "metric.goal='max' is not allowed"),
])
def test_a_broken_sweep_file_is_refused_with_what_to_change(change, message):
    with pytest.raises(SweepError, match=message.replace("$", r"\$")):
        validate_sweep({**GRID_TINY, **change})


def test_a_trial_that_does_not_compose_stops_the_sweep_with_one_line(tmp_path, capsys):
    sweep_file = tmp_path / "bad.yaml"
    sweep_file.write_text(yaml.safe_dump({**GRID_TINY, "parameters": {"experiment": {"values": ["smoke"]}}}))
    assert main([str(sweep_file), "--offline", "--program-root", str(REPO), "--sweep-dir", str(tmp_path / "s")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and str(sweep_file) in error and "'experiment'" in error
    assert not (tmp_path / "s").exists()  # nothing ran, nothing written
    with pytest.raises(SweepError, match="norm.nope"):
        check_trials_compose(REPO / "conf", "x.yaml", [["norm=batch"], ["norm.nope=1"]])


@pytest.mark.parametrize("option", [["--count", "0"], ["--agents", "-1"], ["--grace", "-2"], ["--stagger", "x"],
                                    ["--agents-per-gpu", "0", "--gpus", "0"]])
def test_numeric_options_are_checked_with_one_line(option, capsys):
    with pytest.raises(SystemExit) as stopped:
        main([str(SWEEPS / "dropout.yaml"), *option])
    error = capsys.readouterr().err
    assert stopped.value.code == 2 and error.count("\n") == 1 and error.startswith(f"error: argument {option[0]}")


def test_bayes_offline_needs_a_count(capsys):
    assert main([str(SWEEPS / "bayes.yaml"), "--dry-run"]) == 2
    assert "--count" in capsys.readouterr().err


def test_slots_pin_gpus_round_robin_and_not_pinned_slots_leave_cuda_visible_devices_alone():
    pinned = make_slots("0,1", 2, None, visible=["0", "1"])
    assert [slot.gpus for slot in pinned] == ["0", "1", "0", "1"]
    assert slot_env(pinned[1], 4, {"CUDA_VISIBLE_DEVICES": "0,1,2,3"})["CUDA_VISIBLE_DEVICES"] == "1"
    free = make_slots(None, None, 3)
    assert [(slot.index, slot.gpus) for slot in free] == [(0, None), (1, None), (2, None)]
    assert slot_env(free[0], 3, {"CUDA_VISIBLE_DEVICES": "2"})["CUDA_VISIBLE_DEVICES"] == "2"
    assert "CUDA_VISIBLE_DEVICES" not in slot_env(free[0], 3, {})
    assert slot_env(Slot(0), 2, {"OMP_NUM_THREADS": "7"})["OMP_NUM_THREADS"] == "7"  # the user's choice stays
    assert int(slot_env(Slot(0), 10**6, {})["OMP_NUM_THREADS"]) == 1
    for gpus, agents in (("0", 2), ("0,0", None), ("0,,1", None)):
        with pytest.raises(SweepError):
            make_slots(gpus, None, agents)


@pytest.mark.parametrize(("returncode", "ended_by_launcher", "run_status", "outcome"), [
    (0, False, "finished", FINISHED),
    (0, True, "finished", FINISHED),        # finished just as the launcher stopped
    (0, False, None, FAILED),               # exit 0 without status.json saying finished is no finish
    (0, False, "running", FAILED),
    (0, False, "interrupted", INTERRUPTED),
    (143, True, "interrupted", INTERRUPTED),
    (-9, True, "running", INTERRUPTED),     # we killed it after the grace period
    (-9, False, "running", CRASHED),        # a signal we did not send (the OOM killer)
    (1, False, "failed", FAILED),
    (None, False, None, FAILED),            # could not start
])
def test_a_trials_outcome(returncode, ended_by_launcher, run_status, outcome):
    assert outcome_of(returncode, ended_by_launcher, run_status) == outcome


def test_a_trial_recorded_running_whose_process_is_gone_or_not_its_own_was_interrupted(tmp_path):
    for pid in (2**22 + 1, os.getpid()):  # no such process; a live process that is not this trial
        (tmp_path / "trial.json").write_text(json.dumps({"outcome": "running", "pid": pid}))
        assert recorded_outcome(tmp_path) == INTERRUPTED
    assert recorded_outcome(tmp_path / "never-started") is None


# ---------------------------------------------------------------------------------------------
# Offline sweeps of real (tiny) trials

SMOKE = ["${env}", "${interpreter}", "${program}", "+experiment=smoke"]


def write_sweep(path: Path, parameters: dict, *fixed: str, method: str = "grid") -> Path:
    path.write_text(yaml.safe_dump({"program": "train.py", "method": method,
                                    "metric": {"name": "val/acc", "goal": "maximize"}, "parameters": parameters,
                                    "command": [*SMOKE, *fixed, "${args_no_hyphens}"]}))
    return path


def launcher(sweep_file: Path, sweep_dir: Path, *options: str) -> list[str]:
    return [sys.executable, "-m", "mlplab.tools.sweep", str(sweep_file), "--offline", "--agents", "2", "--stagger", "0",
            "--sweep-dir", str(sweep_dir), "--program-root", str(REPO), *options]


def trial_dirs(sweep_dir: Path) -> list[Path]:
    return sorted(path for path in sweep_dir.iterdir() if path.is_dir() and not path.name.startswith("."))


def records(sweep_dir: Path) -> dict[str, dict]:
    return {path.name: json.loads((path / "trial.json").read_text())
            for path in trial_dirs(sweep_dir) if (path / "trial.json").is_file()}


def mtimes(directory: Path) -> dict[str, int]:
    return {path.name: path.stat().st_mtime_ns for path in directory.iterdir() if path.is_file()}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


@pytest.mark.slow
def test_offline_sweep_on_two_agents_shows_a_failures_real_error_and_reruns_only_it(mnist, tmp_path, capsys):
    sweep_file = write_sweep(tmp_path / "tiny.yaml", {"dropout.p": {"values": [0.0, 0.1, 0.2, 1.5]}},
                             "trainer.limit_train_batches=5")
    sweep_dir = tmp_path / "sweep"
    first = subprocess.run(launcher(sweep_file, sweep_dir), env=script_env(), capture_output=True, text=True,
                           timeout=600)
    assert first.returncode == 1, first.stdout[-3000:] + first.stderr[-3000:]
    assert "3 finished, 1 failed" in first.stdout and first.stdout.splitlines()[-1].endswith(str(sweep_dir))
    assert "dropout.p=1.5 is not allowed" in first.stdout  # the real error, on the launcher's output

    recorded = records(sweep_dir)
    finished = {name for name, record in recorded.items() if record["outcome"] == "finished"}
    (failed,) = {name for name, record in recorded.items() if record["outcome"] == "failed"}
    assert len(finished) == 3 and recorded[failed]["overrides"] == ["dropout.p=1.5"]
    assert recorded[failed]["returncode"] == 1 and "dropout.p=1.5" in recorded[failed]["error"]
    for name in finished:
        assert json.loads((sweep_dir / name / "status.json").read_text())["status"] == "finished"  # train.py's
        assert 0 < json.loads((sweep_dir / name / "metrics.json").read_text())["test_acc"] <= 1
    assert {record["slot"] for record in recorded.values()} == {0, 1}
    assert all(record["cuda_visible_devices"] == os.environ.get("CUDA_VISIBLE_DEVICES") for record in recorded.values())
    assert all(record["started"] <= record["ended"] for record in recorded.values())

    assert main([str(sweep_file), "--dry-run", "--sweep-dir", str(sweep_dir), "--program-root", str(REPO)]) == 0
    assert capsys.readouterr().out.count("(finished: would be skipped)") == 3

    before = {name: mtimes(sweep_dir / name) for name in finished}
    second = subprocess.run(launcher(sweep_file, sweep_dir), env=script_env(), capture_output=True, text=True,
                            timeout=600)
    assert second.returncode == 1 and "3 finished before (skipped)" in second.stdout
    assert "0 finished, 1 failed" in second.stdout and second.stdout.count("] started ") == 1
    assert {name: mtimes(sweep_dir / name) for name in finished} == before
    assert (sweep_dir / ".previous" / f"{failed}.1" / "trial.log").is_file()  # the first attempt, set aside


LONG_TRIALS = {"trainer.limit_train_batches": {"values": [5, 400, 401]}}


@pytest.mark.slow
def test_sigterm_to_the_launcher_interrupts_its_trials_exits_143_and_a_rerun_finishes_them(mnist, tmp_path):
    sweep_file = write_sweep(tmp_path / "slow.yaml", LONG_TRIALS, "trainer.max_epochs=3")
    sweep_dir = tmp_path / "sweep"
    command = launcher(sweep_file, sweep_dir, "--grace", "20")
    with (tmp_path / "launcher.log").open("w") as log:
        process = subprocess.Popen(command, cwd=tmp_path, env=script_env(), stdout=log, stderr=subprocess.STDOUT)
        try:
            outcomes = lambda: [record["outcome"] for record in records(sweep_dir).values()]  # noqa: E731
            assert wait_until(lambda: sweep_dir.is_dir() and "finished" in outcomes() and "running" in outcomes(), 300)
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=120) == 128 + signal.SIGTERM
        finally:
            if process.poll() is None:
                process.kill()
    output = (tmp_path / "launcher.log").read_text()
    assert "stopping (SIGTERM)" in output and output.splitlines()[-1].endswith(str(sweep_dir))
    stopped = records(sweep_dir)
    assert not any(alive(record["pid"]) for record in stopped.values())
    interrupted = {name for name, record in stopped.items() if record["outcome"] == "interrupted"}
    finished = {name for name, record in stopped.items() if record["outcome"] == "finished"}
    assert interrupted and finished and interrupted | finished == set(stopped)

    rerun = subprocess.run(command, cwd=tmp_path, env=script_env(), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert f"{len(finished)} finished before (skipped)" in rerun.stdout
    assert [record["outcome"] for record in records(sweep_dir).values()] == ["finished"] * 3


@pytest.mark.slow
def test_a_killed_launchers_trials_end_with_it_and_a_rerun_continues_them(mnist, tmp_path):
    sweep_file = write_sweep(tmp_path / "slow.yaml", {"trainer.limit_train_batches": {"values": [400, 401]}},
                             "trainer.max_epochs=3")
    sweep_dir = tmp_path / "sweep"
    command = launcher(sweep_file, sweep_dir)
    process = subprocess.Popen(command, cwd=tmp_path, env=script_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        # Both trials past their first epoch (a checkpoint to continue from), then kill the launcher outright.
        assert wait_until(lambda: sweep_dir.is_dir() and len(records(sweep_dir)) == 2 and all(
            (path / "checkpoints" / "last.ckpt").is_file() for path in trial_dirs(sweep_dir)), 300)
        pids = [record["pid"] for record in records(sweep_dir).values()]
        process.kill()
        process.wait()
        assert wait_until(lambda: not any(alive(pid) for pid in pids), 60)  # SIGTERM from their dead parent
    finally:
        if process.poll() is None:
            process.kill()
    assert all(record["outcome"] == "running" for record in records(sweep_dir).values())

    rerun = subprocess.run(command, cwd=tmp_path, env=script_env(), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert rerun.stdout.count("(continued from its checkpoint)") == 2
    assert all(record["outcome"] == "finished" and record["resumed"] for record in records(sweep_dir).values())


@pytest.mark.slow
def test_a_trial_left_running_by_a_killed_launcher_blocks_a_rerun(tmp_path, capsys):
    sweep_file = write_sweep(tmp_path / "tiny.yaml", {"seed": {"values": [1]}}, "trainer.limit_train_batches=5")
    (trial,) = listed_trials(load_sweep(sweep_file), tmp_path / "sweep", None, 0)
    trial.directory.mkdir(parents=True)
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", str(trial.directory)])
    try:
        (trial.directory / "trial.json").write_text(json.dumps({"outcome": "running", "pid": orphan.pid}))
        # until the child has exec'd, /proc shows the parent's command line
        assert wait_until(lambda: str(trial.directory) in Path(f"/proc/{orphan.pid}/cmdline").read_text(), 10)
        assert main([str(sweep_file), "--offline", "--sweep-dir", str(tmp_path / "sweep"),
                     "--program-root", str(REPO)]) == 2
        assert f"still running (pid {orphan.pid})" in capsys.readouterr().err
    finally:
        orphan.kill()
        orphan.wait()
    assert recorded_outcome(trial.directory) == INTERRUPTED


@pytest.mark.slow
def test_offline_bayes_tells_optuna_each_trials_metric_and_a_larger_count_adds_only_the_difference(mnist, tmp_path):
    sweep_file = write_sweep(tmp_path / "bayes.yaml",
                             {"optimizer.lr": {"distribution": "log_uniform_values", "min": 1.0e-4, "max": 1.0e-2}},
                             "trainer.limit_train_batches=5", method="bayes")
    sweep_dir = tmp_path / "sweep"
    first = subprocess.run(launcher(sweep_file, sweep_dir, "--count", "3"), env=script_env(), capture_output=True,
                           text=True, timeout=600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    study = search.open_study(sweep_dir, "maximize", 0)
    assert [frozen.value for frozen in study.trials] == [
        json.loads((sweep_dir / record["trial"] / "metrics.json").read_text())["val_acc_best"]
        for record in sorted(records(sweep_dir).values(), key=lambda record: record["optuna_trial"])]
    more = subprocess.run(launcher(sweep_file, sweep_dir, "--count", "4"), env=script_env(), capture_output=True,
                          text=True, timeout=600)
    assert more.returncode == 0 and "3 finished before (skipped), 0 to continue, 1 to draw" in more.stdout
    assert more.stdout.count("] started ") == 1 and len(search.finished_trials(search.open_study(sweep_dir, "maximize", 0))) == 4
