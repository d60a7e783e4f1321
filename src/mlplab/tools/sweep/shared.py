"""An offline sweep's trials as an Optuna study that any number of launchers work through together.

The study (storage.py: the sweep dir's journal, or a database) is the queue. A grid or random sweep
enqueues its listed trials once, as WAITING Optuna trials that carry their trial id; a launcher with a
free slot takes the next one, and Optuna's storage lets exactly one launcher turn a WAITING trial
RUNNING, so none runs twice. A bayes sweep asks Optuna's TPE for each trial, `count` in all. Whatever
a launcher's slot frees, it tells the study: finished (with the file's metric), failed, or
interrupted, which queues the trial again (Optuna's RetryHeartbeatStaleTrialCallback) so that any
launcher continues it from its checkpoint. A trial whose launcher is gone (liveness.py, or Optuna's
heartbeat for a database) is failed and queued again the same way. A launcher ends when no trial of
its sweep is waiting or running anywhere.

Each trial keeps its directory, named by its trial id, and its records (trial.json, status.json) as
before; a retried trial is the same directory, continued. A launcher that starts gives the trials
that failed before it one more attempt, as a rerun always has.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from datetime import datetime
from pathlib import Path
from collections.abc import Callable
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState

from mlplab.errors import UserError
from mlplab.tools.sweep import search
from mlplab.tools.sweep.liveness import STAMP, is_this_launcher, launcher_gone, show_signs_of_life, this_launcher
from mlplab.tools.sweep.packing import trial_metrics
from mlplab.tools.sweep.trial_commands import Trial, make_trial
from mlplab.tools.sweep.storage import (HEARTBEAT_SECONDS, STALE_AFTER, StudyLock, journal_path, open_storage,
                                  retry_callback, shown_url, storage_errors)
from mlplab.tools.sweep.trials import CRASHED, FAILED, FINISHED, INTERRUPTED, recorded_outcome

TRIAL_ID, OUTCOME = "trial_id", "outcome"  # user attributes of an Optuna trial
TAKEN_OVER, DUPLICATE = "taken over", "duplicate"
LOOK_SECONDS = 1.0  # how often a launcher with a free slot but nothing to take looks again
REAP_SECONDS = 5.0  # how often it looks for trials whose launcher is gone
LIVE = (TrialState.WAITING, TrialState.RUNNING)
DONE = (TrialState.COMPLETE, TrialState.PRUNED)  # PRUNED: a listed trial that finished without the metric


def quietly(call, *args: Any, **kwargs: Any) -> Any:
    """Optuna's warnings about its experimental parts and about heartbeats outside Study.optimize: the
    launcher beats for its trials itself."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return call(*args, **kwargs)


