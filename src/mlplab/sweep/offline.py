"""Offline: the sweep's trials on this machine, one at a time per slot, without the wandb server.

Grid and random sweeps know their trials up front (`ListedTrials`); a bayes sweep asks Optuna's
TPE study for the next trial whenever a slot is free, so each draw learns from every result so far
(`StudyTrials`), and tells it each result. One main thread starts every process and polls them:
the children's parent-death signal is tied to the thread that started them, and a launcher that
forks its trials (warm.py) must have no other thread.
"""

from __future__ import annotations

import fcntl
import shlex
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna

from mlplab import runfiles
from mlplab.errors import UserError
from mlplab.sweep import search
from mlplab.sweep.processes import StopSignals, end_groups
from mlplab.sweep.slots import Slot
from mlplab.sweep.spec import SweepError, Trial, make_trial
from mlplab.sweep.trials import (CRASHED, FAILED, FINISHED, INTERRUPTED, OUTCOMES, RunningTrial, finish_trial,
                                 recorded_outcome, start_trial)
from mlplab.sweep.warm import TrialStarter

LOCK_FILE = "launcher.lock"


class ListedTrials:
    """A grid or random sweep: every trial known up front; the finished ones are skipped."""

    def __init__(self, trials: list[Trial]) -> None:
        self.trials = trials
        self.todo = [trial for trial in trials if recorded_outcome(trial.directory) != FINISHED]
        self.skipped = len(trials) - len(self.todo)
        self._pending: Iterator[Trial] = iter(self.todo)

    def describe(self) -> str:
        return f"{len(self.trials)} trials, {self.skipped} finished before (skipped), {len(self.todo)} to run"

    def any_to_run(self) -> bool:
        return bool(self.todo)

    def next_trial(self) -> Trial | None:
        return next(self._pending, None)

    def record(self, trial: Trial, outcome: str) -> str | None:
        return None


class StudyTrials:
    """A bayes sweep: `count` trials in all, finished ones counted; asked for one at a time.

    Trials of the study that a stopped or killed launcher left unfinished are continued first; a
    failed trial is told as failed (TPE ignores it) and does not count, so a rerun draws another.
    """

    def __init__(self, config: dict[str, Any], sweep_dir: Path, count: int, seed: int) -> None:
        self.config, self.sweep_dir = config, sweep_dir
        self.metric_key = search.metric_key(config["metric"]["name"])
        self.space = search.dimensions(config["parameters"])
        self.study = search.open_study(sweep_dir, config["metric"].get("goal", "minimize"), seed)
        self.skipped = len(search.finished_trials(self.study))
        room = max(0, count - self.skipped)
        self._continued: list[Trial] = []
        for frozen in sorted(search.unfinished_trials(self.study), key=lambda frozen: frozen.number)[:room]:
            trial = self._trial(frozen.number, search.assignment_of(self.space, frozen.params))
            if recorded_outcome(trial.directory) == FINISHED:  # the launcher died before it told the study
                self.record(trial, FINISHED)
                self.skipped += 1
            else:
                self._continued.append(trial)
        self._to_draw = max(0, count - self.skipped - len(self._continued))
        self.total = count

    def _trial(self, number: int, assignment: dict[str, Any]) -> Trial:
        trial = make_trial(self.config, self.sweep_dir, number, assignment)
        trial.number = number
        return trial

    def describe(self) -> str:
        return (f"study {self.study.study_name!r} in {search.journal_path(self.sweep_dir)}: {self.total} trials in all, "
                f"{self.skipped} finished before (skipped), {len(self._continued)} to continue, "
                f"{self._to_draw} to draw with Optuna's TPE")

    def any_to_run(self) -> bool:
        return bool(self._continued) or self._to_draw > 0

    def next_trial(self) -> Trial | None:
        if self._continued:
            return self._continued.pop(0)
        if self._to_draw <= 0:
            return None
        self._to_draw -= 1
        optuna_trial, assignment = search.ask(self.study, self.space)
        trial = self._trial(optuna_trial.number, assignment)
        optuna_trial.set_user_attr("overrides", trial.overrides)
        optuna_trial.set_user_attr("trial_dir", str(trial.directory))
        return trial

    def record(self, trial: Trial, outcome: str) -> str | None:
        """Tell the study the trial's metric; a problem with it, or None."""
        number = trial.number
        if outcome == INTERRUPTED:
            return None  # stays running in the study: a rerun continues it
        if outcome != FINISHED:
            self.study.tell(number, state=optuna.trial.TrialState.FAIL)
            return None
        value = (runfiles.read_json(trial.directory / runfiles.METRICS_FILE) or {}).get(self.metric_key)
        if not isinstance(value, (int, float)):
            self.study.tell(number, state=optuna.trial.TrialState.FAIL)
            return f"its metrics.json has no number at {self.metric_key} ({value!r}): told Optuna it failed"
        self.study.tell(number, float(value))
        return None


