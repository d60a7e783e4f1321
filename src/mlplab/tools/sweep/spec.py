"""The sweep file: load it and hold it to wandb's rules, before anything starts.

The rules are wandb's own (rules.py: what `wandb.sweep` and wandb's sweep engine refuse), checked here
first so that an offline sweep and the tests catch what the server would refuse, plus the launcher's
(Hydra keys and macros, bounds whose draws would be nan), plus what the search method requires
(methods.py). The trials' command lines are made in trial_commands.py.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import yaml

from mlplab.errors import SweepError
from mlplab.tools.sweep import rules
from mlplab.tools.sweep.methods import SearchMethod, method_of

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
    method = method_of(config, path)
    metric = config.get("metric")
    if metric is not None or method.needs_metric:
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
    rules.check_as_sweep_file(path, rules.check_config, config)  # the rest of wandb's schema: top-level keys, metric, ...


# Hydra's own settings a sweep file may set: none of them names something for Hydra to build or run.
# Callbacks, launchers, sweepers and logging handlers name classes that Hydra (or Python's logging)
# builds before the program checks anything; environment variables can load code. Choosing an
# installed option of Hydra's groups (hydra/launcher=submitit_slurm) is not a dotted key and stays open.
HYDRA_KEYS_ALLOWED = ("hydra.job.chdir", "hydra.job.name", "hydra.verbose")


def sets_hydra_machinery(key: str) -> bool:
    """Whether an override's key (+, ++ or ~ in front or not) sets one of Hydra's own settings not allowed."""
    bare = key.lstrip("+~")
    return (bare == "hydra" or bare.startswith("hydra.")) and bare not in HYDRA_KEYS_ALLOWED


def check_hydra_key(key: str, path: Path | str) -> None:
    """Refuse a parameter or command override that sets Hydra's own machinery from a file."""
    if sets_hydra_machinery(key):
        raise SweepError(f"{path}: {key} is not allowed in a sweep file: Hydra builds what hydra.* names before any "
                         f"check (allowed: {', '.join(HYDRA_KEYS_ALLOWED)}; choose a launcher with "
                         "hydra/launcher=NAME)")


def distribution_of(spec: dict[str, Any]) -> str:
    """The distribution wandb reads in a parameter, named or inferred (values with probabilities:
    categorical_w_probabilities)."""
    return rules.read_parameter("parameter", spec)[1]["distribution"]


def validate_parameter(name: Any, spec: Any, method: SearchMethod, path: Path | str) -> None:
    """One parameter: a wandb name, a form wandb's schema takes (value, values or a distribution with its
    keys), what the method itself requires (a grid: points it can list), and bounds whose draws are numbers."""
    where = f"{path}: parameters.{name}"
    if not isinstance(name, str) or not PARAMETER_NAME.match(name):
        raise SweepError(f"{where} is not allowed: wandb accepts names matching {PARAMETER_NAME.pattern} "
                         "(no +/++ prefix; to sweep a config group Hydra must append, see sweeps/README.md)")
    if not isinstance(spec, dict):
        raise SweepError(f"{where}={spec!r} is not allowed: a mapping with value, values or a distribution")
    if "parameters" in spec:
        raise SweepError(f"{where}: nested parameters become one dict-valued argument; use a dotted key (l2.weight)")
    rules.check_as_sweep_file(path, rules.check_parameter, name, spec)
    method.check_parameter(name, spec, path)
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
