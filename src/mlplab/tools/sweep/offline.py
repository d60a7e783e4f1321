"""Offline: the sweep's trials on this machine's slots, one at a time per slot, without the wandb server.

The trials come from the sweep's Optuna study (shared.py), which any number of launchers, here or on
other machines sharing the sweep dir, work through together. One main thread starts every process
and polls them: the children's parent-death signal is tied to the thread that started them, and a
launcher that forks its trials (warm.py) must have no other thread.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

from mlplab.errors import UserError
from mlplab.tools.sweep.processes import StopSignals, end_groups
from mlplab.tools.sweep.shared import SharedTrials
from mlplab.tools.sweep.slots import Slot
from mlplab.errors import SweepError
from mlplab.tools.sweep.pack_launch import RunningPack, start_launch
from mlplab.tools.sweep.packing import Packer
from mlplab.tools.sweep.trial_commands import Trial
from mlplab.tools.sweep.trials import CRASHED, FAILED, FINISHED, INTERRUPTED, OUTCOMES, RunningTrial
from mlplab.tools.sweep.warm import TrialStarter


Launch = RunningTrial | RunningPack  # one process: a trial, or a pack of trials that differ only in their seed


def report(slot: Slot, trial: Trial, record: dict[str, Any], outcome: str, note: str | None) -> None:
    detail = ""
    if outcome in (FAILED, CRASHED):
        detail = f" (exit {record['returncode']}): {record.get('error', '')}"
    print(f"[slot {slot.index}] {outcome} {trial.trial_id}{detail}{'; ' + note if note else ''}", flush=True)


def end_launch(launch: Launch, ended_by_launcher: bool, source: SharedTrials, outcomes: dict[str, str]) -> None:
    """Record how the process ended, for each of its trials: in trial.json, in the study, on the output."""
    for trial, record, outcome in launch.finish(ended_by_launcher):
        outcomes[trial.trial_id] = outcome
        report(launch.slot, trial, record, outcome, source.record(trial, outcome))


def run_trials(source: SharedTrials, slots: list[Slot], cwd: Path, stagger: float, grace: float,
               starter: TrialStarter, packer: Packer) -> tuple[dict[str, str], StopSignals]:
    """Run the source's trials on the slots until none is left anywhere or a signal stops the launcher.
    Each free slot takes the next trial, and with it (packer) those that differ from it only in their seed.

    A file the launcher cannot write on the way (a full disk, a folder made read-only) or a database
    that stops answering stops it as a signal would, the running trials interrupted, and is then
    raised as one SweepError line."""
    outcomes: dict[str, str] = {}
    running: dict[int, Launch] = {}
    problem: str | None = None
    with StopSignals() as stop:  # also over the imports: a stop then starts nothing
        try:
            if source.any_to_run():
                starter.warm_up()
            first_start = {slot.index: time.monotonic() + slot.index * stagger for slot in slots}
            while not stop.stopping:
                source.keep_alive([trial for launch in running.values() for trial in launch.trials])
                for slot in slots:
                    if stop.stopping or slot.index in running or time.monotonic() < first_start[slot.index]:
                        continue
                    trial = source.next_trial()
                    if trial is None:
                        break
                    members = packer.members(trial, source.take_mates)
                    running[slot.index] = started = start_launch(members, packer, slot, len(slots), cwd, starter)
                    print(f"[slot {slot.index}] started {started.started_line()}", flush=True)
                for index, launch in list(running.items()):
                    if launch.process is None or launch.process.poll() is not None:
                        del running[index]
                        end_launch(launch, False, source, outcomes)
                if not running and source.finished():
                    break
                time.sleep(0.1)
        except (UserError, OSError) as error:
            problem = str(error) if isinstance(error, UserError) else f"{error.strerror or error}: {error.filename}"
        if (stop.stopping or problem) and running:
            why = ", ".join(map(signal_name, stop.received)) or problem
            print(f"stopping ({why}): SIGTERM to {len(running)} running trial(s), SIGKILL after {grace:g} s", flush=True)
            end_groups([launch.process for launch in running.values() if launch.process], grace, stop)
            for launch in running.values():
                try:
                    end_launch(launch, True, source, outcomes)
                except (UserError, OSError):
                    for trial in launch.trials:  # a record could not be written: a rerun sees `running`, then gone
                        outcomes.setdefault(trial.trial_id, INTERRUPTED)
    if problem:
        raise SweepError(f"the sweep stopped: {problem}")
    return outcomes, stop


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def run_offline(source: SharedTrials, slots: list[Slot], sweep_dir: Path, cwd: Path, stagger: float, grace: float,
                allow_failures: bool, starter: TrialStarter, packer: Packer) -> int:
    """Run what is not finished; print one summary line; the exit code (0, 1 on a failure, 128+N on signal N)."""
    print(f"sweep dir {sweep_dir}: {source.describe()}, on {len(slots)} slot(s)", flush=True)
    outcomes, stop = run_trials(source, slots, cwd, stagger, grace, starter, packer)
    counts = {name: sum(outcome == name for outcome in outcomes.values()) for name in OUTCOMES}
    failed = sorted(trial_id for trial_id, outcome in outcomes.items() if outcome in (FAILED, CRASHED))
    print(f"sweep: {counts[FINISHED]} finished, {len(failed)} failed{' (' + ', '.join(failed) + ')' if failed else ''}, "
          f"{counts[INTERRUPTED]} interrupted, {source.skipped} skipped -> {sweep_dir}", flush=True)
    if stop.exit_code() is not None:
        return stop.exit_code()
    return 1 if failed and not allow_failures else 0
