"""What each trial of a sweep runs: the grid's combinations, and each trial's command line with the
macros filled in as `wandb agent` fills them. Each parameter's grid points are listed as wandb lists
them; draws from distributions (random and bayes) are Optuna's, in search.py.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlplab.errors import SweepError
from mlplab.run.overrides import override
from mlplab.tools.sweep import rules

GRID_LIMIT = 100_000  # trials of a grid listed without --count
# `${args_json_file}`: the file, in the trial's dir, holding `${args_json}` (the values as one JSON object).
ARGS_JSON_FILE = "args.json"
SHOWN_VALUES = 6  # values listed per parameter in what --count selects




def grid_assignments(parameters: dict[str, dict[str, Any]], count: int | None = None) -> list[dict[str, Any]]:
    """Every combination of the parameters' grid points (the first `count`), in file order (the last
    parameter varies fastest). Each parameter's points are wandb's (rules.grid_points: ranges listed,
    1 and 1.0 one point); wandb's own grid runs the same combinations, its parameters in sorted order.
    A grid too large to list is refused unless `count` bounds it."""
    names = list(parameters)
    choices = [_grid_points(name, spec) for name, spec in parameters.items()]
    size = math.prod(len(values) for values in choices)
    if count is None and size > GRID_LIMIT:
        raise SweepError(f"the grid has {size} trials, more than the {GRID_LIMIT} the launcher lists and composes "
                         "up front: run the first ones with --count N, or use method: random")
    combinations = itertools.islice(itertools.product(*choices), count)
    return [dict(zip(names, combination)) for combination in combinations]


def _grid_points(name: str, spec: dict[str, Any]) -> list[Any]:
    # A range is listed up front whatever --count takes from it: one of millions of points is refused here.
    size = rules.grid_size(name, spec)
    if size > GRID_LIMIT and "values" not in spec:
        raise SweepError(f"parameters.{name}: min={spec['min']!r}, max={spec['max']!r} gives the grid {size} points, "
                         f"more than the {GRID_LIMIT} the launcher lists: narrow min and max (or raise q), "
                         "or use method: random")
    return rules.grid_points(name, spec)


def shown_overrides(assignment: dict[str, Any]) -> list[str]:
    """`key=value` for each parameter, as wandb's agent writes `${args_no_hyphens}` (str() of each value)."""
    return [f"{name}={value}" for name, value in assignment.items()]


def agent_macros(assignment: dict[str, Any]) -> dict[str, Any]:
    """wandb's own macro values, so that an offline trial gets the arguments an online one gets."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    return create_sweep_command_args({"args": {name: {"value": value} for name, value in assignment.items()}})


def command_line(config: dict[str, Any], assignment: dict[str, Any], run_dir: Path,
                 args_file: Path | None = None) -> list[str]:
    """The file's `command:` with the macros filled in as `wandb agent` fills them, plus the run dir.

    `${env}` becomes nothing (the agent's /usr/bin/env only finds the interpreter on PATH) and
    `${interpreter}` this Python. `${program}` stays as written: trials run in the program root.
    `${args_json_file}` is `args_file`, which the launcher writes before the trial starts. The run
    dir is quoted for Hydra's grammar, so any path arrives as it is.
    """
    from wandb.sdk.launch.sweeps.utils import create_sweep_command

    macros = agent_macros(assignment)
    macros |= {"env": [], "interpreter": [sys.executable], "program": [config["program"]],
               "args_json_file": [str(args_file)] if args_file else []}
    command: list[str] = []
    for element in create_sweep_command([str(part) for part in config["command"]]):
        if element.startswith("${") and element.endswith("}"):
            command += [str(part) for part in macros.get(element[2:-1], [])]
        else:
            command.append(element)
    return [*command, override("hydra.run.dir", str(run_dir))]


def uses_args_json_file(config: dict[str, Any]) -> bool:
    return "${args_json_file}" in [str(part) for part in config["command"]]


def program_arguments(config: dict[str, Any], command: list[str]) -> list[str]:
    """The Hydra overrides a trial's command hands its program (what follows the program's path)."""
    arguments = command[command.index(config["program"]) + 1:]
    # `${args_json_file}`'s path is the program's to read, not an override.
    return [argument for argument in arguments if not argument.lstrip("+").startswith(("hydra.", "-"))
            and not (Path(argument).is_absolute() and Path(argument).name == ARGS_JSON_FILE)]


def trial_id(index: int, assignment: dict[str, Any]) -> str:
    """`<index>-<hash of the values>`: draws from another --seed never reuse a finished trial's dir."""
    digest = hashlib.sha256(json.dumps(shown_overrides(assignment)).encode()).hexdigest()[:6]
    return f"{index:03d}-{digest}"


