"""Packs in the offline sweep launcher (src/mlplab/tools/sweep/packing.py, pack_launch.py): trials that differ
only in their seed train as one train.py pack, each trial keeping its record at <sweep dir>/<trial id> (a link
to its member dir), with the same numbers as one process per trial (`--pack 1`, the layout from before packs);
reruns skip finished members and continue an interrupted pack; the report counts members, never a pack dir.

Fast tests check the options, the dry run and the rules on fabricated records; the slow ones run real tiny
sweeps of train.py on MNIST.
"""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from helpers import REPO, script_env, wait_until
from mlplab.run.records import PACK_FILE
from mlplab.tools.report.runs import find_run_dirs, load_runs
from mlplab.tools.sweep.__main__ import listed_trials, main
from mlplab.tools.sweep.pack_launch import continues, start_pack
from mlplab.tools.sweep.packing import Packer, make_pack, packing_off
from mlplab.tools.sweep.slots import Slot
from mlplab.tools.sweep.spec import load_sweep
from mlplab.tools.sweep.trial_commands import make_trial
from mlplab.tools.sweep.trials import FAILED, FINISHED, INTERRUPTED, recorded_outcome

SMOKE = ["${env}", "${interpreter}", "${program}", "+experiment=smoke", "trainer.max_epochs=1",
         "trainer.limit_train_batches=5", "logger=csv"]
COMPARED = ("status", "test_acc", "test_loss", "val_acc_best")


def write_sweep(path: Path, parameters: dict, command: list[str] = SMOKE, method: str = "grid") -> Path:
    path.write_text(yaml.safe_dump({"program": "train.py", "method": method,
                                    "metric": {"name": "val/acc", "goal": "maximize"}, "parameters": parameters,
                                    "command": [*command, "${args_no_hyphens}"]}))
    return path


def launcher(sweep_file: Path, sweep_dir: Path, *options: str) -> list[str]:
    return [sys.executable, "-m", "mlplab.tools.sweep", str(sweep_file), "--offline", "--agents", "2", "--stagger", "0",
            "--sweep-dir", str(sweep_dir), "--program-root", str(REPO), *options]


def run_launcher(*command: str) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    result = subprocess.run(list(command), env=script_env(), capture_output=True, text=True, timeout=900)
    return result, time.monotonic() - started


def trial_records(sweep_dir: Path) -> dict[str, dict]:
    """Each trial's trial.json, read at <sweep dir>/<trial id> as a user would."""
    return {path.parent.name: json.loads(path.read_text()) for path in sorted(sweep_dir.glob("*/trial.json"))}


def compared(sweep_dir: Path) -> dict[str, dict]:
    """Per trial id: the launcher's outcome and the numbers its metrics.json holds (None where there are none)."""
    result = {}
    for name, record in trial_records(sweep_dir).items():
        metrics_file = sweep_dir / name / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        result[name] = {"status": record["outcome"], **{key: metrics.get(key) for key in COMPARED[1:]}}
    return result


def mtimes(directory: Path) -> dict[str, int]:
    """Every file's mtime under the folder, but the launcher's own, which each launch writes."""
    return {str(path): path.stat().st_mtime_ns for path in directory.rglob("*") if path.is_file()
            and path.name not in ("optuna.journal", "study.lock", "sweep.yaml")}


# ---------------------------------------------------------------------------------------------
# Options, the dry run and the rules (fast)


@pytest.mark.parametrize("value", ["0", "-1", "abc", "1.5", "", "2e3"])
def test_a_hostile_pack_size_is_one_line_naming_it(value, capsys):
    with pytest.raises(SystemExit) as stopped:
        main([str(REPO / "sweeps" / "dropout.yaml"), "--dry-run", "--pack", value])
    error = capsys.readouterr().err
    assert stopped.value.code == 2 and error.count("\n") == 1
    assert error.startswith(f"error: argument --pack: {value!r} is not allowed: a whole number >= 1"), error
    assert "1: one trial per process" in error


