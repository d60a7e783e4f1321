"""Offline: the sweep's trials on this machine's slots, one at a time per slot, without the wandb server.

The trials come from the sweep's Optuna study (shared.py), which any number of launchers, here or on
other machines sharing the sweep dir, work through together. One main thread starts every process
and polls them: the children's parent-death signal is tied to the thread that started them, and a
launcher that forks its trials (warm.py) must have no other thread.
"""

from __future__ import annotations

import shlex
import signal
import time
from pathlib import Path

from mlplab.errors import UserError
from mlplab.tools.sweep.processes import StopSignals, end_groups
from mlplab.tools.sweep.shared import SharedTrials
from mlplab.tools.sweep.slots import Slot
from mlplab.errors import SweepError
from mlplab.tools.sweep.trials import CRASHED, FAILED, FINISHED, INTERRUPTED, OUTCOMES, RunningTrial, finish_trial, start_trial
from mlplab.tools.sweep.warm import TrialStarter


def report(running: RunningTrial, outcome: str, note: str | None) -> None:
    record = running.record
    detail = ""
    if outcome in (FAILED, CRASHED):
        detail = f" (exit {record['returncode']}): {record.get('error', '')}"
    print(f"[slot {running.slot.index}] {outcome} {running.trial.trial_id}{detail}"
          f"{'; ' + note if note else ''}", flush=True)


def run_trials(source: SharedTrials, slots: list[Slot], cwd: Path, stagger: float,
               grace: float, starter: TrialStarter) -> tuple[dict[str, str], StopSignals]:
    """Run the source's trials on the slots until none is left anywhere or a signal stops the launcher.

    A file the launcher cannot write on the way (a full disk, a folder made read-only) or a database
    that stops answering stops it as a signal would, the running trials interrupted, and is then
    raised as one SweepError line."""
    outcomes: dict[str, str] = {}
    running: dict[int, RunningTrial] = {}
    problem: str | None = None
    with StopSignals() as stop:  # also over the imports: a stop then starts nothing
        try:
            if source.any_to_run():
                starter.warm_up()
            first_start = {slot.index: time.monotonic() + slot.index * stagger for slot in slots}
            while not stop.stopping:
                source.keep_alive([trial_run.trial for trial_run in running.values()])
                for slot in slots:
                    if stop.stopping or slot.index in running or time.monotonic() < first_start[slot.index]:
                        continue
                    trial = source.next_trial()
                    if trial is None:
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
                if not running and source.finished():
                    break
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


def run_offline(source: SharedTrials, slots: list[Slot], sweep_dir: Path, cwd: Path,
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
