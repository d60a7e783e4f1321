"""Several launchers on one offline sweep (src/mlplab/tools/sweep/shared.py, storage.py, liveness.py): they share
its Optuna study, each takes the next trial, none runs one twice, and a dead launcher's trial is taken
over and continued; in the sweep dir's journal or in a real PostgreSQL server."""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import REPO, probe_project, script_env, wait_until
from mlplab.run.overrides import override
from mlplab.tools.sweep import shared
from mlplab.tools.sweep.__main__ import main
from mlplab.tools.sweep.liveness import STAMP
from mlplab.tools.sweep.shared import open_trials
from mlplab.errors import SweepError
from mlplab.tools.sweep.trial_commands import make_trial
from mlplab.tools.sweep.storage import check_storage_record, record_storage
from mlplab.tools.sweep.trials import FINISHED, INTERRUPTED

# A program that stands in for train.py where training is not the point: it notes each start in a
# ledger shared by every trial, leaves a checkpoint to continue from, works `work` seconds, finishes.
PROBE = '''
import json, os, time
import hydra
from hydra.core.hydra_config import HydraConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg):
    out = HydraConfig.get().runtime.output_dir
    with open(cfg.ledger, "a") as ledger:
        ledger.write(f"{os.path.basename(out)} {'resume' if cfg.resume else 'start'} {os.getpid()}\\n")
    os.makedirs(os.path.join(out, "checkpoints"), exist_ok=True)
    open(os.path.join(out, "checkpoints", "last.ckpt"), "w").write("probe")
    time.sleep(cfg.work)
    json.dump({"status": "finished"}, open(os.path.join(out, "status.json"), "w"))
    json.dump({"val_acc_best": 0.5}, open(os.path.join(out, "metrics.json"), "w"))


if __name__ == "__main__":
    main()
'''


@pytest.fixture
def program_root(tmp_path: Path) -> Path:
    return probe_project(tmp_path, PROBE, "seed: 0\nwork: 1.0\nresume: null\nledger: /dev/null\n")


def probe_sweep(folder: Path, seeds: int, work: float, ledger: Path) -> Path:
    path = folder / "probe.yaml"
    path.write_text(yaml.safe_dump({
        "program": "probe.py", "method": "grid", "metric": {"name": "val/acc", "goal": "maximize"},
        "parameters": {"seed": {"values": list(range(seeds))}},
        "command": ["${env}", "${interpreter}", "${program}", f"work={work}", override("ledger", str(ledger)),
                    "${args_no_hyphens}"]}))
    return path


def launcher(sweep_file: Path, sweep_dir: Path, program_root: Path, *options: str) -> list[str]:
    return [sys.executable, "-m", "mlplab.tools.sweep", str(sweep_file), "--offline", "--fresh-processes", "--stagger", "0",
            "--sweep-dir", str(sweep_dir), "--program-root", str(program_root), *options]


def ledger_lines(ledger: Path) -> list[tuple[str, str]]:
    return [tuple(line.split()[:2]) for line in ledger.read_text().splitlines()] if ledger.exists() else []


def records(sweep_dir: Path) -> dict[str, dict]:
    return {path.parent.name: json.loads(path.read_text()) for path in sorted(sweep_dir.glob("*/trial.json"))}


def one_line(captured) -> str:
    assert "Traceback" not in captured.err + captured.out
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    return lines[0]


# ---------------------------------------------------------------------------------------------
# In one process: the study as a queue (fast)

GRID = {"program": "train.py", "method": "grid", "metric": {"name": "val/acc", "goal": "maximize"},
        "parameters": {"seed": {"values": [0, 1, 2, 3, 4]}},
        "command": ["${env}", "${interpreter}", "${program}", "${args_no_hyphens}"]}


def listed(sweep_dir: Path, size: int) -> list:
    return [make_trial(GRID, sweep_dir, index, {"seed": index}) for index in range(size)]


def finish(source, trial) -> None:
    trial.directory.mkdir(parents=True, exist_ok=True)
    (trial.directory / "metrics.json").write_text(json.dumps({"val_acc_best": 0.9}))
    assert source.record(trial, FINISHED) is None


@pytest.fixture(autouse=True)
def look_at_once(monkeypatch):
    monkeypatch.setattr(shared, "LOOK_SECONDS", 0.0)