class SharedTrials:
    """The trials of one offline sweep, taken one at a time from the study the sweep's launchers share.

    `listed`: the trials of a grid or random sweep (this launcher takes only those); None for bayes,
    whose `count` trials are drawn by TPE."""

    def __init__(self, config: dict[str, Any], sweep_dir: Path, count: int | None, seed: int,
                 listed: list[Trial] | None, storage: BaseStorage, where: str,
                 stale_after: float = STALE_AFTER) -> None:
        self.config, self.sweep_dir, self.count, self.seed = config, sweep_dir, count, seed
        self.listed = None if listed is None else {trial.trial_id: trial for trial in listed}
        self.storage, self.where, self.stale_after = storage, where, stale_after
        self.space = search.dimensions(config["parameters"]) if listed is None else None
        metric = config.get("metric") or {}
        self.metric_key = self._metric_key(metric.get("name"), required=listed is None)
        self.lock = StudyLock(sweep_dir)
        self.started = datetime.now()  # Optuna's datetimes are local, without a zone
        self._next_look = self._next_check = self._last_beat = self._last_reap = 0.0
        self._waiting_said = False
        with storage_errors(where):
            self.study = search.open_study(sweep_dir, metric.get("goal", "minimize"), seed, storage)
            self.study_id = storage.get_study_id_from_name(self.study.study_name)
            with self.lock:
                self.reap()
                if listed is not None:
                    self._queue_listed(listed)
            trials = self._trials()
            self.skipped = len({self.trial_id_of(frozen) for frozen in trials if frozen.state in DONE})
            self._waiting = sum(frozen.state == TrialState.WAITING for frozen in trials)
            self._running = sum(frozen.state == TrialState.RUNNING for frozen in trials)

    # -- what the study holds -------------------------------------------------------------------

    @staticmethod
    def _metric_key(name: str | None, required: bool) -> str | None:
        if required:
            return search.metric_key(name)
        try:
            return search.metric_key(name) if name else None
        except UserError:
            return None  # a grid's metric is only recorded: without one the study counts finished trials

    def trial_id_of(self, frozen: FrozenTrial) -> str | None:
        named = frozen.user_attrs.get(TRIAL_ID)
        if isinstance(named, str):
            return named
        if self.space is None:
            return None
        # A bayes trial from before trial ids were stamped on them: named by its first attempt, as then.
        first = frozen.system_attrs.get("failed_trial", frozen.number)
        return make_trial(self.config, self.sweep_dir, first, search.assignment_of(self.space, frozen.params)).trial_id

    def _trials(self, states: tuple[TrialState, ...] | None = None) -> list[FrozenTrial]:
        """The study's trials of this sweep (a study shared by launchers with other --count or --seed holds more)."""
        trials = self.study.get_trials(deepcopy=False, states=states)
        return [frozen for frozen in trials if self.listed is None or self.trial_id_of(frozen) in self.listed]

    def _internal_id(self, number: int) -> int:
        return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)

    def _queue_listed(self, listed: list[Trial]) -> None:
        """Enqueue each listed trial with no attempt waiting, running or done (under the lock: once)."""
        attempts: dict[str, set[TrialState]] = {}
        for frozen in self.study.get_trials(deepcopy=False):
            attempts.setdefault(self.trial_id_of(frozen) or "", set()).add(frozen.state)
        new = []
        for trial in listed:
            if attempts.get(trial.trial_id, set()) & {*LIVE, *DONE}:
                continue
            attrs = {TRIAL_ID: trial.trial_id, "overrides": trial.overrides, "trial_dir": str(trial.directory)}
            if recorded_outcome(trial.directory) == FINISHED:  # finished before the sweep had a study
                value = self._metric_value(trial)
                state = TrialState.PRUNED if value is None else TrialState.COMPLETE
                new.append(optuna.trial.create_trial(state=state, value=value, user_attrs={**attrs, OUTCOME: FINISHED}))
            else:
                new.append(optuna.trial.create_trial(state=TrialState.WAITING, user_attrs=attrs))
        self.study.add_trials(new)

    def _recorded_metric(self, trial: Trial) -> Any:
        """What the trial's metrics (packing.trial_metrics) hold at the metric's key (anything, or None)."""
        return trial_metrics(trial.directory).get(self.metric_key)

    def _metric_value(self, trial: Trial) -> float | None:
        if self.metric_key is None:
            return None
        value = self._recorded_metric(trial)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    def draws_left(self) -> int:
        """Bayes: trials still to draw. A trial that failed since this launcher started counts (it is not
        drawn again until a launcher starts anew); one taken over or interrupted is queued again instead."""
        if self.listed is not None:
            return 0
        trials = self.study.get_trials(deepcopy=False)
        used = sum(frozen.state in (*LIVE, TrialState.COMPLETE) for frozen in trials)
        used += sum(frozen.state == TrialState.FAIL and frozen.user_attrs.get(OUTCOME) in (FAILED, CRASHED)
                    and frozen.datetime_complete is not None and frozen.datetime_complete >= self.started
                    for frozen in trials)
        return max(0, (self.count or 0) - used)

    def describe(self) -> str:
        shared = f"study {self.study.study_name!r} in {self.where}"
        elsewhere = f", {self._running} running in other launchers" if self._running else ""
        if self.listed is None:
            return (f"{shared}: {self.count} trials in all, {self.skipped} finished before (skipped), {self._waiting} "
                    f"to continue, {self.draws_left()} to draw with Optuna's TPE{elsewhere}")
        return (f"{len(self.listed)} trials, {self.skipped} finished before (skipped), {self._waiting} to run{elsewhere} "
                f"({shared}, shared by every launcher on it)")

    # -- taking trials ----------------------------------------------------------------------------

    def any_to_run(self) -> bool:
        with storage_errors(self.where):
            return bool(self._trials(LIVE)) or self.draws_left() > 0

    def next_trial(self) -> Trial | None:
        """The next trial for a free slot, taken from the study; None when there is none for now."""
        if time.monotonic() < self._next_look:
            return None
        with storage_errors(self.where):
            trial = self._take_waiting() or self._draw()
        if trial is None:
            self._next_look = time.monotonic() + LOOK_SECONDS
        return trial

    def _claim(self, frozen: FrozenTrial) -> bool:
        """Turn a WAITING trial RUNNING: the storage lets one launcher alone succeed."""
        internal = self._internal_id(frozen.number)
        try:
            if not self.storage.set_trial_state_values(internal, TrialState.RUNNING):
                return False
        except UpdateFinishedTrialError:
            return False
        self._stamp(internal)
        return True

    def _stamp(self, internal: int) -> None:
        self.storage.set_trial_user_attr(internal, STAMP, this_launcher())
        if isinstance(self.storage, RDBStorage):
            self.storage.record_heartbeat(internal)  # at once: a trial without a heartbeat is never found stale

    def _duplicate(self, number: int, trial_id: str) -> bool:
        """Whether another attempt of the trial is done, or running and older: this one is then dropped."""
        return any(self.trial_id_of(other) == trial_id and other.number != number and (
            other.state in DONE or (other.state == TrialState.RUNNING and other.number < number))
            for other in self.study.get_trials(deepcopy=False, states=(*LIVE, *DONE)))

    def _take_waiting(self, rank: Callable[[str], Any] | None = None) -> Trial | None:
        """The first waiting trial this launcher claims; with `rank`, only trial ids it ranks (not None), best first."""
        waiting = self._trials((TrialState.WAITING,))
        if rank is not None:  # sorted() is stable: equal ranks keep the study's order
            ranked = [(key, frozen) for frozen in waiting if (key := rank(self.trial_id_of(frozen))) is not None]
            waiting = [frozen for _, frozen in sorted(ranked, key=lambda pair: pair[0])]
        for frozen in waiting:
            if not self._claim(frozen):
                continue
            trial_id = self.trial_id_of(frozen)
            if self._duplicate(frozen.number, trial_id):
                self._tell_failed(frozen.number, DUPLICATE)
                continue
            trial = self._trial(frozen.number, trial_id, frozen.params)
            if recorded_outcome(trial.directory) == FINISHED:  # its launcher died before telling the study
                self.record(trial, FINISHED)
                self.skipped += 1
                continue
            return trial
        return None

    def take_mates(self, rank: Callable[[str], Any], limit: int) -> list[Trial]:
        """Up to `limit` more waiting trials that `rank` accepts, best first, each claimed as next_trial claims
        one (a pack's members: no other launcher runs them too)."""
        taken: list[Trial] = []
        with storage_errors(self.where):
            while len(taken) < limit and (trial := self._take_waiting(rank)) is not None:
                taken.append(trial)
        return taken

    def _draw(self) -> Trial | None:
        if self.listed is not None:
            return None
        with self.lock:  # counting and asking as one step: launchers together draw `count`, not more
            if self.draws_left() <= 0:
                return None
            search.reseed(self.study, self.seed)
            optuna_trial, _ = quietly(search.ask, self.study, self.space)
        self._stamp(self._internal_id(optuna_trial.number))
        trial_id = optuna_trial.user_attrs.get(TRIAL_ID)  # a retry queued since _take_waiting looked
        trial = self._trial(optuna_trial.number, trial_id, optuna_trial.params)
        if trial_id is None:
            for key, value in ((TRIAL_ID, trial.trial_id), ("overrides", trial.overrides),
                               ("trial_dir", str(trial.directory))):
                optuna_trial.set_user_attr(key, value)
        return trial

    def _trial(self, number: int, trial_id: str | None, params: dict[str, Any]) -> Trial:
        if self.listed is not None:
            return dataclasses.replace(self.listed[trial_id], number=number)
        first = int(trial_id.split("-", 1)[0]) if trial_id else number  # a retry keeps its first attempt's dir
        trial = make_trial(self.config, self.sweep_dir, first, search.assignment_of(self.space, params))
        trial.number = number
        return trial

    # -- telling the study ------------------------------------------------------------------------

    def _tell_failed(self, number: int, outcome: str) -> FrozenTrial:
        self.storage.set_trial_user_attr(self._internal_id(number), OUTCOME, outcome)
        return self.study.tell(number, state=TrialState.FAIL)

    def record(self, trial: Trial, outcome: str) -> str | None:
        """Tell the study how the trial ended; a note for the launcher's line, or None."""
        number = trial.number
        try:
            with storage_errors(self.where):
                if outcome == INTERRUPTED:  # queued again: this or another launcher continues it
                    quietly(retry_callback(), self.study, self._tell_failed(number, INTERRUPTED))
                    return None
                if outcome != FINISHED:
                    self._tell_failed(number, outcome)
                    return None
                value = self._metric_value(trial)
                if value is None and self.listed is None:
                    self._tell_failed(number, FAILED)
                    return (f"its metrics.json has no number at {self.metric_key} ({self._recorded_metric(trial)!r}): "
                            "told Optuna it failed")
                self.storage.set_trial_user_attr(self._internal_id(number), OUTCOME, FINISHED)
                if value is None:
                    self.study.tell(number, state=TrialState.PRUNED)
                else:
                    self.study.tell(number, value)
                return None
        except (UpdateFinishedTrialError, ValueError):
            return "another launcher had taken it over meanwhile (this one was silent too long: see --stale-after)"

    # -- while trials run -------------------------------------------------------------------------

    def keep_alive(self, running: list[Trial]) -> None:
        """Show that this launcher still runs its trials; now and then, take over those of launchers gone."""
        now = time.monotonic()
        with storage_errors(self.where):
            if now - self._last_beat >= HEARTBEAT_SECONDS:
                self._last_beat = now
                show_signs_of_life([trial.directory for trial in running])
                if isinstance(self.storage, RDBStorage):
                    for trial in running:
                        self.storage.record_heartbeat(self._internal_id(trial.number))
            if now - self._last_reap >= REAP_SECONDS:
                self._last_reap = now
                with self.lock:
                    self.reap()

    def reap(self) -> None:
        """Fail each running trial whose launcher is gone and queue it again (called under the lock)."""
        if isinstance(self.storage, RDBStorage):
            quietly(optuna.storages.fail_stale_trials, self.study)  # Optuna's heartbeat queues them again itself
        for frozen in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            stamp = frozen.user_attrs.get(STAMP)
            trial_id = self.trial_id_of(frozen)
            if is_this_launcher(stamp) or trial_id is None:
                continue
            if not launcher_gone(stamp, frozen.datetime_start, self.sweep_dir / trial_id, self.stale_after,
                                 other_hosts_by_files=not isinstance(self.storage, RDBStorage)):
                continue
            try:
                failed = self._tell_failed(frozen.number, TAKEN_OVER)
            except (UpdateFinishedTrialError, ValueError):
                continue  # another launcher took it over first
            quietly(retry_callback(), self.study, failed)
            who = f"{stamp.get('host')} pid {stamp.get('pid')}" if isinstance(stamp, dict) else "unknown"
            print(f"trial {trial_id}: its launcher ({who}) is gone: queued again, to continue from its checkpoint",
                  flush=True)

    def finished(self) -> bool:
        """Whether nothing of this sweep waits, runs elsewhere, or remains to draw (looked at once a second)."""
        if time.monotonic() < self._next_check:
            return False
        with storage_errors(self.where):
            running = self._trials(LIVE)
            done = not running and self.draws_left() <= 0
        self._next_check = time.monotonic() + LOOK_SECONDS
        if running and not self._waiting_said:
            self._waiting_said = True
            print(f"waiting for {len(running)} trial(s) that other launchers run (taken over if theirs is gone)",
                  flush=True)
        return done


def open_trials(config: dict[str, Any], sweep_dir: Path, count: int | None, seed: int,
                listed: list[Trial] | None = None, storage_url: str | None = None,
                stale_after: float = STALE_AFTER) -> SharedTrials:
    """The sweep's shared trials in its journal, or in the database at `storage_url`."""
    storage = open_storage(sweep_dir, storage_url, stale_after)
    where = str(journal_path(sweep_dir)) if storage_url is None else shown_url(storage_url)
    return SharedTrials(config, sweep_dir, count, seed, listed, storage, where, stale_after)
