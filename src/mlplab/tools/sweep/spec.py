"""The sweep file: load it, hold it to wandb's rules, and turn it into trials' command lines.

The rules are wandb's own (rules.py: what `wandb.sweep` and wandb's sweep engine refuse), checked here
first so that an offline sweep and the tests catch what the server would refuse, plus the launcher's
(Hydra keys and macros, bounds whose draws would be nan). Grid expansion lives here too, each
parameter's points listed as wandb lists them; draws from distributions
(random and bayes) are Optuna's, in search.py.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mlplab.errors import SweepError  # noqa: F401 - the launcher imports it from here
from mlplab.run.overrides import override
from mlplab.tools.sweep import rules

METHODS = ("grid", "random", "bayes")
GRID_LIMIT = 100_000  # trials of a grid listed without --count
GOALS = ("minimize", "maximize")
# wandb's sweep schema: a parameter name is what its server accepts as a key.
PARAMETER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
# The macros that hand the parameters over as Hydra overrides (key=value, +key=value, ++key=value);
# wandb's default `${args}` gives --key=value, which Hydra rejects.
HYDRA_ARG_MACROS = ("${args_no_hyphens}", "${args_append_hydra}", "${args_override_hydra}")
# Every macro `wandb agent` fills in (wandb/wandb_agent.py, wandb/sdk/launch/sweeps/utils.py); any
# other `${name}` element it drops without a word, so a typo would silently lose an argument.
AGENT_MACROS = ("env", "interpreter", "program", "args", "args_no_equals", "args_no_hyphens", "args_no_boolean_flags",
                "args_json", "args_json_file", "args_dict", "args_append_hydra", "args_override_hydra")
# `${args_json_file}`: the file, in the trial's dir, holding `${args_json}` (the values as one JSON object).
ARGS_JSON_FILE = "args.json"
# Keys of a distribution that wandb's schema takes at 0 (or without bound) but whose draws are then nan
# or inf: sigma: 0 gives nan from scipy's normal, min: .inf an infinite uniform.
POSITIVE_KEYS = ("sigma", "a", "b")
FINITE_KEYS = ("min", "max", "mu", "sigma", "q", "a", "b")


def load_sweep(path: Path) -> dict[str, Any]:
    """The sweep file as a dict, checked against wandb's rules."""
    try:
        config = yaml.safe_load(Path(path).read_text())
    except OSError as error:
        raise SweepError(f"cannot read the sweep file {path}: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise SweepError(f"{path} is not a text file (byte {error.start} is not UTF-8): pass the sweep's "
                         "yaml") from None
    except yaml.YAMLError as error:
        raise SweepError(f"{path} is not valid YAML: {' '.join(str(error).split())}") from None
    validate_sweep(config, path)
    return config


def validate_sweep(config: Any, path: Path | str = "sweep file") -> None:
    """Check what wandb's server and this launcher rely on, before anything starts."""
    if not isinstance(config, dict):
        raise SweepError(f"{path}: expected a mapping with program, method, metric, parameters, command")
    program = config.get("program")
    if not isinstance(program, str) or not program:
        raise SweepError(f"{path}: program={program!r} is not allowed: the script to run, e.g. program: train.py")
    method = config.get("method")
    if method not in METHODS:
        raise SweepError(f"{path}: method={method!r} is not allowed: one of {', '.join(METHODS)}")
    metric = config.get("metric")
    if metric is not None or method == "bayes":
        if not isinstance(metric, dict) or not isinstance(metric.get("name"), str) or not metric["name"]:
            raise SweepError(f"{path}: metric={metric!r} is not allowed: e.g. metric: {{name: val/acc, goal: maximize}}")
        if metric.get("goal", "minimize") not in GOALS:
            raise SweepError(f"{path}: metric.goal={metric.get('goal')!r} is not allowed: minimize or maximize")
    parameters = config.get("parameters")
    if not isinstance(parameters, dict) or not parameters:
        raise SweepError(f"{path}: parameters={parameters!r} is not allowed: a mapping of Hydra keys to "
                         "value/values/distribution")
    for name, spec in parameters.items():
        validate_parameter(name, spec, method, path)
    command = config.get("command")
    if not isinstance(command, list) or "${program}" not in command:
        raise SweepError(f"{path}: command={command!r} is not allowed: a list like "
                         "[${env}, ${interpreter}, ${program}, trainer.max_epochs=10, ${args_no_hyphens}]")
    for part in command:
        macro = str(part)[2:-1] if str(part).startswith("${") and str(part).endswith("}") else None
        if macro is not None and macro not in AGENT_MACROS and not macro.startswith("envvar:"):
            raise SweepError(f"{path}: command element {part!r} is not a macro wandb's agent fills in (it would drop "
                             f"it): one of {', '.join('${' + name + '}' for name in AGENT_MACROS)}")
    for key in [*parameters, *(str(part).split("=", 1)[0] for part in command if "=" in str(part))]:
        check_hydra_key(str(key), path)
    if not any(macro in command for macro in HYDRA_ARG_MACROS):
        raise SweepError(f"{path}: the command passes no parameters Hydra can read: end it with ${{args_no_hyphens}} "
                         "(wandb's default ${args} gives --key=value, which Hydra rejects)")
    _wandb_check(path, rules.check_config, config)  # the rest of wandb's schema: top-level keys, metric, ...