def test_two_launchers_racing_for_the_last_trial_get_it_once(tmp_path):
    first = open_trials(GRID, tmp_path, None, 0, listed(tmp_path, 1))
    second = open_trials(GRID, tmp_path, None, 0, listed(tmp_path, 1))  # a second launcher on the same study
    taken = first.next_trial()
    assert taken is not None and second.next_trial() is None
    assert not second.finished()  # it waits: the first launcher could die and leave it to take over
    finish(first, taken)
    assert second.finished() and first.finished()
    assert [frozen.state for frozen in first.study.trials] == [optuna.trial.TrialState.COMPLETE]


@given(size=st.integers(1, 5), launchers=st.integers(2, 3),
       moves=st.lists(st.tuples(st.integers(0, 2), st.booleans()), min_size=1, max_size=30))
@settings(max_examples=25, deadline=None)
def test_any_interleaving_of_launchers_runs_each_trial_once(size, launchers, moves):
    with tempfile.TemporaryDirectory(prefix="journal with spaces ") as folder:
        sweep_dir = Path(folder)
        sources = [open_trials(GRID, sweep_dir, None, 0, listed(sweep_dir, size)) for _ in range(launchers)]
        running: list[list] = [[] for _ in sources]
        taken: list[str] = []
        for who, take in [*moves, *[(index, False) for index in range(launchers) for _ in range(size)]]:
            source, mine = sources[who % launchers], running[who % launchers]
            if take and (trial := source.next_trial()) is not None:
                mine.append(trial)
                taken.append(trial.trial_id)
            elif mine:
                finish(source, mine.pop(0))
        while (trial := sources[0].next_trial()) is not None:  # what is left, one launcher finishing up
            taken.append(trial.trial_id)
            finish(sources[0], trial)
        assert sorted(taken) == sorted(trial.trial_id for trial in listed(sweep_dir, size))  # each once
        assert all(source.finished() for source in sources)


def stamp_elsewhere(source, number: int, stamp: dict) -> None:
    internal = source.storage.get_trial_id_from_study_id_trial_number(source.study_id, number)
    source.storage.set_trial_user_attr(internal, STAMP, stamp)


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@pytest.mark.parametrize(("stamp", "taken_over"), [
    (lambda: {"host": socket.gethostname(), "pid": dead_pid(), "start": 1, "taken": time.time()}, True),
    (lambda: {"host": socket.gethostname(), "pid": os.getppid(), "start": 1, "taken": time.time()}, True),  # reused pid
    (lambda: {"host": "elsewhere", "pid": 1, "start": 1, "taken": time.time() - 600}, True),  # silent for 10 min
    (lambda: {"host": "elsewhere", "pid": 1, "start": 1, "taken": time.time()}, False),  # just taken
])
def test_a_trial_whose_launcher_is_gone_is_taken_over_into_its_own_dir(stamp, taken_over, tmp_path, capsys):
    first = open_trials(GRID, tmp_path, None, 0, listed(tmp_path, 2))
    trial = first.next_trial()
    stamp_elsewhere(first, trial.number, stamp())
    second = open_trials(GRID, tmp_path, None, 0, listed(tmp_path, 2), stale_after=60)
    others = [second.next_trial(), second.next_trial()]
    again = [other for other in others if other is not None and other.trial_id == trial.trial_id]
    assert bool(again) == taken_over
    if taken_over:
        assert again[0].directory == trial.directory and again[0].number != trial.number
        assert "is gone: queued again" in capsys.readouterr().out
        assert first.record(trial, FINISHED) is not None  # the silent launcher learns it was taken over


def test_an_interrupted_trial_is_queued_again_for_any_launcher(tmp_path):
    first = open_trials(GRID, tmp_path, None, 0, listed(tmp_path, 1))
    trial = first.next_trial()
    first.record(trial, INTERRUPTED)
    second = open_trials(GRID, tmp_path, None, 0, listed(tmp_path, 1))
    again = second.next_trial()
    assert again.trial_id == trial.trial_id and "0 to run" not in second.describe()


@pytest.mark.parametrize(("url", "expected"), [
    ("not a url", "is not a database URL"),
    ("nosuchdb://x/y", "--storage nosuchdb://x/y"),
    ("postgresql://nobody:secret@127.0.0.1:1/none", "the database cannot be used"),  # a dead database
])
def test_a_storage_that_cannot_be_used_is_one_line_before_any_trial(url, expected, program_root, tmp_path, capsys):
    sweep_file = probe_sweep(tmp_path, 2, 0.0, tmp_path / "ledger")
    code = main([str(sweep_file), "--offline", "--sweep-dir", str(tmp_path / "s"), "--program-root",
                 str(program_root), "--storage", url])
    line = one_line(capsys.readouterr())
    assert code == 2 and expected in line and "secret" not in line
    assert not (tmp_path / "ledger").exists() and not (tmp_path / "s" / "study.json").exists()


