"""The command line: `python -m mlplab.tools.sweep FILE [options]`.

    python -m mlplab.tools.sweep sweeps/activations.yaml --gpus 0,1 --agents-per-gpu 2   # online
    python -m mlplab.tools.sweep sweeps/activations.yaml --offline --agents 2             # no server
    python -m mlplab.tools.sweep sweeps/activations.yaml --offline --pack 1               # no packs: a process per trial
    python -m mlplab.tools.sweep sweeps/bayes.yaml --offline --count 12 --agents 2        # Optuna TPE
    python -m mlplab.tools.sweep sweeps/depth.yaml --dry-run                              # print the trials
    python -m mlplab.tools.sweep sweeps/activations.yaml --offline trainer.max_epochs=1 seed=1,2   # a quick try
    python -m mlplab.tools.sweep sweeps/activations.yaml --offline --storage postgresql://u@db/sweeps  # many machines

Exit status: 0 when no trial failed, 1 when one did, 2 for a bad file or option, 128+N on signal N.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlplab.run import records as runfiles
from mlplab.errors import UserError
from mlplab.tools.sweep.composition import check_trials_compose
from mlplab.tools.sweep.offline import run_offline
from mlplab.tools.sweep.online import offline_reason, run_online
from mlplab.tools.sweep.methods import SearchMethod, method_of
from mlplab.tools.sweep.packing import Packer, packing_off
from mlplab.tools.sweep.paths import check_sweep_dir, make_run_root
from mlplab.tools.sweep.slots import make_slots
from mlplab.errors import SweepError
from mlplab.tools.sweep.spec import load_sweep
from mlplab.tools.sweep.trial_commands import Trial, default_sweep_dir, program_arguments, resolve_program_root
from mlplab.tools.sweep.steering import identity, saved_copy, steer
from mlplab.tools.sweep.storage import STALE_AFTER, check_storage_record, record_storage
from mlplab.tools.sweep.trials import FINISHED, recorded_outcome
from mlplab.tools.sweep.warm import TrialStarter


def positive_int(text: str) -> int:
    value = int(text) if text.lstrip("-").isdigit() else None
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed: a whole number >= 1")
    return value


def pack_size(text: str) -> int:
    value = int(text) if text.lstrip("-").isdigit() else None
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed: a whole number >= 1, the most trials that differ "
                                         "only in their seed to train in one process (1: one trial per process)")
    return value


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed: a number of seconds >= 0")
    return value


def stale_seconds(text: str) -> float:
    value = seconds(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed: a number of seconds >= 1, well above a heartbeat (5 s)")
    return value


def folder(text: str) -> Path:
    if not text.strip():  # Path("") would be the current folder
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed: a folder path, e.g. outputs/sweeps/mine")
    return Path(text)


class OneLineErrors(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = OneLineErrors(
        prog="python -m mlplab.tools.sweep",
        description="Run a wandb sweep file: wandb agents when the wandb server is reachable, else (or with "
                    "--offline) the same trials on this machine, one directory each; bayes offline is an Optuna "
                    "TPE study stored in the sweep dir.",
        epilog="Offline, trials go to <sweep dir>/<trial id>/ (trial.json, trial.log and the run's files); a rerun "
               "skips finished trials, continues interrupted ones from their checkpoint and starts the others over. "
               "Trials that differ only in their seed train as one pack per process (--pack N caps it, --pack 1: "
               "none), each keeping its record at <sweep dir>/<trial id>. "
               "On Linux the launcher imports torch, Lightning, Hydra and wandb once and forks each trial from itself "
               "(--fresh-processes: a new process per trial, which pays the imports each time). "
               "SIGINT/SIGTERM/SIGHUP send SIGTERM to every running trial (online: agent, which forwards it), "
               "SIGKILL after --grace, and mark those trials interrupted; trials also get SIGTERM if the launcher "
               "is killed (Linux). Exit status: 0 when no trial failed, 1 when one did, 2 for a bad file or "
               "option, 128+N on signal N.",
    )
    parser.add_argument("file", type=Path, help="the sweep yaml, e.g. sweeps/activations.yaml")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="Hydra overrides for every trial (after the file, or after --), e.g. trainer.max_epochs=1; "
                             "one of a swept key narrows it: seed=1,2. They are part of the sweep dir's name and of "
                             "its saved sweep.yaml, and online of the uploaded sweep's command")
    slots = parser.add_argument_group("slots (one agent or trial at a time each)")
    slots.add_argument("--gpus", help="GPUs to pin slots to, e.g. 0,1,2,3 (CUDA_VISIBLE_DEVICES per slot): "
                                      "indices of the GPUs this launcher sees, so with CUDA_VISIBLE_DEVICES=2,3 "
                                      "set, --gpus 0,1 means physical GPUs 2 and 3; a GPU not visible is refused")
    slots.add_argument("--agents-per-gpu", type=positive_int, help="slots per GPU with --gpus (default 1)")
    slots.add_argument("--agents", type=positive_int,
                       help="slots not pinned: CUDA_VISIBLE_DEVICES is left as it is, so each sees what the "
                            "launcher sees (default 1)")
    slots.add_argument("--stagger", type=seconds, default=5.0,
                       help="seconds between the first starts of consecutive slots (default 5)")
    parser.add_argument("--count", type=positive_int,
                        help="online: trials per agent (default: until the sweep is done); offline: random/bayes "
                             "trials in all, finished ones counted (required), or at most this many grid trials")
    parser.add_argument("--offline", action="store_true",
                        help="run here even if wandb could be reached (also when WANDB_MODE=offline or no login)")
    parser.add_argument("--dry-run", action="store_true",
                        help="compose every trial, print the command lines and exit")
    parser.add_argument("--seed", type=int, default=0, help="seed of the offline random draws and TPE (default 0)")
    parser.add_argument("--sweep-dir", type=folder,
                        help="where the trial dirs (and the bayes study) go "
                             "(default <program root>/outputs/sweeps/<file stem>-<hash of the file>)")
    parser.add_argument("--program-root", type=Path,
                        help="folder the file's program is relative to, where trials and agents run (default: the "
                             "parent of the sweep file's folder if the program is there, else the current folder)")
    parser.add_argument("--grace", type=seconds, default=10.0,
                        help="seconds between SIGTERM and SIGKILL when stopped (default 10)")
    parser.add_argument("--allow-failures", action="store_true", help="exit 0 even when some trials failed")
    parser.add_argument("--pack", type=pack_size, metavar="N",
                        help="offline grid/random: trials that differ only in their seed train as one pack in one "
                             "train.py process (seed=[...]), at most N each (default: all of a configuration's seeds; "
                             "1: one trial per process). Each trial keeps its record at <sweep dir>/<trial id>, a "
                             "link to its member dir in <sweep dir>/pack-.../seed-<S>/. Bayes never packs")
    parser.add_argument("--fresh-processes", action="store_true",
                        help="offline: start each trial as a new `python train.py ...` process, which pays the "
                             "5-15 s of imports again (default on Linux: the launcher imports torch, Lightning, "
                             "Hydra and wandb once and forks each trial from itself)")
    shared = parser.add_argument_group("offline, several launchers on one sweep (here or on machines sharing the "
                                       "sweep dir)")
    shared.add_argument("--storage", metavar="URL",
                        help="the database holding the sweep's Optuna study, e.g. postgresql://user@host/db "
                             "(default: <sweep dir>/optuna.journal, a file every launcher on the sweep dir shares)")
    shared.add_argument("--stale-after", type=stale_seconds, default=STALE_AFTER,
                        help=f"seconds without a sign of life after which another host's launcher counts as gone and "
                             f"its trials are taken over (default {STALE_AFTER:g}); on this host, at once")
    online = parser.add_argument_group("online")
    online.add_argument("--project", help="wandb project (default: the file's project:, else mlplab)")
    online.add_argument("--entity", help="wandb entity (default: the file's entity:, else yours)")
    online.add_argument("--sweep-id", help="join this existing sweep instead of creating one")
    # Intermixed: overrides may come before, between or after the options.
    return parser.parse_intermixed_args(argv)


def listed_trials(config: dict[str, Any], sweep_dir: Path, count: int | None, seed: int) -> list[Trial]:
    """The trials the file's method lists up front: a grid's (at most `count`), `count` random draws, none
    for bayes (drawn one by one)."""
    return method_of(config).listed_trials(config, sweep_dir, count, seed)


def overrides_to_compose(method: SearchMethod, config: dict[str, Any], sweep_dir: Path,
                         trials: list[Trial]) -> list[list[str]]:
    """The Hydra overrides of each trial to compose before anything runs (for bayes, every choice and
    both ends of every range)."""
    return [program_arguments(config, trial.command)
            for trial in method.trials_to_compose(config, sweep_dir, trials)]


def print_dry_run(method: SearchMethod, parameters: dict[str, Any], trials: list[Trial], program_root: Path,
                  sweep_dir: Path, count: int | None, packer: Packer, explicit_pack: bool) -> None:
    if note := method.count_note(parameters, count):
        print(f"# {note}")
    print(method.dry_run_header(trials, program_root, sweep_dir, count))
    if note := packer.note(trials, explicit_pack):
        print(f"# {note}")
    packs = {members[0].trial_id: members for members in packer.plan(trials) if len(members) > 1}
    packed = {trial.trial_id for members in packs.values() for trial in members}
    for trial in trials:
        if trial.trial_id in packs:
            pack = packer.pack(packs[trial.trial_id])
            print(f"# {pack.pack_id}: {', '.join(member.trial_id for member in pack.members)} in one process")
            print(shlex.join(pack.command))
        if trial.trial_id in packed:
            continue
        finished = recorded_outcome(trial.directory) == FINISHED
        print(f"# {trial.trial_id}{' (finished: would be skipped)' if finished else ''}")
        print(shlex.join(trial.command))


def chosen_sweep_dir(option: Path | None, sweep_file: Path, program_root: Path, overrides: Sequence[str] = ()) -> Path:
    """--sweep-dir (absolute) or the default one, named by the file and the overrides, checked: a path the
    OS cannot hold stops here."""
    default = option or default_sweep_dir(sweep_file, program_root, identity(sweep_file, list(overrides)))
    sweep_dir = Path(os.path.abspath(default))
    check_sweep_dir(sweep_dir)
    # The real path: a trial's liveness is read from where its process writes (/proc/<pid>/fd).
    return sweep_dir.resolve()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a folder or file the launcher needs cannot be read or written
        where = f": {error.filename}" if error.filename else ""
        print(f"error: {error.strerror or error}{where}: check that the path exists and is writable, "
              "and that its disk has room", file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    """The launcher behind main(), which turns its errors into one line."""
    config = steer(load_sweep(args.file), args.overrides, args.file)
    slots = make_slots(args.gpus, args.agents_per_gpu, args.agents)
    program_root = resolve_program_root(args.file, config["program"], args.program_root)
    reason = "--dry-run" if args.dry_run else offline_reason(args.offline)
    if reason is None:
        if args.storage:
            raise SweepError("--storage is for offline sweeps (online, wandb's server holds the sweep): add --offline "
                             "or leave --storage out")
        if args.pack is not None:
            raise SweepError(f"--pack {args.pack} is for offline sweeps (online, each wandb run is one trial): add "
                             "--offline, or fix the seeds in the file's command, e.g. seed=[1,2,3], so that each run "
                             "trains a pack")
        log_dir = chosen_sweep_dir(args.sweep_dir, args.file, program_root) if args.sweep_dir else None
        return run_online(config, args.file, slots, program_root, project=args.project, entity=args.entity,
                          sweep_id=args.sweep_id, sweep_dir=log_dir, count=args.count,
                          stagger=args.stagger, grace=args.grace)
    sweep_dir = chosen_sweep_dir(args.sweep_dir, args.file, program_root, args.overrides)
    method = method_of(config)
    trials = method.listed_trials(config, sweep_dir, args.count, args.seed)
    packer = Packer(config, sweep_dir, trials, args.pack, packing_off(config, method.name))
    label = f"{args.file} with {shlex.join(args.overrides)}" if args.overrides else args.file
    composed = check_trials_compose(program_root / "conf", label,
                                    overrides_to_compose(method, config, sweep_dir, trials))
    if args.dry_run:
        print_dry_run(method, config["parameters"], trials, program_root, sweep_dir, args.count, packer,
                      args.pack is not None)
        print(f"# {composed} distinct trial configs compose with Hydra")
        return 0
    steered = f" with {shlex.join(args.overrides)}" if args.overrides else ""
    print(f"offline ({reason}): {method.name} sweep {args.file}{steered}", flush=True)
    if note := method.count_note(config["parameters"], args.count):
        print(note, flush=True)
    if note := packer.note(trials, args.pack is not None):
        print(note, flush=True)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    make_run_root(sweep_dir)
    check_storage_record(sweep_dir, args.storage)
    source = method.open_source(config, sweep_dir, args.count, args.seed, trials, args.storage, args.stale_after)
    record_storage(sweep_dir, args.storage)
    # The dir name is a hash: keep the file it came from (as steered) next to the trials.
    runfiles.write_text(sweep_dir / "sweep.yaml", saved_copy(args.file, args.overrides, config, sweep_dir))
    return run_offline(source, slots, sweep_dir, program_root, args.stagger, args.grace, args.allow_failures,
                       TrialStarter(args.fresh_processes), packer)


if __name__ == "__main__":
    sys.exit(main())
