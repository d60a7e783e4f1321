"""Sweep files and the sweep launcher: every file in sweeps/ expands to its trials and each trial's
command composes; offline sweeps run, fail, rerun and stop as a user expects, on real MNIST."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, mnist_root
from mlplab.checks import check_config
from mlplab.sweep import (SweepError, load_sweep, main, make_slots, make_trials, random_assignments, still_running,
                          validate_sweep)

SWEEPS = REPO / "sweeps"
GRID_TRIALS = {"activations": 30, "norms": 36, "dropout": 12, "l2": 24, "augmentation": 12, "depth": 42,
               "baselines": 6, "baselines_full_train": 6, "best_mlp": 3}
RANDOM_DRAWS = 8
SWEEP_FILES = sorted(SWEEPS.glob("*.yaml"))


def covering_trials(trials: list) -> list:
    """The fewest trials, in order, that between them use every value of every parameter once."""
    seen: set[str] = set()
    chosen = []
    for trial in trials:
        if not set(trial.overrides) <= seen:
            chosen.append(trial)
            seen |= set(trial.overrides)
    return chosen


def test_every_sweep_file_is_known_here():
    assert {path.stem for path in SWEEP_FILES} == {*GRID_TRIALS, "bayes"}


@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda path: path.stem)
def test_sweep_file_expands_and_each_value_composes(path, compose_cfg, tmp_path):
    config = load_sweep(path)
    assert config["program"] == "train.py"
    assert config["metric"] in ({"name": "val/acc", "goal": "maximize"}, {"name": "train/loss_epoch", "goal": "minimize"})
    command = config["command"]
    assert command[:3] == ["${env}", "${interpreter}", "${program}"] and command[-1] == "${args_no_hyphens}"
    assert any(part.startswith("trainer.max_epochs=") for part in command)
    assert not any(part.startswith("logger=") for part in command)

    trials = make_trials(config, tmp_path, count=RANDOM_DRAWS, seed=0) if config["method"] == "bayes" \
        else make_trials(config, tmp_path, count=None, seed=0)
    assert len(trials) == GRID_TRIALS.get(path.stem, RANDOM_DRAWS)
    assert len({tuple(trial.overrides) for trial in trials}) == len(trials)  # no duplicate trials
    assert len({trial.directory for trial in trials}) == len(trials)
    for trial in covering_trials(trials):
        arguments = trial.command[trial.command.index("train.py") + 1:]
        assert trial.command[0] == sys.executable and arguments[-1] == f"hydra.run.dir={trial.directory}"
        cfg = compose_cfg(*(argument for argument in arguments if not argument.startswith("hydra.")))
        check_config(cfg)


def test_depth_sweep_reaches_ten_layers_without_norm(compose_cfg, tmp_path):
    trials = make_trials(load_sweep(SWEEPS / "depth.yaml"), tmp_path, count=None, seed=0)
    ten_layers = "model.hidden_sizes=[" + ",".join(["100"] * 10) + "]"
    deepest = next(trial for trial in trials if ten_layers in trial.overrides)
    cfg = compose_cfg(*(argument for argument in deepest.command[2:] if not argument.startswith("hydra.")))
    assert list(cfg.model.hidden_sizes) == [100] * 10 and cfg.norm._target_ == "torch.nn.Identity"


def test_random_draws_are_seeded_and_log_uniform_spans_the_decades():
    parameters = {"optimizer.lr": {"distribution": "log_uniform_values", "min": 1.0e-5, "max": 1.0e-1},
                  "data.batch_size": {"min": 32, "max": 256}, "activation": {"values": ["relu", "gelu"]}}
    draws = random_assignments(parameters, 400, seed=3)
    assert draws == random_assignments(parameters, 400, seed=3) != random_assignments(parameters, 400, seed=4)
    assert draws[:10] == random_assignments(parameters, 10, seed=3)  # a larger --count extends the list
    rates = [draw["optimizer.lr"] for draw in draws]
    assert all(1.0e-5 <= rate <= 1.0e-1 for rate in rates)
    for low, high in ((1e-5, 1e-4), (1e-4, 1e-3), (1e-3, 1e-2), (1e-2, 1e-1)):
        assert 50 < sum(low <= rate < high for rate in rates) < 150  # ~100 per decade
    assert all(isinstance(draw["data.batch_size"], int) and 32 <= draw["data.batch_size"] <= 256 for draw in draws)
    assert {draw["activation"] for draw in draws} == {"relu", "gelu"}


@pytest.mark.parametrize(("change", "message"), [
    ({"command": ["${env}", "${interpreter}", "${program}", "${args}"]}, "args_no_hyphens"),
    ({"parameters": {"optimizer.lr": {"distribution": "uniform", "min": 0.1, "max": 1.0}}}, "a grid needs value"),
    ({"method": "random", "parameters": {"l2.weight": {"distribution": "log_uniform_values", "min": "1e-5",
                                                        "max": 1.0e-2}}}, "write 1.0e-5"),
    ({"method": "hyperband"}, "one of grid, random, bayes"),
])
def test_a_broken_sweep_file_is_refused_with_what_to_change(change, message):
    config = {"program": "train.py", "method": "grid", "parameters": {"seed": {"values": [1, 2]}},
              "command": ["${env}", "${interpreter}", "${program}", "${args_no_hyphens}"], **change}
    with pytest.raises(SweepError, match=message.replace("$", r"\$")):
        validate_sweep(config)


def test_slots_pin_agents_round_robin_over_the_gpus():
    assert [slot.cuda_visible_devices for slot in make_slots("0,1", 2, None)] == ["0", "1", "0", "1"]
    cpu_slots = make_slots(None, None, 3)
    assert [(slot.index, slot.cuda_visible_devices) for slot in cpu_slots] == [(0, ""), (1, ""), (2, "")]
    with pytest.raises(SweepError, match="exclude each other"):
        make_slots("0", None, 2)


# ---------------------------------------------------------------------------------------------
# Offline sweeps of real (tiny) trials

SMOKE_COMMAND = '["${env}", "${interpreter}", "${program}", +experiment=smoke, {fixed}, "${args_no_hyphens}"]'


def write_sweep(path: Path, parameters: str, fixed: str) -> Path:
    path.write_text(f"program: train.py\nmethod: grid\nmetric: {{name: val/acc, goal: maximize}}\n"
                    f"parameters:\n{parameters}\ncommand: {SMOKE_COMMAND.replace('{fixed}', fixed)}\n")
    return path


def launcher(sweep_file: Path, sweep_dir: Path, *options: str) -> list[str]:
    return [sys.executable, "-m", "mlplab.sweep", str(sweep_file), "--offline", "--agents", "2", "--stagger", "0",
            "--sweep-dir", str(sweep_dir), *options]


def sweep_env() -> dict[str, str]:
    return {**os.environ, "MNIST_ROOT": str(mnist_root()), "WANDB_MODE": "offline"}


def trial_dirs(sweep_dir: Path) -> list[Path]:
    if not sweep_dir.is_dir():
        return []
    return sorted(path for path in sweep_dir.iterdir() if path.is_dir() and not path.name.startswith("."))


def statuses(sweep_dir: Path) -> dict[str, dict]:
    return {path.name: json.loads((path / "status.json").read_text())
            for path in trial_dirs(sweep_dir) if (path / "status.json").is_file()}


def mtimes(directory: Path) -> dict[str, int]:
    return {path.name: path.stat().st_mtime_ns for path in directory.iterdir() if path.is_file()}


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains `text` (here: a sweep dir, so only this test's)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and text in (entry / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(entry.name))
        except OSError:
            pass
    return found


@pytest.mark.slow
def test_offline_sweep_runs_on_two_agents_records_a_failure_and_reruns_only_what_did_not_finish(mnist, tmp_path,
                                                                                                capsys):
    # The file lives outside the repo: its program resolves from the current folder (the repo root).
    sweep_file = write_sweep(tmp_path / "tiny.yaml", "  dropout.p:\n    values: [0.0, 0.1, 0.2, 1.5]",
                             "trainer.limit_train_batches=5")
    sweep_dir = tmp_path / "sweep"
    first = subprocess.run(launcher(sweep_file, sweep_dir), cwd=REPO, env=sweep_env(), capture_output=True,
                           text=True, timeout=300)
    assert first.returncode == 1, first.stdout[-3000:] + first.stderr[-3000:]  # one trial failed
    assert "3 finished, 1 failed" in first.stdout and str(sweep_dir) in first.stdout.splitlines()[-1]

    recorded = statuses(sweep_dir)
    assert len(trial_dirs(sweep_dir)) == 4 and len(recorded) == 4
    finished = {name for name, status in recorded.items() if status["status"] == "finished"}
    (failed,) = {name for name, status in recorded.items() if status["status"] == "failed"}
    assert len(finished) == 3 and recorded[failed]["overrides"] == ["dropout.p=1.5"]
    assert recorded[failed]["returncode"] == 1
    assert "dropout.p=1.5 is not allowed" in (sweep_dir / failed / "trial.log").read_text()
    assert "dropout.p=1.5 is not allowed" in first.stdout  # the failure's reason, on the launcher's output
    for name in finished:
        metrics = json.loads((sweep_dir / name / "metrics.json").read_text())
        assert 0 < metrics["test_acc"] <= 1 and metrics["output_dir"] == str(sweep_dir / name)
    # Two CPU slots, not pinned: each trial says which slot ran it and what CUDA_VISIBLE_DEVICES it had.
    assert {status["slot"] for status in recorded.values()} == {0, 1}
    assert all(status["cuda_visible_devices"] == "" for status in recorded.values())
    assert all(status["started"] <= status["ended"] for status in recorded.values())

    assert main([str(sweep_file), "--dry-run", "--sweep-dir", str(sweep_dir), "--program-root", str(REPO)]) == 0
    dry_run = capsys.readouterr().out
    assert dry_run.count("(finished: would be skipped)") == 3 and dry_run.count("train.py +experiment=smoke") == 4

    before = {name: mtimes(sweep_dir / name) for name in finished}
    second = subprocess.run(launcher(sweep_file, sweep_dir), cwd=REPO, env=sweep_env(), capture_output=True,
                            text=True, timeout=300)
    assert second.returncode == 1 and "3 finished before (skipped)" in second.stdout
    assert "0 finished, 1 failed" in second.stdout and second.stdout.count("] started ") == 1
    assert {name: mtimes(sweep_dir / name) for name in finished} == before
    assert statuses(sweep_dir)[failed]["status"] == "failed"
    assert (sweep_dir / ".previous" / f"{failed}.1" / "trial.log").is_file()  # the first attempt, set aside


@pytest.mark.slow
def test_ctrl_c_ends_every_trial_keeps_finished_ones_and_a_rerun_completes_the_rest(mnist, tmp_path):
    # One short trial and two longer ones on two agents: stop while a longer one runs.
    sweep_file = write_sweep(tmp_path / "slow.yaml", "  trainer.limit_train_batches:\n    values: [5, 300, 301]",
                             "trainer.max_epochs=2")
    sweep_dir = tmp_path / "sweep"
    command = launcher(sweep_file, sweep_dir, "--program-root", str(REPO), "--grace", "5")
    with (tmp_path / "launcher.log").open("w") as log:
        process = subprocess.Popen(command, cwd=tmp_path, env=sweep_env(), stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline and process.poll() is None:
                states = [status["status"] for status in statuses(sweep_dir).values()]
                if "finished" in states and "running" in states:
                    break
                time.sleep(0.2)
            assert process.poll() is None, (tmp_path / "launcher.log").read_text()
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=60) == 128 + signal.SIGINT
        finally:
            if process.poll() is None:
                process.kill()
    output = (tmp_path / "launcher.log").read_text()
    assert "interrupted" in output and str(sweep_dir) in output.splitlines()[-1]

    assert processes_mentioning(str(sweep_dir)) == []
    stopped = statuses(sweep_dir)
    for status in stopped.values():
        with pytest.raises(ProcessLookupError):
            os.kill(status["pid"], 0)
    finished = {name for name, status in stopped.items() if status["status"] == "finished"}
    interrupted = {name for name, status in stopped.items() if status["status"] == "interrupted"}
    assert finished and interrupted and finished | interrupted == set(stopped)
    assert all((sweep_dir / name / "metrics.json").is_file() for name in finished)

    before = {name: mtimes(sweep_dir / name) for name in finished}
    rerun = subprocess.run(command, cwd=tmp_path, env=sweep_env(), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert f"{len(finished)} finished before (skipped)" in rerun.stdout
    assert [status["status"] for status in statuses(sweep_dir).values()] == ["finished"] * 3
    assert {name: mtimes(sweep_dir / name) for name in finished} == before
    assert all((path / "metrics.json").is_file() for path in trial_dirs(sweep_dir))


def test_a_trial_left_running_by_a_killed_launcher_blocks_a_rerun(tmp_path, capsys):
    sweep_file = write_sweep(tmp_path / "tiny.yaml", "  seed:\n    values: [1]", "trainer.limit_train_batches=5")
    (trial,) = make_trials(load_sweep(sweep_file), tmp_path / "sweep", count=None, seed=0)
    trial.directory.mkdir(parents=True)
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", str(trial.directory)])
    try:
        (trial.directory / "status.json").write_text(json.dumps({"status": "running", "pid": orphan.pid}))
        deadline = time.monotonic() + 10  # until the child has exec'd, /proc shows the parent's command line
        while still_running(trial.directory) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert still_running(trial.directory) == orphan.pid
        assert main([str(sweep_file), "--offline", "--sweep-dir", str(tmp_path / "sweep"),
                     "--program-root", str(REPO)]) == 2
        assert f"still running (pid {orphan.pid})" in capsys.readouterr().err
    finally:
        orphan.kill()
        orphan.wait()
    assert still_running(trial.directory) is None
