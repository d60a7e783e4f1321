"""Which trials of an offline sweep share one process: those that differ only in their seed, trained by
train.py as one pack (`seed=[1,2,3]`: one batched model, each member bit-identical to its seed alone,
mlplab.run.packs), at most `--pack N` of them (default: all of a configuration's seeds; 1: one trial per
process, as before packs).

Every trial keeps its own record where it always was. A pack runs in <sweep dir>/pack-<first index>-<hash of
its trial ids>/, train.py's pack directory (pack.json, status.json, summary.json, checkpoints/last.ckpt) plus
the process's output (trial.log); each member trains in its seed-<S>/ (exactly a single run's records) and
gets the launcher's trial.json there; the trial's own directory <sweep dir>/<trial id> is a link to it. So a
rerun, the report and a user read each trial at <sweep dir>/<trial id>, packed or not.

Only listed trials pack (grid, random): bayes draws one trial at a time, each learnt from before the next,
so each bayes trial is a process of its own. A program other than train.py, or a command that passes
`${args_json_file}` (one trial's values), is not packed either: neither trains a list of seeds.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlplab.run import records as runfiles
from mlplab.tools.sweep.paths import run_root
from mlplab.tools.sweep.trial_commands import Trial, command_line, uses_args_json_file
from mlplab.tools.sweep.trials import FINISHED, recorded_outcome

PACK_PREFIX = "pack-"
SEED_KEY = "seed"
PACKING_PROGRAM = "train.py"


def packing_off(config: dict[str, Any], method_name: str) -> str | None:
    """Why this sweep's trials cannot share processes; None when they can."""
    if method_name == "bayes":
        return "bayes draws its trials one at a time (TPE learns from each), so each runs in a process of its own"
    if Path(str(config["program"])).name != PACKING_PROGRAM:
        return f"program {config['program']!r} is not {PACKING_PROGRAM}, which alone trains a list of seeds as a pack"
    if uses_args_json_file(config):
        return "the command passes ${args_json_file}, which holds one trial's values"
    return None


def group_of(trial: Trial) -> str | None:
    """What a trial's pack mates share with it: every value but the seed. None: it packs with no other (its
    seed is not one whole number, e.g. the command's seed=[1,2,3] makes each trial a pack already)."""
    seed = trial.assignment.get(SEED_KEY)
    if not isinstance(seed, int) or isinstance(seed, bool):
        return None
    return json.dumps({key: value for key, value in trial.assignment.items() if key != SEED_KEY},
                      sort_keys=True, default=str)


def listing_index(trial: Trial) -> int:
    """The trial's place in the listing (its id's number): a pack's members and seeds go in this order."""
    return int(trial.trial_id.split("-", 1)[0])


@dataclass
class Pack:
    """Trials trained by one process: its directory (as the sweep dir holds it and as its command names it),
    its seeds in member order and its command line."""

    pack_id: str
    members: list[Trial]
    seeds: list[int]
    directory: Path
    run_dir: Path
    command: list[str]

    def member_dir(self, trial: Trial) -> Path:
        return self.directory / f"seed-{trial.assignment[SEED_KEY]}"  # train.py's name (mlplab.run.members)


def make_pack(config: dict[str, Any], sweep_dir: Path, members: list[Trial]) -> Pack:
    """The pack of these trials: named by their ids, so the same members always meet in the same directory."""
    members = sorted(members, key=listing_index)
    ids = [trial.trial_id for trial in members]
    digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:6]
    pack_id = f"{PACK_PREFIX}{ids[0].split('-', 1)[0]}-{digest}"
    seeds = [trial.assignment[SEED_KEY] for trial in members]
    run_dir = run_root(sweep_dir) / pack_id
    # The first member's values with the seed replaced by the list: `seed=[1, 2, 3]`, as wandb's agent writes it.
    command = command_line(config, {**members[0].assignment, SEED_KEY: seeds}, run_dir)
    return Pack(pack_id, members, seeds, sweep_dir / pack_id, run_dir, command)


