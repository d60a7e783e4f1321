"""One trial on this machine: its process, its record and its outcome.

The launcher's record of a trial is <trial dir>/trial.json (command, slot, CUDA_VISIBLE_DEVICES,
pid, forked, returncode, outcome, started, ended); the run's own record is status.json, written by train.py
in the same directory. Neither writes the other's file. The outcome rules:

- exit 0 is `finished` only if the run's status.json says finished (else it is not finished);
- a trial the launcher ended (it was stopped) is `interrupted`; so is one whose status.json says so;
- killed by a signal the launcher did not send (the OOM killer...): `crashed`;
- any other exit code: `failed`.

On a rerun a finished trial is skipped; an interrupted one continues from its own checkpoint
(`resume=<trial dir>`) when it has one, and everything else is set aside to <sweep dir>/.previous/
and started over. A record that says `running` whose process is gone was left by a killed launcher:
the report shows that trial as killed, and a rerun continues it as interrupted.

A trial that ran as a member of a pack (packing.py) has the same records in its member directory,
which its trial dir links to; its record names the pack's directory (`pack`), where its process's
log and liveness are.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from mlplab.run import records as runfiles
from mlplab.run.overrides import override
from mlplab.run.records import (FAILED, FINISHED, INTERRUPTED, INTERRUPTED_CHECKPOINT, KILLED, LAST_CHECKPOINT,
                                PACK_FILE, RUNNING, checkpoint_path)
from mlplab.run.failures import error_line
from mlplab.tools.sweep.slots import Slot, slot_env
from mlplab.errors import SweepError
from mlplab.tools.sweep.trial_commands import ARGS_JSON_FILE, Trial
from mlplab.tools.sweep.warm import ForkedProcess, TrialStarter

CRASHED = "crashed"
OUTCOMES = (FINISHED, FAILED, CRASHED, INTERRUPTED)
TRIAL_FILE, LOG_FILE, PREVIOUS_DIR = "trial.json", "trial.log", ".previous"
RESUMABLE_CHECKPOINTS = (LAST_CHECKPOINT, INTERRUPTED_CHECKPOINT)


def outcome_of(returncode: int | None, ended_by_launcher: bool, run_status: str | None) -> str:
    """A trial's outcome from its exit code, whether the launcher ended it, and its status.json."""
    if returncode == 0 and run_status == FINISHED:
        return FINISHED  # also when it finished just as the launcher was stopping
    if ended_by_launcher or run_status == INTERRUPTED:
        return INTERRUPTED
    if returncode is not None and returncode < 0:
        return CRASHED
    return FAILED  # non-zero, never started (None), or exit 0 without status.json saying finished


def read_record(directory: Path) -> dict[str, Any]:
    return runfiles.read_json(directory / TRIAL_FILE) or {}


def write_record(directory: Path, record: dict[str, Any]) -> None:
    runfiles.write_json(directory / TRIAL_FILE, record)


def trial_state(directory: Path, record: dict[str, Any] | None = None) -> str | None:
    """The outcome trial.json records, except that a `running` trial whose process is gone (its launcher
    was killed, and it with it) is `killed`, as runfiles.read_status says of a run; None: never started.

    Liveness is only knowable on the host that started the trial; elsewhere `running` stays."""
    record = read_record(directory) if record is None else record
    outcome = record.get("outcome")
    if outcome != RUNNING or record.get("host", socket.gethostname()) != socket.gethostname():
        return outcome
    pid = record.get("pid")
    process_dir = Path(record["pack"]) if isinstance(record.get("pack"), str) else directory  # a pack's one process
    return RUNNING if isinstance(pid, int) and trial_alive(pid, process_dir) else KILLED


def recorded_outcome(directory: Path) -> str | None:
    """What the last attempt came to, for a rerun: a killed trial was interrupted; None when it never started."""
    state = trial_state(directory)
    if state == RUNNING:
        pid = read_record(directory).get("pid")
        if isinstance(pid, int):
            raise SweepError(f"trial {directory.name} is still running (pid {pid}) from a launcher that was killed: "
                             f"end it with `kill -- -{pid}` or let it finish, then rerun")
        return INTERRUPTED  # recorded on another host: its process cannot be seen from here
    return INTERRUPTED if state == KILLED else state


def trial_alive(pid: int, directory: Path) -> bool:
    """Whether process `pid` is this trial's: a fresh one names the trial dir on its command line, a forked
    one (whose command line is the launcher's) writes to the trial's log."""
    if pid <= 0:
        return False  # os.kill(0 or -n) would signal process groups
    if runfiles.process_alive(pid, marker=str(directory)):
        return True
    try:
        return os.readlink(f"/proc/{pid}/fd/1") == str(directory / LOG_FILE)
    except OSError:
        return False


def is_member_dir(directory: Path) -> bool:
    """Whether the directory is a pack's member (its parent holds pack.json): it continues only with its pack."""
    return (Path(directory).resolve().parent / PACK_FILE).is_file()


def resumable(directory: Path) -> bool:
    """Whether the trial can continue alone from its own checkpoint (a pack's member cannot: the state is its pack's)."""
    return not is_member_dir(directory) and any(checkpoint_path(directory, name).is_file()
                                                for name in RESUMABLE_CHECKPOINTS)


