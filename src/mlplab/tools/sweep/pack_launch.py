"""One pack's process (packing.py): its directory and its trials' links made, the process started or
continued, and each member's outcome recorded in its own trial.json as a single trial's is (trials.py).

Starting. An interrupted pack continues in place (`resume=<pack dir>`) when exactly its members meet again
(the same trials, hence the same directory and seeds), each last recorded interrupted or failed (a member
whose loss went NaN stays failed: its pack's checkpoint says so, and alone it would fail the same way), and
the pack has a checkpoint to continue from. Otherwise each member's earlier attempt is set aside to
<sweep dir>/.previous/<trial id>.<n> (an earlier attempt of the same pack's own records to
.previous/<pack id>.<n>) and the pack starts over.

Ending. A member's outcome is the single trial's rule (trials.outcome_of) on the process's exit code, whether
the launcher ended it and the member's own status.json: finished; failed (its loss went NaN while the others
finished: the process exits 0; or the whole pack failed); interrupted; crashed (a signal the launcher did not
send). A failed member's error is its own (its error.log) when the others went on, else the pack's.
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from mlplab.run import records as runfiles
from mlplab.run.failures import error_line
from mlplab.run.overrides import override
from mlplab.run.records import PACK_FILE, checkpoint_path
from mlplab.tools.sweep.packing import SEED_KEY, Pack, Packer
from mlplab.tools.sweep.slots import Slot, slot_env
from mlplab.tools.sweep.trial_commands import Trial
from mlplab.tools.sweep.trials import (CRASHED, FAILED, INTERRUPTED, LOG_FILE, RESUMABLE_CHECKPOINTS, RunningTrial,
                                       failure_reason, launch_record, outcome_of, recorded_outcome, set_aside,
                                       start_logged, start_trial, write_record)
from mlplab.tools.sweep.warm import ForkedProcess, TrialStarter


@dataclass
class RunningPack:
    """A pack's process on a slot, and the trial.json of each of its members."""

    pack: Pack
    slot: Slot
    process: subprocess.Popen | ForkedProcess | None
    records: dict[str, dict[str, Any]]
    log: IO
    resumed: bool

    @property
    def trials(self) -> list[Trial]:
        return self.pack.members

    def started_line(self) -> str:
        fixed = [text for text in self.pack.members[0].overrides if not text.startswith(f"{SEED_KEY}=")]
        continued = ", continued from its checkpoint" if self.resumed else ""
        return (f"{self.pack.pack_id} ({len(self.trials)} trials: {', '.join(t.trial_id for t in self.trials)}"
                f"{continued}): {shlex.join([*fixed, f'{SEED_KEY}={self.pack.seeds}'])}")

    def finish(self, ended_by_launcher: bool) -> list[tuple[Trial, dict[str, Any], str]]:
        """Record how the pack's process ended: each member with its record and outcome."""
        returncode = self.process.wait() if self.process else None
        self.log.close()
        results = []
        for trial in self.trials:
            record = self.records[trial.trial_id]
            run_status = runfiles.read_status(trial.directory).get("status")
            outcome = outcome_of(returncode, ended_by_launcher, run_status)
            record.update(returncode=returncode, outcome=outcome, run_status=run_status, ended=runfiles.now())
            if outcome in (FAILED, CRASHED):
                record["error"] = member_failure(self.pack, trial, returncode, run_status)
            write_record(trial.directory, record)
            results.append((trial, record, outcome))
        return results


def member_failure(pack: Pack, trial: Trial, returncode: int | None, run_status: str | None) -> str:
    """The member's own error when the pack went on without it, else the pack process's."""
    if returncode == 0:
        own = error_line(trial.directory) if run_status == FAILED else ""
        return own or failure_reason(trial.directory, returncode, run_status)
    return error_line(pack.directory, LOG_FILE)


def continues(pack: Pack) -> bool:
    """Whether the pack continues an interrupted attempt of the same members (see the module's docstring)."""
    saved = runfiles.read_json(pack.directory / PACK_FILE) or {}
    if saved.get("seeds") != pack.seeds:
        return False
    if not any(checkpoint_path(pack.directory, name).is_file() for name in RESUMABLE_CHECKPOINTS):
        return False
    if not all(trial.directory.is_symlink() and trial.directory.resolve() == pack.member_dir(trial).resolve()
               for trial in pack.members):
        return False
    outcomes = {recorded_outcome(trial.directory) for trial in pack.members}
    return INTERRUPTED in outcomes and outcomes <= {INTERRUPTED, FAILED}


def lay_out(pack: Pack) -> None:
    """A fresh pack directory, each member's dir in it and each trial dir a link to its member's.

    pack.json is written now, as train.py writes it: a pack that train.py refuses before it trains still
    reads as a pack (its members are the trials, the folder itself no run)."""
    for trial in pack.members:
        set_aside(trial.directory)
    set_aside(pack.directory)
    pack.directory.mkdir(parents=True)
    members = [pack.member_dir(trial) for trial in pack.members]
    runfiles.write_json(pack.directory / PACK_FILE, {"seeds": pack.seeds, "members": [m.name for m in members]})
    for trial, member in zip(pack.members, members):
        member.mkdir()
        (member / LOG_FILE).symlink_to(Path("..") / LOG_FILE)  # the process's output: the pack's one log
        # Relative, so that a sweep dir moved or mounted elsewhere keeps its links.
        trial.directory.symlink_to(Path(pack.pack_id) / member.name, target_is_directory=True)


def start_pack(pack: Pack, slot: Slot, slot_count: int, cwd: Path, starter: TrialStarter) -> RunningPack:
    """Start the pack's process (continuing an interrupted attempt of it from its checkpoint)."""
    resumed = continues(pack)
    command = [*pack.command, override("resume", str(pack.run_dir))] if resumed else pack.command
    if not resumed:
        lay_out(pack)
    env = slot_env(slot, slot_count)
    members = [trial.trial_id for trial in pack.members]
    records = {trial.trial_id: {**launch_record(trial, command, resumed, slot, env), "pack": str(pack.directory),
                                "pack_members": members, "seed": trial.assignment[SEED_KEY]}
               for trial in pack.members}
    process, log = start_logged(command, slot, env, cwd, starter, pack.directory / LOG_FILE)
    for trial in pack.members:
        records[trial.trial_id].update(pid=process.pid if process else None, forked=isinstance(process, ForkedProcess))
        write_record(trial.directory, records[trial.trial_id])
    return RunningPack(pack, slot, process, records, log, resumed)


def start_launch(members: list[Trial], packer: Packer, slot: Slot, slot_count: int, cwd: Path,
                 starter: TrialStarter) -> RunningTrial | RunningPack:
    """One process for the trials a slot took: a single trial as before, or a pack of them."""
    if len(members) == 1:
        return start_trial(members[0], slot, slot_count, cwd, starter)
    return start_pack(packer.pack(members), slot, slot_count, cwd, starter)