class SweepLock:
    """An flock on <sweep dir>/launcher.lock: two launchers on one sweep dir would run trials twice."""

    def __init__(self, sweep_dir: Path) -> None:
        sweep_dir.mkdir(parents=True, exist_ok=True)
        self._file = (sweep_dir / LOCK_FILE).open("a")  # "a": never empties a file that is not ours
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            raise SweepError(f"another launcher is running the sweep in {sweep_dir}: wait for it or stop it") from None

    def __enter__(self) -> SweepLock:
        return self

    def __exit__(self, *_: object) -> None:
        self._file.close()


def report(running: RunningTrial, outcome: str, note: str | None) -> None:
    record = running.record
    detail = ""
    if outcome in (FAILED, CRASHED):
        detail = f" (exit {record['returncode']}): {record.get('error', '')}"
    print(f"[slot {running.slot.index}] {outcome} {running.trial.trial_id}{detail}"
          f"{'; ' + note if note else ''}", flush=True)


def run_trials(source: ListedTrials | StudyTrials, slots: list[Slot], cwd: Path, stagger: float,
               grace: float, starter: TrialStarter) -> tuple[dict[str, str], StopSignals]:
    """Run the source's trials on the slots until none is left or a signal stops the launcher.

    A file the launcher cannot write on the way (a full disk, a folder made read-only) stops it as a
    signal would, the running trials interrupted, and is then raised as one SweepError line."""
    outcomes: dict[str, str] = {}
    running: dict[int, RunningTrial] = {}
    exhausted = False
    problem: str | None = None
    with StopSignals() as stop:  # also over the imports: a stop then starts nothing
        try:
            if source.any_to_run():
                starter.warm_up()
            first_start = {slot.index: time.monotonic() + slot.index * stagger for slot in slots}
            while not stop.stopping and (running or not exhausted):
                for slot in slots:
                    waiting = time.monotonic() < first_start[slot.index]
                    if exhausted or stop.stopping or slot.index in running or waiting:
                        continue
                    trial = source.next_trial()
                    if trial is None:
                        exhausted = True
                        break
                    running[slot.index] = started = start_trial(trial, slot, len(slots), cwd, starter)
                    resumed = " (continued from its checkpoint)" if started.record["resumed"] else ""
                    print(f"[slot {slot.index}] started {trial.trial_id}{resumed}: {shlex.join(trial.overrides)}",
                          flush=True)
                for index, trial_run in list(running.items()):
                    if trial_run.process is None or trial_run.process.poll() is not None:
                        del running[index]
                        outcome = finish_trial(trial_run, ended_by_launcher=False)
                        outcomes[trial_run.trial.trial_id] = outcome
                        report(trial_run, outcome, source.record(trial_run.trial, outcome))
                time.sleep(0.1)
        except (UserError, OSError) as error:
            problem = str(error) if isinstance(error, UserError) else f"{error.strerror or error}: {error.filename}"
        if (stop.stopping or problem) and running:
            why = ", ".join(map(signal_name, stop.received)) or problem
            print(f"stopping ({why}): SIGTERM to {len(running)} running trial(s), SIGKILL after {grace:g} s", flush=True)
            end_groups([trial_run.process for trial_run in running.values() if trial_run.process], grace, stop)
            for trial_run in running.values():
                try:
                    outcome = finish_trial(trial_run, ended_by_launcher=True)
                    report(trial_run, outcome, source.record(trial_run.trial, outcome))
                except (UserError, OSError):
                    outcome = INTERRUPTED  # its record could not be written: a rerun sees `running`, then gone
                outcomes[trial_run.trial.trial_id] = outcome
    if problem:
        raise SweepError(f"the sweep stopped: {problem}")
    return outcomes, stop


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def run_offline(source: ListedTrials | StudyTrials, slots: list[Slot], sweep_dir: Path, cwd: Path,
                stagger: float, grace: float, allow_failures: bool, starter: TrialStarter) -> int:
    """Run what is not finished; print one summary line; the exit code (0, 1 on a failure, 128+N on signal N)."""
    print(f"sweep dir {sweep_dir}: {source.describe()}, on {len(slots)} slot(s)", flush=True)
    outcomes, stop = run_trials(source, slots, cwd, stagger, grace, starter)
    counts = {name: sum(outcome == name for outcome in outcomes.values()) for name in OUTCOMES}
    failed = sorted(trial_id for trial_id, outcome in outcomes.items() if outcome in (FAILED, CRASHED))
    print(f"sweep: {counts[FINISHED]} finished, {len(failed)} failed{' (' + ', '.join(failed) + ')' if failed else ''}, "
          f"{counts[INTERRUPTED]} interrupted, {source.skipped} skipped -> {sweep_dir}", flush=True)
    if stop.exit_code() is not None:
        return stop.exit_code()
    return 1 if failed and not allow_failures else 0