def _wandb_check(path: Path | str, check: Any, *args: Any) -> None:
    """Run one of rules.py's checks; what wandb refuses becomes one line naming the file."""
    try:
        check(*args)
    except rules.Refused as error:
        raise SweepError(f"{path}: {error}") from None


# Hydra's own settings a sweep file may set: none of them names something for Hydra to build or run.
# Callbacks, launchers, sweepers and logging handlers name classes that Hydra (or Python's logging)
# builds before the program checks anything; environment variables can load code. Choosing an
# installed option of Hydra's groups (hydra/launcher=submitit_slurm) is not a dotted key and stays open.
HYDRA_KEYS_ALLOWED = ("hydra.job.chdir", "hydra.job.name", "hydra.verbose")


def check_hydra_key(key: str, path: Path | str) -> None:
    """Refuse a parameter or command override that sets Hydra's own machinery from a file."""
    bare = key.lstrip("+~")
    if (bare == "hydra" or bare.startswith("hydra.")) and bare not in HYDRA_KEYS_ALLOWED:
        raise SweepError(f"{path}: {key} is not allowed in a sweep file: Hydra builds what hydra.* names before any "
                         f"check (allowed: {', '.join(HYDRA_KEYS_ALLOWED)}; choose a launcher with "
                         "hydra/launcher=NAME)")


def distribution_of(spec: dict[str, Any]) -> str:
    """The distribution wandb reads in a parameter, named or inferred (values with probabilities:
    categorical_w_probabilities)."""
    return rules.read_parameter("parameter", spec)[1]["distribution"]


def validate_parameter(name: Any, spec: Any, method: str, path: Path | str) -> None:
    """One parameter: a wandb name, a form wandb's schema takes (value, values or a distribution with its
    keys), one a grid can list when the method is grid, and bounds whose draws are numbers."""
    where = f"{path}: parameters.{name}"
    if not isinstance(name, str) or not PARAMETER_NAME.match(name):
        raise SweepError(f"{where} is not allowed: wandb accepts names matching {PARAMETER_NAME.pattern} "
                         "(no +/++ prefix; to sweep a config group Hydra must append, see sweeps/README.md)")
    if not isinstance(spec, dict):
        raise SweepError(f"{where}={spec!r} is not allowed: a mapping with value, values or a distribution")
    if "parameters" in spec:
        raise SweepError(f"{where}: nested parameters become one dict-valued argument; use a dotted key (l2.weight)")
    _wandb_check(path, rules.check_parameter, name, spec)
    if method == "grid":
        _wandb_check(path, rules.check_grid_parameter, name, spec)
    _validate_bounds(where, rules.read_parameter(name, spec)[1])


def _validate_bounds(where: str, spec: dict[str, Any]) -> None:
    """The launcher's own rule on top of wandb's: bounds that give numbers (wandb takes these, then draws nan)."""
    for key in FINITE_KEYS:
        if key in spec and not math.isfinite(spec[key]):
            raise SweepError(f"{where}.{key}={spec[key]!r} is not allowed: a finite number (wandb would draw nan or inf)")
    for key in POSITIVE_KEYS:
        if key in spec and spec[key] <= 0:
            raise SweepError(f"{where}.{key}={spec[key]!r} is not allowed: a number > 0 (wandb's schema takes 0, "
                             "then draws nan)")


# ---------------------------------------------------------------------------------------------
# Trials: parameter assignments and the command line of each


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
    for chunk in create_sweep_command([str(part) for part in config["command"]]):
        if chunk.startswith("${") and chunk.endswith("}"):
            command += [str(part) for part in macros.get(chunk[2:-1], [])]
        else:
            command.append(chunk)
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


def make_trial(config: dict[str, Any], sweep_dir: Path, index: int, assignment: dict[str, Any]) -> Trial:
    from mlplab.tools.sweep.paths import run_root

    name = trial_id(index, assignment)
    run_dir = run_root(sweep_dir) / name
    args_file = run_dir / ARGS_JSON_FILE if uses_args_json_file(config) else None
    args_json = agent_macros(assignment)["args_json"][0] if args_file else None
    return Trial(name, shown_overrides(assignment), command_line(config, assignment, run_dir, args_file),
                 sweep_dir / name, run_dir, args_json)


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
