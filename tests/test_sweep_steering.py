"""Steering a sweep from the command line (src/mlplab/tools/sweep/steering.py): Hydra overrides after the file
reach every trial, the sweep dir's name and its saved sweep.yaml, online the uploaded sweep; a swept key
narrows its parameter; what cannot work is one line; the dry run says what --count takes of a grid."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hypothesis import given
from hypothesis import strategies as st

from helpers import CONF, REPO, script_env
from mlplab.tools.sweep.__main__ import listed_trials, main
from mlplab.tools.sweep.spec import load_sweep
from mlplab.tools.sweep.steering import identity, steer
from mlplab.tools.sweep.trial_commands import grid_count_note

ACTIVATIONS = REPO / "sweeps" / "activations.yaml"


def one_line(captured) -> str:
    assert "Traceback" not in captured.err + captured.out
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    return lines[0]


def dry_run(capsys, *arguments: str) -> tuple[int, str]:
    code = main([str(ACTIVATIONS), "--dry-run", *arguments])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.slow  # several seconds of composing every trial
@pytest.mark.parametrize("arguments", [
    ["--offline", "trainer.max_epochs=1", "--agents", "2"],  # the command line, options around them
    ["trainer.max_epochs=1", "--offline"],
    ["--offline", "--", "trainer.max_epochs=1"],
    ["--offline", "--pack", "1", "trainer.max_epochs=1"],  # one process per trial
])
def test_overrides_after_the_file_reach_every_trials_command(arguments, capsys):
    code, output = dry_run(capsys, *arguments)
    commands = [line for line in output.splitlines() if line.startswith(sys.executable)]
    # 100 trials: one process each with --pack 1, else 10 packs of the 10 seeds of each activation.
    if "--pack" in arguments:
        assert code == 0 and len(commands) == 100
    else:
        assert code == 0 and len(commands) == 10 and all("seed=[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]" in c for c in commands)
    # In place of the file's own trainer.max_epochs=20, which no trial gets any more.
    assert all(" trainer.max_epochs=1 " in command and "max_epochs=20" not in command for command in commands)


def test_an_override_of_a_swept_key_narrows_it(capsys):
    code, output = dry_run(capsys, "trainer.max_epochs=1", "seed=1,2")
    assert code == 0 and "# 20 grid trials" in output
    config = steer(load_sweep(ACTIVATIONS), ["seed=range(1,3)", "activation=relu"], ACTIVATIONS)
    assert config["parameters"]["seed"] == {"values": [1, 2]} and config["parameters"]["activation"] == {"value": "relu"}
    assert len(listed_trials(config, Path("/tmp/x"), None, 0)) == 2


@pytest.mark.parametrize(("override", "message"), [
    ("hydra.run.dir=/tmp/elsewhere", "override 'hydra.run.dir=/tmp/elsewhere' is not allowed: Hydra builds"),
    ("+hydra.callbacks.x._target_=os.system", "is not allowed: Hydra builds what hydra.* names"),
    ("norm.nope=1", "does not compose (Could not override 'norm.nope'"),
    ("activation=nope", "does not compose"),
    ("x=[", "is not a Hydra override"),
    ("trainer.max_epochs=1,2", "does not sweep: give one value"),
    ("~seed", "seed is swept by the file, so it cannot be added or deleted"),
    ("seed=interval(1,5)", "an interval is not a list of values"),
    ("seed=", "leaves seed, which the file sweeps, without a value"),
    ("seed=null", "leaves seed, which the file sweeps, without a value"),
])
def test_overrides_that_cannot_work_are_one_line_before_anything(override, message, capsys, tmp_path):
    code = main([str(ACTIVATIONS), "--offline", "--sweep-dir", str(tmp_path / "s"), override])
    captured = capsys.readouterr()
    assert code == 2 and message in one_line(captured)
    assert not (tmp_path / "s").exists()


@pytest.mark.slow  # several seconds of composing every trial
def test_overrides_change_the_sweep_dirs_name_and_none_keeps_todays(capsys):
    plain = identity(ACTIVATIONS, [])
    assert plain == hashlib.sha256(ACTIVATIONS.read_bytes()).hexdigest()[:8]  # existing sweep dirs are found again
    assert len({plain, identity(ACTIVATIONS, ["trainer.max_epochs=1"]), identity(ACTIVATIONS, ["trainer.max_epochs=2"]),
                identity(ACTIVATIONS, ["trainer.max_epochs=1", "seed=1,2"])}) == 4
    _, output = dry_run(capsys, "trainer.max_epochs=1")
    assert f"activations-{identity(ACTIVATIONS, ['trainer.max_epochs=1'])}" in output and f"activations-{plain}" not in output


@given(st.lists(st.from_regex(r"[a-z]{1,8}(\.[a-z]{1,8})?=[a-z0-9]{1,6}", fullmatch=True), min_size=1, max_size=4))
def test_distinct_overrides_name_distinct_sweep_dirs(overrides):
    assert identity(ACTIVATIONS, overrides) != identity(ACTIVATIONS, [])
    assert identity(ACTIVATIONS, overrides) == identity(ACTIVATIONS, list(overrides))
    assert identity(ACTIVATIONS, overrides) != identity(ACTIVATIONS, [*overrides, "seed=9"])


@pytest.mark.slow  # several seconds of composing every trial
def test_the_dry_run_says_what_count_takes_of_a_grid(capsys):
    code, output = dry_run(capsys, "--count", "4")
    assert code == 0
    assert ("# --count 4 takes the first 4 of the grid's 100 trials (file order, the last parameter varies fastest): "
            "activation: 1 of 10 (relu); seed: 4 of 10 (1, 2, 3, 4)") in output and "e.g. seed=1,2" in output
    assert grid_count_note(load_sweep(ACTIVATIONS)["parameters"], 100) is None
    assert "takes the first" not in dry_run(capsys, "--count", "120")[1]


def test_online_the_overrides_go_into_the_uploaded_sweeps_command(monkeypatch, capsys):
    import wandb

    uploaded = {}

    def refuse(config, **_):
        uploaded.update(config)
        raise wandb.errors.Error("no server in this test")

    monkeypatch.setattr("mlplab.tools.sweep.__main__.offline_reason", lambda forced: None)
    monkeypatch.setattr(wandb, "sweep", refuse)
    assert main([str(ACTIVATIONS), "trainer.max_epochs=1", "seed=1,2"]) == 2
    assert "the wandb server refused" in one_line(capsys.readouterr())
    assert "trainer.max_epochs=1" in uploaded["command"] and "trainer.max_epochs=20" not in uploaded["command"]
    assert uploaded["parameters"]["seed"] == {"values": [1, 2]}


def test_the_slurm_launcher_config_composes_with_its_keys_to_override():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        config = compose("config", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                                              "hydra.launcher.gpus_per_node=2", "hydra.launcher.timeout_min=240"],
                         return_hydra_config=True)
    launcher = config.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.partition == "gpu"
    assert (launcher.gpus_per_node, launcher.timeout_min, launcher.max_num_timeout) == (2, 240, 3)


PROBE = '''
import json, os
import hydra
from hydra.core.hydra_config import HydraConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg):
    out = HydraConfig.get().runtime.output_dir
    json.dump({"epochs": cfg.epochs, "seed": cfg.seed}, open(os.path.join(out, "seen.json"), "w"))
    json.dump({"status": "finished"}, open(os.path.join(out, "status.json"), "w"))


if __name__ == "__main__":
    main()
'''


@pytest.mark.slow
def test_a_steered_sweep_runs_its_overrides_saves_them_and_a_rerun_of_the_saved_copy_skips_all(tmp_path):
    root = tmp_path / "project"
    (root / "conf").mkdir(parents=True)
    (root / "conf" / "config.yaml").write_text("seed: 0\nepochs: 20\n")
    (root / "probe.py").write_text(PROBE)
    sweep_file = tmp_path / "probe.yaml"
    sweep_file.write_text(yaml.safe_dump({"program": "probe.py", "method": "grid",
                                          "parameters": {"seed": {"values": [1, 2, 3, 4, 5]}},
                                          "command": ["${env}", "${interpreter}", "${program}", "epochs=20",
                                                      "${args_no_hyphens}"]}))
    base = [sys.executable, "-m", "mlplab.tools.sweep", "--offline", "--fresh-processes", "--stagger", "0",
            "--program-root", str(root)]
    first = subprocess.run([*base, str(sweep_file), "epochs=1", "seed=1,2"], cwd=tmp_path, env=script_env(),
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0 and "2 finished, 0 failed" in first.stdout, first.stdout + first.stderr
    sweep_dir = root / "outputs" / "sweeps" / f"probe-{identity(sweep_file, ['epochs=1', 'seed=1,2'])}"
    seen = sorted(json.loads(path.read_text())["seed"] for path in sweep_dir.glob("*/seen.json"))
    assert seen == [1, 2] and {json.loads(path.read_text())["epochs"] for path in sweep_dir.glob("*/seen.json")} == {1}
    saved = (sweep_dir / "sweep.yaml").read_text()
    assert saved.startswith(f"# {sweep_file} steered from the command line by: epochs=1 seed=1,2")
    assert yaml.safe_load(saved)["parameters"]["seed"] == {"values": [1, 2]}
    rerun = subprocess.run([*base, str(sweep_dir / "sweep.yaml"), "--sweep-dir", str(sweep_dir)], cwd=tmp_path,
                           env=script_env(), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0 and "2 finished before (skipped)" in rerun.stdout, rerun.stdout + rerun.stderr
    # The unsteered file is another sweep dir: the 1-epoch try never mixes with the real trials.
    assert not (root / "outputs" / "sweeps" / f"probe-{identity(sweep_file, [])}").exists()