def test_a_sweep_dir_refuses_a_storage_other_than_its_studys(tmp_path):
    record_storage(tmp_path, None)
    check_storage_record(tmp_path, None)  # the same: fine
    with pytest.raises(SweepError, match="keeps its study in its optuna.journal"):
        check_storage_record(tmp_path, "postgresql://u:pw@db/x")
    assert "pw" not in (tmp_path / "study.json").read_text()


def test_storage_is_refused_online(program_root, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("mlplab.tools.sweep.__main__.offline_reason", lambda forced: None)
    sweep_file = probe_sweep(tmp_path, 2, 0.0, tmp_path / "ledger")
    assert main([str(sweep_file), "--program-root", str(program_root), "--storage", "sqlite:///x.db"]) == 2
    assert "--storage is for offline sweeps" in one_line(capsys.readouterr())


# ---------------------------------------------------------------------------------------------
# Real launchers (slow)


def run_together(commands: list[list[str]], cwd: Path, timeout: float = 300) -> tuple[list, float]:
    started = time.monotonic()
    processes = [subprocess.Popen(command, cwd=cwd, env=script_env(), stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True) for command in commands]
    outputs = [process.communicate(timeout=timeout)[0] for process in processes]
    return [(process.returncode, output) for process, output in zip(processes, outputs)], time.monotonic() - started


def assert_each_ran_once(ledger: Path, sweep_dir: Path, size: int) -> None:
    starts = [name for name, how in ledger_lines(ledger) if how == "start"]
    assert len(starts) == len(set(starts)) == size, ledger.read_text()
    assert all(record["outcome"] == "finished" for record in records(sweep_dir).values())
    assert len(records(sweep_dir)) == size


@pytest.mark.slow
def test_two_launchers_share_one_sweep_on_a_journal_in_a_folder_with_spaces(program_root, tmp_path):
    ledger, sweep_dir = tmp_path / "ledger", tmp_path / "shared sweep dir"
    sweep_file = probe_sweep(tmp_path, 8, 2.0, ledger)
    results, seconds = run_together([launcher(sweep_file, sweep_dir, program_root, "--agents", "2")] * 2, tmp_path)
    for code, output in results:
        assert code == 0, output[-3000:]
    assert_each_ran_once(ledger, sweep_dir, 8)
    pids = {record["pid"] for record in records(sweep_dir).values()}
    started = [output.count("] started ") for _, output in results]
    assert sum(started) == 8 and all(started), started  # both launchers took trials
    assert len(pids) == 8
    print(f"two launchers x 2 slots, 8 probe trials of 2 s on the journal: {seconds:.1f} s, starts {started}")


@pytest.mark.slow
def test_a_sigkilled_launchers_trial_is_taken_over_and_continued_by_another(program_root, tmp_path):
    ledger, sweep_dir = tmp_path / "ledger", tmp_path / "sweep"
    sweep_file = probe_sweep(tmp_path, 3, 6.0, ledger)
    victim = subprocess.Popen(launcher(sweep_file, sweep_dir, program_root), cwd=tmp_path, env=script_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: len(ledger_lines(ledger)) == 1, 60)
        (killed,) = records(sweep_dir)
        survivor = subprocess.Popen(launcher(sweep_file, sweep_dir, program_root), cwd=tmp_path, env=script_env(),
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert wait_until(lambda: len(ledger_lines(ledger)) == 2, 60)  # the survivor took another trial
        victim.kill()
        victim.wait()
        killed_at = time.monotonic()
        assert wait_until(lambda: (killed, "resume") in ledger_lines(ledger), 120)
        taken_over_after = time.monotonic() - killed_at
        output = survivor.communicate(timeout=180)[0]
    finally:
        for process in (victim, locals().get("survivor")):
            if process is not None and process.poll() is None:
                process.kill()
    assert survivor.returncode == 0, output[-3000:]
    assert f"trial {killed}: its launcher" in output and "(continued from its checkpoint)" in output
    assert_each_ran_once(ledger, sweep_dir, 3)
    assert (killed, "resume") in ledger_lines(ledger) and records(sweep_dir)[killed]["resumed"]
    print(f"a SIGKILLed launcher's trial continued by the other {taken_over_after:.1f} s after the kill")


def postgres_binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or [shutil.which("initdb")]
    return Path(found[-1]).parent if found[-1] else None


@pytest.fixture
def postgres_url():
    """A throwaway PostgreSQL server on a free port: FAILS under CI without postgres (.ci/run installs it)."""
    binaries = postgres_binaries()
    try:
        import psycopg  # noqa: F401 - SQLAlchemy's default driver for postgresql://
    except ImportError:
        binaries = None
    if binaries is None:
        message = ("PostgreSQL (initdb, pg_ctl) or psycopg missing: apt-get install -y postgresql; "
                   "pip install 'psycopg[binary]'")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    folder = Path(tempfile.mkdtemp(prefix="mlplab-pg-"))
    as_user = None
    if os.geteuid() == 0:  # the server refuses to run as root: as nobody, in a folder of its own
        import pwd

        nobody = pwd.getpwnam("nobody")
        os.chown(folder, nobody.pw_uid, nobody.pw_gid)
        as_user = lambda: (os.setgid(nobody.pw_gid), os.setuid(nobody.pw_uid))  # noqa: E731
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = folder / "data"
    run = lambda *command: subprocess.run([str(binaries / command[0]), *command[1:]], preexec_fn=as_user,  # noqa: E731
                                          cwd=folder, capture_output=True, text=True, timeout=120)
    made = run("initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    assert made.returncode == 0, made.stdout + made.stderr
    started = run("pg_ctl", "-D", str(data), "-l", str(folder / "log"), "-w", "-o",
                  f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start")
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        run("pg_ctl", "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_two_launchers_share_one_sweep_in_a_real_postgresql(postgres_url, program_root, tmp_path, capsys):
    ledger, sweep_dir = tmp_path / "ledger", tmp_path / "sweep"
    sweep_file = probe_sweep(tmp_path, 6, 2.0, ledger)
    command = launcher(sweep_file, sweep_dir, program_root, "--agents", "2", "--storage", postgres_url)
    results, seconds = run_together([command, command], tmp_path)
    for code, output in results:
        assert code == 0, output[-3000:]
    assert_each_ran_once(ledger, sweep_dir, 6)
    study = optuna.load_study(study_name=sweep_dir.name, storage=postgres_url)
    assert [frozen.state for frozen in study.trials] == [optuna.trial.TrialState.COMPLETE] * 6
    assert not (sweep_dir / "optuna.journal").exists()
    with capsys.disabled():
        print(f"two launchers x 2 slots, 6 probe trials of 2 s in PostgreSQL: {seconds:.1f} s")
    # The same sweep dir without --storage would be another study: refused, nothing run again.
    assert main([str(sweep_file), "--offline", "--sweep-dir", str(sweep_dir), "--program-root", str(program_root)]) == 2
    assert "keeps its study in --storage postgresql://postgres@127.0.0.1" in one_line(capsys.readouterr())
    # A rerun on the database skips all six.
    rerun = subprocess.run(command, cwd=tmp_path, env=script_env(), capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0 and "6 finished before (skipped)" in rerun.stdout, rerun.stdout + rerun.stderr


@pytest.mark.slow
def test_two_real_launchers_train_one_smoke_sweep_together(mnist, tmp_path):
    sweep_file = tmp_path / "smoke.yaml"
    sweep_file.write_text(yaml.safe_dump({
        "program": "train.py", "method": "grid", "metric": {"name": "val/acc", "goal": "maximize"},
        "parameters": {"seed": {"values": [1, 2, 3]}},
        "command": ["${env}", "${interpreter}", "${program}", "+experiment=smoke", "trainer.limit_train_batches=5",
                    "${args_no_hyphens}"]}))
    sweep_dir = tmp_path / "sweep"
    # --pack 1: one process per trial, so that both launchers have trials to take (packed, the first takes all three).
    command = [sys.executable, "-m", "mlplab.tools.sweep", str(sweep_file), "--offline", "--stagger", "0", "--pack", "1",
               "--sweep-dir", str(sweep_dir), "--program-root", str(REPO)]
    results, seconds = run_together([command, command], tmp_path, timeout=600)
    for code, output in results:
        assert code == 0, output[-3000:]
    recorded = records(sweep_dir)
    assert len(recorded) == 3 and all(record["outcome"] == "finished" for record in recorded.values())
    for name in recorded:  # one attempt each: trial.log has one header line per start
        assert (sweep_dir / name / "trial.log").read_text().count(" slot 0: ") == 1
        assert json.loads((sweep_dir / name / "metrics.json").read_text())["test_acc"] > 0
    assert sum(output.count("] started ") for _, output in results) == 3
    print(f"two launchers, 3 real smoke trials: {seconds:.1f} s")