@dataclass
class Trial:
    """One trial: its id (also its directory's name), the values shown, and the full command line."""

    trial_id: str
    overrides: list[str]
    command: list[str]
    directory: Path
    run_dir: Path  # the directory as the trial's overrides name it (see paths.run_root)
    args_json: str | None = None  # what `${args_json_file}` holds, where the command names it
    number: int | None = None  # the Optuna trial number, for a bayes sweep
    assignment: dict[str, Any] = field(default_factory=dict)  # the values themselves (packing groups by them)


def make_trial(config: dict[str, Any], sweep_dir: Path, index: int, assignment: dict[str, Any]) -> Trial:
    from mlplab.tools.sweep.paths import run_root

    name = trial_id(index, assignment)
    run_dir = run_root(sweep_dir) / name
    args_file = run_dir / ARGS_JSON_FILE if uses_args_json_file(config) else None
    args_json = agent_macros(assignment)["args_json"][0] if args_file else None
    return Trial(name, shown_overrides(assignment), command_line(config, assignment, run_dir, args_file),
                 sweep_dir / name, run_dir, args_json, assignment=dict(assignment))


def default_sweep_dir(sweep_file: Path, program_root: Path, suffix: str | None = None) -> Path:
    """outputs/sweeps/<stem>-<8 hex of the file's content>: a rerun of the same file finds the same dir."""
    suffix = suffix or hashlib.sha256(Path(sweep_file).read_bytes()).hexdigest()[:8]
    return program_root / "outputs" / "sweeps" / f"{Path(sweep_file).stem}-{suffix}"


def resolve_program_root(sweep_file: Path, program: str, program_root: Path | None) -> Path:
    """The folder the program path is relative to; trials and agents run there.

    `--program-root` when given; else the project the sweep file belongs to (the parent of its
    folder, so sweeps/x.yaml -> the repo root) when it holds the program; else the current folder,
    which is where `wandb agent` itself looks.
    """
    candidates = [program_root] if program_root else [Path(sweep_file).resolve().parent.parent, Path.cwd()]
    for root in candidates:
        if (root / program).is_file():
            return root.resolve()
    tried = " or ".join(str(root / program) for root in candidates)
    raise SweepError(f"program {program!r} not found at {tried}: run from the project root or pass --program-root")


def grid_count_note(parameters: dict[str, dict[str, Any]], count: int | None) -> str | None:
    """What `--count` takes of a grid, when it takes less than all: which values of each parameter it covers."""
    # Each parameter's grid points as the grid itself lists them (values, or a range's points).
    choices = {name: [point[name] for point in grid_assignments({name: spec})] for name, spec in parameters.items()}
    size = math.prod(len(values) for values in choices.values())
    if count is None or count >= size:
        return None
    chosen = grid_assignments(parameters, count)
    covered = []
    for name, values in choices.items():
        seen = [value for value in values if any(assignment[name] == value for assignment in chosen)]
        shown = ", ".join(map(str, seen[:SHOWN_VALUES])) + (", ..." if len(seen) > SHOWN_VALUES else "")
        covered.append(f"{name}: {len(seen)} of {len(values)} ({shown})")
    varied = [name for name, values in choices.items() if len(values) > 1]
    hint = f", e.g. {varied[-1]}={','.join(map(str, choices[varied[-1]][:2]))}" if varied else ""
    return (f"--count {count} takes the first {count} of the grid's {size} trials (file order, the last parameter "
            f"varies fastest): {'; '.join(covered)}. To compare every value in fewer trials, narrow a parameter "
            f"instead{hint}")