def set_aside(directory: Path) -> None:
    """Move an earlier attempt to <sweep dir>/.previous/<trial id>.<n>, so the rerun starts clean. A trial dir
    that links to a pack's member dir: the member dir is moved (it is the attempt), the link removed."""
    previous, name = directory.parent / PREVIOUS_DIR, directory.name
    if directory.is_symlink():
        target = directory.resolve()
        directory.unlink()
        if target.is_dir():
            set_aside_to(target, previous, name)
    elif directory.exists():
        set_aside_to(directory, previous, name)


def set_aside_to(directory: Path, previous: Path, name: str) -> None:
    previous.mkdir(exist_ok=True)
    attempt = 1
    while (previous / f"{name}.{attempt}").exists():
        attempt += 1
    directory.rename(previous / f"{name}.{attempt}")


@dataclass
class RunningTrial:
    trial: Trial
    slot: Slot
    process: subprocess.Popen | ForkedProcess | None
    record: dict[str, Any]
    log: IO

    @property
    def trials(self) -> list[Trial]:
        """The trials the process runs (a pack's: packing.RunningPack)."""
        return [self.trial]

    def started_line(self) -> str:
        resumed = " (continued from its checkpoint)" if self.record["resumed"] else ""
        return f"{self.trial.trial_id}{resumed}: {shlex.join(self.trial.overrides)}"

    def finish(self, ended_by_launcher: bool) -> list[tuple[Trial, dict[str, Any], str]]:
        """Record how the process ended: each trial with its record and outcome."""
        return [(self.trial, self.record, finish_trial(self, ended_by_launcher))]


def launch_record(trial: Trial, command: list[str], resumed: bool, slot: Slot, env: dict[str, str]) -> dict[str, Any]:
    """A trial's trial.json as its process starts (pid and forked are added once it runs)."""
    record: dict[str, Any] = {
        "trial": trial.trial_id, "overrides": trial.overrides, "command": command, "resumed": resumed,
        "slot": slot.index, "host": socket.gethostname(), "cuda_visible_devices": env.get("CUDA_VISIBLE_DEVICES"),
        "omp_num_threads": env.get("OMP_NUM_THREADS"), "pid": None, "returncode": None, "outcome": RUNNING,
        "started": runfiles.now(), "ended": None,
    }
    if trial.number is not None:
        record["optuna_trial"] = trial.number
    return record


def start_logged(command: list[str], slot: Slot, env: dict[str, str], cwd: Path, starter: TrialStarter,
                 log_path: Path) -> tuple[subprocess.Popen | ForkedProcess | None, IO]:
    """The process running `command`, its output appended to `log_path` after a header line; None when it
    cannot start (the log says why)."""
    log = log_path.open("a")
    log.write(f"# {runfiles.now()} slot {slot.index}: {shlex.join(command)}\n")
    log.flush()
    try:
        return starter.start(command, env, cwd, log), log
    except OSError as error:  # e.g. the interpreter is gone: this trial fails, the others go on
        log.write(f"cannot start {command[0]}: {error}\n")
        return None, log


def start_trial(trial: Trial, slot: Slot, slot_count: int, cwd: Path, starter: TrialStarter) -> RunningTrial:
    """Start the trial's process (continuing an interrupted attempt from its checkpoint)."""
    command = trial.command
    resumed = recorded_outcome(trial.directory) == INTERRUPTED and resumable(trial.directory)
    if resumed:
        command = [*command, override("resume", str(trial.run_dir))]
    else:
        set_aside(trial.directory)
        trial.directory.mkdir(parents=True)
    if trial.args_json is not None:  # what `${args_json_file}` names, as wandb's agent writes it
        runfiles.write_text(trial.directory / ARGS_JSON_FILE, trial.args_json)
    env = slot_env(slot, slot_count)
    record = launch_record(trial, command, resumed, slot, env)
    process, log = start_logged(command, slot, env, cwd, starter, trial.directory / LOG_FILE)
    record["pid"] = process.pid if process else None
    record["forked"] = isinstance(process, ForkedProcess)
    write_record(trial.directory, record)
    return RunningTrial(trial, slot, process, record, log)


def finish_trial(running: RunningTrial, ended_by_launcher: bool) -> str:
    """Record how the trial's process ended; its outcome."""
    returncode = running.process.wait() if running.process else None
    running.log.close()
    run_status = runfiles.read_status(running.trial.directory).get("status")
    outcome = outcome_of(returncode, ended_by_launcher, run_status)
    running.record.update(returncode=returncode, outcome=outcome, run_status=run_status, ended=runfiles.now())
    if outcome in (FAILED, CRASHED):
        running.record["error"] = failure_reason(running.trial.directory, returncode, run_status)
    write_record(running.trial.directory, running.record)
    return outcome


def failure_reason(directory: Path, returncode: int | None, run_status: str | None) -> str:
    if returncode == 0:
        return f"exited 0 but its status.json says {run_status or 'nothing (no status.json)'}"
    return error_line(directory, LOG_FILE)