def linked_pack(trial: Trial) -> Path | None:
    """The pack directory the trial's last attempt ran in (its trial dir links to a member there), or None."""
    if not trial.directory.is_symlink():
        return None
    member = trial.directory.resolve()
    return member.parent if (member.parent / runfiles.PACK_FILE).is_file() else None


class Packer:
    """Chooses the trials each free slot runs together (at most `limit`; None: no limit)."""

    def __init__(self, config: dict[str, Any], sweep_dir: Path, listed: list[Trial], limit: int | None,
                 off_reason: str | None) -> None:
        self.config, self.sweep_dir, self.off_reason, self.asked = config, sweep_dir, off_reason, limit
        self.limit = 1 if off_reason else (limit if limit is not None else max(1, len(listed)))
        self.groups = {trial.trial_id: group_of(trial) for trial in listed}
        self.listed = {trial.trial_id: trial for trial in listed}

    def members(self, first: Trial, take_mates: Callable[[Callable[[str], Any], int], list[Trial]]) -> list[Trial]:
        """`first` and the waiting trials that differ from it only in their seed, taken with `take_mates`
        (the shared study's, so that no other launcher takes them too). The members of the pack `first`
        last ran in come first, so that an interrupted pack meets again and continues."""
        group = self.groups.get(first.trial_id)
        if self.limit <= 1 or group is None:
            return [first]
        before = linked_pack(first)

        def rank(trial_id: str) -> tuple[bool, int] | None:
            if self.groups.get(trial_id) != group:
                return None
            trial = self.listed[trial_id]
            return (before is None or linked_pack(trial) != before, listing_index(trial))

        return sorted([first, *take_mates(rank, self.limit - 1)], key=listing_index)

    def pack(self, members: list[Trial]) -> Pack:
        return make_pack(self.config, self.sweep_dir, members)

    def plan(self, trials: list[Trial]) -> list[list[Trial]]:
        """What one launcher would run, process by process: the unfinished trials in listing order, each with
        the next ones of its configuration (at most `limit`)."""
        waiting = [trial for trial in trials if recorded_outcome(trial.directory) != FINISHED]
        by_group: dict[str, list[list[Trial]]] = {}
        plan: list[list[Trial]] = []
        for trial in waiting:
            group = self.groups.get(trial.trial_id)
            open_packs = by_group.setdefault(group, []) if group is not None and self.limit > 1 else None
            if open_packs and len(open_packs[-1]) < self.limit:
                open_packs[-1].append(trial)
                continue
            plan.append([trial])
            if open_packs is not None:
                open_packs.append(plan[-1])
        return plan

    def note(self, trials: list[Trial], explicit: bool) -> str | None:
        """The launcher's line on packing: how many processes for how many trials, or why there are no packs
        (only said when --pack asked for them)."""
        if self.off_reason:
            return f"--pack {self.asked}: no packs, {self.off_reason}" if explicit else None
        plan = self.plan(trials)
        packed = [members for members in plan if len(members) > 1]
        if not packed:
            return None
        cap = f"at most {self.limit}" if self.limit < len(self.listed) else "all of a configuration's seeds"
        return (f"packs: {sum(map(len, plan))} trials to run in {len(plan)} processes ({len(packed)} packs of trials "
                f"that differ only in their seed, {cap} each; --pack 1 runs one trial per process)")


def trial_metrics(directory: Path) -> dict[str, Any]:
    """A trial's final numbers: its metrics.json; for a trial that is a pack itself (its command fixes
    seed=[...]), the mean over its finished members of each metric (its summary.json)."""
    metrics = runfiles.read_json(directory / runfiles.METRICS_FILE)
    if metrics is not None:
        return metrics
    summary = runfiles.read_json(directory / runfiles.SUMMARY_FILE) or {}
    return {key: value["mean"] for key, value in summary.items() if isinstance(value, dict)
            and isinstance(value.get("mean"), (int, float)) and math.isfinite(value["mean"])}