def test_pack_is_refused_online_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("mlplab.tools.sweep.__main__.offline_reason", lambda forced: None)
    listed = write_sweep(tmp_path / "listed.yaml", {"seed": {"values": [1, 2]}})
    assert main([str(listed), "--pack", "2", "--program-root", str(REPO)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--pack 2 is for offline sweeps" in error and "seed=[1,2,3]" in error


def dry_run(capsys, sweep_file: Path, sweep_dir: Path, *options: str) -> str:
    assert main([str(sweep_file), "--dry-run", "--sweep-dir", str(sweep_dir), "--program-root", str(REPO),
                 *options]) == 0
    return capsys.readouterr().out


def test_the_dry_run_shows_the_packs_and_pack_1_one_process_per_trial(tmp_path, capsys):
    sweep_file = write_sweep(tmp_path / "grid.yaml", {"activation": {"values": ["relu", "gelu"]},
                                                      "seed": {"values": [1, 2, 3]}})
    sweep_dir = tmp_path / "sweep"
    packed = dry_run(capsys, sweep_file, sweep_dir)
    assert "packs: 6 trials to run in 2 processes (2 packs" in packed
    commands = [line for line in packed.splitlines() if not line.startswith("#")]
    assert len(commands) == 2 and all("'seed=[1, 2, 3]'" in line and "/pack-00" in line for line in commands)
    capped = dry_run(capsys, sweep_file, sweep_dir, "--pack", "2")
    assert "6 trials to run in 4 processes (2 packs" in capped and capped.count("'seed=[1, 2]'") == 2
    single = dry_run(capsys, sweep_file, sweep_dir, "--pack", "1")
    # Exactly the dry run from before packs: each trial's id and its own command line.
    expected = [line for trial in listed_trials(load_sweep(sweep_file), sweep_dir, None, 0)
                for line in (f"# {trial.trial_id}", shlex.join(trial.command))]
    assert single.splitlines()[1:-1] == expected and "seed=[" not in single


def test_bayes_and_other_programs_never_pack(tmp_path, capsys):
    sweep_file = write_sweep(tmp_path / "bayes.yaml", {"optimizer.lr": {"distribution": "log_uniform_values",
                                                                        "min": 1.0e-4, "max": 1.0e-2},
                                                       "seed": {"values": [1, 2]}}, method="bayes")
    out = dry_run(capsys, sweep_file, tmp_path / "sweep", "--count", "4", "--pack", "3")
    assert "# --pack 3: no packs, bayes draws its trials one at a time" in out
    config = {"program": "probe.py", "command": ["${program}", "${args_no_hyphens}"]}
    assert "is not train.py" in packing_off(config, "grid")
    assert "args_json_file" in packing_off({"program": "train.py", "command": ["${args_json_file}"]}, "grid")
    assert packing_off({"program": "train.py", "command": ["${args_no_hyphens}"]}, "random") is None


GRID = {"program": "train.py", "method": "grid", "parameters": {"seed": {"values": [1, 2, 3]}},
        "command": ["${env}", "${interpreter}", "${program}", "${args_no_hyphens}"]}


class FinishedProcess:
    """Stands in for a pack's process that has already exited with `returncode`."""

    def __init__(self, returncode: int) -> None:
        self.pid, self.returncode = 2**22 + 7, returncode

    def poll(self) -> int:
        return self.returncode

    def wait(self) -> int:
        return self.returncode


class Starter:
    def __init__(self, returncode: int) -> None:
        self.returncode = returncode

    def start(self, command, env, cwd, log) -> FinishedProcess:
        return FinishedProcess(self.returncode)


def write(path: Path, content: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))


def test_a_member_that_failed_alone_is_reported_failed_and_its_pack_is_no_run(tmp_path):
    sweep_dir = tmp_path / "sweep"
    trials = [make_trial(GRID, sweep_dir, index, {"seed": seed}) for index, seed in enumerate([1, 2])]
    sweep_dir.mkdir()
    pack = make_pack(GRID, sweep_dir, trials)
    running = start_pack(pack, Slot(0), 1, REPO, Starter(0))
    assert all(trial.directory.is_symlink() and trial.directory.resolve() == pack.member_dir(trial)
               for trial in trials)
    assert json.loads((pack.directory / PACK_FILE).read_text())["seeds"] == [1, 2]
    # What train.py leaves when seed 2's loss went NaN and seed 1 finished: the process exits 0.
    write(pack.directory / "status.json", {"status": "finished"})
    first, second = (pack.member_dir(trial) for trial in trials)
    write(first / "status.json", {"status": "finished"})
    write(first / "metrics.json", {"test_acc": 0.9, "test_loss": 0.3, "val_acc_best": 0.91, "epochs": 1})
    write(second / "status.json", {"status": "failed", "error": "training loss became nan at step 5"})
    (second / "error.log").write_text("training loss became nan at step 5 (epoch 0)\n")
    ended = running.finish(ended_by_launcher=False)
    assert [(trial.trial_id, outcome) for trial, _, outcome in ended] == [(trials[0].trial_id, FINISHED),
                                                                         (trials[1].trial_id, FAILED)]
    record = json.loads((trials[1].directory / "trial.json").read_text())
    assert record["outcome"] == FAILED and record["error"] == "training loss became nan at step 5 (epoch 0)"
    assert record["pack"] == str(pack.directory) and record["pack_members"] == [t.trial_id for t in trials]
    assert recorded_outcome(trials[0].directory) == FINISHED and not continues(pack)

    frame = load_runs(sweep_dir)
    assert sorted(frame["label"]) == [trial.trial_id for trial in trials]  # the trial dirs, not pack-.../seed-<S>
    assert pack.directory not in find_run_dirs(sweep_dir) and len(find_run_dirs(sweep_dir)) == 2
    failed = frame.set_index("label").loc[trials[1].trial_id]
    assert failed["status"] == FAILED and "training loss became nan" in failed["detail"]


def test_a_pack_dir_that_train_py_wrote_is_not_a_run_but_each_member_is(tmp_path):
    pack_dir = tmp_path / "outputs" / "2026-01-01" / "12-00-00_smoke"
    write(pack_dir / PACK_FILE, {"seeds": [1, 2], "members": ["seed-1", "seed-2"]})
    write(pack_dir / "status.json", {"status": "finished"})
    write(pack_dir / "run_info.json", {})
    (pack_dir / ".hydra").mkdir()
    (pack_dir / ".hydra" / "overrides.yaml").write_text("- seed=[1,2]\n")
    for seed in (1, 2):
        member = pack_dir / f"seed-{seed}"
        write(member / "status.json", {"status": "finished"})
        write(member / "metrics.json", {"test_acc": 0.5 + seed / 10, "epochs": 1})
        (member / ".hydra").mkdir()
        (member / ".hydra" / "overrides.yaml").write_text(f"- seed={seed}\n")
    for root in (tmp_path / "outputs", pack_dir):
        frame = load_runs(root)
        assert sorted(frame["path"]) == [str(pack_dir / "seed-1"), str(pack_dir / "seed-2")]
        assert list(frame["status"]) == [FINISHED, FINISHED] and frame.attrs["swept"] == ["seed"]


def test_an_interrupted_pack_continues_only_with_the_same_members(tmp_path):
    sweep_dir = tmp_path / "sweep"
    trials = [make_trial(GRID, sweep_dir, index, {"seed": seed}) for index, seed in enumerate([1, 2, 3])]
    sweep_dir.mkdir()
    pack = make_pack(GRID, sweep_dir, trials[:2])
    start_pack(pack, Slot(0), 1, REPO, Starter(143)).finish(ended_by_launcher=True)
    assert [recorded_outcome(trial.directory) for trial in trials[:2]] == [INTERRUPTED] * 2
    assert not continues(pack)  # no checkpoint: it starts over
    (pack.directory / "checkpoints").mkdir()
    (pack.directory / "checkpoints" / "interrupted.ckpt").write_bytes(b"")
    assert continues(pack) and not continues(make_pack(GRID, sweep_dir, trials[1:]))
    # A free slot that takes the first trial takes its old pack mate before the next one in the listing.
    packer = Packer(GRID, sweep_dir, trials, 2, None)

    def take_mates(rank, limit):  # as the shared study takes them: the waiting ones it ranks, best first
        ranked = sorted((trial for trial in trials[1:] if rank(trial.trial_id) is not None),
                        key=lambda trial: rank(trial.trial_id))
        return ranked[:limit]

    assert packer.members(trials[0], take_mates) == trials[:2]
    # Seeds 1 and 3 meet instead (another --pack, another launcher took seed 2): seed 1 starts over.
    other = start_pack(make_pack(GRID, sweep_dir, [trials[0], trials[2]]), Slot(0), 1, REPO, Starter(1))
    other.finish(ended_by_launcher=False)
    assert other.resumed is False and (sweep_dir / ".previous" / f"{trials[0].trial_id}.1").is_dir()
    assert packer.members(trials[0], take_mates) == [trials[0], trials[2]]
    assert trials[1].directory.resolve() == pack.member_dir(trials[1])  # untouched: still its interrupted pack's


# ---------------------------------------------------------------------------------------------
# Real sweeps of train.py (slow)


@pytest.mark.slow
def test_packed_trials_record_what_one_process_each_records_and_a_rerun_launches_nothing(mnist, tmp_path, capsys):
    # dropout.p=1.5 is refused by train.py: its pack fails as each of its trials fails alone.
    sweep_file = write_sweep(tmp_path / "tiny.yaml", {"dropout.p": {"values": [0.0, 0.1, 1.5]},
                                                      "seed": {"values": [1, 2]}})
    single_dir, packed_dir = tmp_path / "single", tmp_path / "packed"
    single, single_seconds = run_launcher(*launcher(sweep_file, single_dir, "--pack", "1", "--allow-failures"))
    assert single.returncode == 0, single.stdout[-3000:] + single.stderr[-3000:]
    assert "packs:" not in single.stdout and single.stdout.count("] started ") == 6
    # --pack 1 is the layout from before packs: a real directory per trial, no pack anywhere.
    assert not list(single_dir.glob("pack-*")) and not list(single_dir.rglob(PACK_FILE))
    assert all(path.is_dir() and not path.is_symlink() for path in single_dir.glob("0*"))
    assert all("pack" not in record and "seed=[" not in " ".join(record["command"])
               for record in trial_records(single_dir).values())

    # One trial first, then the rest: a pack is launched only for the members not finished.
    first, _ = run_launcher(*launcher(sweep_file, packed_dir, "--count", "1"))
    assert first.returncode == 0 and first.stdout.count("] started 000-") == 1, first.stdout[-3000:]
    packed, packed_seconds = run_launcher(*launcher(sweep_file, packed_dir, "--allow-failures"))
    assert packed.returncode == 0, packed.stdout[-3000:] + packed.stderr[-3000:]
    assert "1 finished before (skipped)" in packed.stdout and "3 finished, 2 failed" in packed.stdout
    started = [line for line in packed.stdout.splitlines() if "] started " in line]
    assert len(started) == 3 and sum("] started pack-" in line for line in started) == 2
    assert any("] started 001-" in line for line in started)  # seed 2 of dropout.p=0.0, alone
    assert "dropout.p=1.5 is not allowed" in packed.stdout  # the refused pack's real error, per trial

    assert compared(packed_dir) == compared(single_dir)
    assert len(compared(packed_dir)) == 6 and list(compared(packed_dir).values()).count(
        {"status": FAILED, "test_acc": None, "test_loss": None, "val_acc_best": None}) == 2
    links = sorted(path for path in packed_dir.glob("0*") if path.is_symlink())
    assert len(links) == 4 and all((link.resolve().parent / PACK_FILE).is_file() for link in links)
    assert all(json.loads((link / "trial.json").read_text())["pack"] == str(link.resolve().parent) for link in links)

    # The report: the same runs, under the same trial ids; no pack dir is a run.
    single_runs, packed_runs = (load_runs(folder, smoke=True).set_index("label").sort_index()
                                for folder in (single_dir, packed_dir))
    assert list(packed_runs.index) == list(single_runs.index) == sorted(trial_records(single_dir))
    for column in ("status", "test_acc", "dropout.p", "seed"):
        assert packed_runs[column].fillna(-1).tolist() == single_runs[column].fillna(-1).tolist(), column

    # A rerun skips the finished members and gives the failed ones one more attempt, as one pack again.
    finished = [name for name, record in trial_records(packed_dir).items() if record["outcome"] == FINISHED]
    before = {name: mtimes(packed_dir / name) for name in finished}
    rerun, _ = run_launcher(*launcher(sweep_file, packed_dir))
    assert "4 finished before (skipped)" in rerun.stdout and rerun.stdout.count("] started pack-004-") == 1
    assert rerun.stdout.count("] started ") == 1 and {name: mtimes(packed_dir / name) for name in finished} == before
    done = write_sweep(tmp_path / "done.yaml", {"dropout.p": {"values": [0.0, 0.1]}, "seed": {"values": [1, 2]}})
    finished_dir = tmp_path / "finished"
    run_launcher(*launcher(done, finished_dir))
    before = mtimes(finished_dir)
    again, _ = run_launcher(*launcher(done, finished_dir))
    assert again.returncode == 0 and "] started " not in again.stdout and "4 skipped" in again.stdout
    assert mtimes(finished_dir) == before
    with capsys.disabled():
        print(f"\n6 tiny trials on 2 slots: --pack 1 {single_seconds:.1f} s; packed (after 1 alone) "
              f"{packed_seconds:.1f} s")


@pytest.mark.slow
def test_a_sweep_whose_pack_was_interrupted_continues_it(mnist, tmp_path):
    command = [*SMOKE[:4], "trainer.max_epochs=2", "trainer.limit_train_batches=100", "trainer.limit_val_batches=2",
               "logger=csv", "callbacks=none"]
    sweep_file = write_sweep(tmp_path / "slow.yaml", {"seed": {"values": [1, 2]}}, command)
    sweep_dir = tmp_path / "sweep"
    process = subprocess.Popen(launcher(sweep_file, sweep_dir, "--grace", "30"), env=script_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # Past the first epoch's validation (each member has its best.ckpt), then stop the launcher.
        assert wait_until(lambda: len(list(sweep_dir.glob("pack-*/seed-*/checkpoints/best.ckpt"))) == 2, 300)
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=120)[0]
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signal.SIGTERM, output[-3000:]
    (pack_dir,) = sweep_dir.glob("pack-*")
    assert json.loads((pack_dir / "status.json").read_text())["status"] == INTERRUPTED
    assert [record["outcome"] for record in trial_records(sweep_dir).values()] == [INTERRUPTED] * 2

    rerun, _ = run_launcher(*launcher(sweep_file, sweep_dir))
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert rerun.stdout.count("] started ") == 1 and "continued from its checkpoint" in rerun.stdout
    records = trial_records(sweep_dir)
    assert all(record["outcome"] == FINISHED and record["resumed"] for record in records.values())
    assert all(record["command"][-1] == f"resume='{pack_dir}'" for record in records.values())
    assert list(sweep_dir.glob("pack-*")) == [pack_dir] and not (sweep_dir / ".previous").exists()

    # The continued pack's members record what an uninterrupted pack's do.
    fresh_dir = tmp_path / "fresh"
    fresh, _ = run_launcher(*launcher(sweep_file, fresh_dir))
    assert fresh.returncode == 0, fresh.stdout[-3000:]
    assert compared(sweep_dir) == compared(fresh_dir)
