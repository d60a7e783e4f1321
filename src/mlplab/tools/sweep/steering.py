"""Steering a sweep from the command line: Hydra overrides after the file shorten or adjust every trial.

    python -m mlplab.tools.sweep sweeps/activations.yaml --offline trainer.max_epochs=1 seed=1,2

An override of a key the file does not sweep goes at the end of every trial's command (Hydra takes
the last value of a key, so it beats the file's own `trainer.max_epochs=20`). An override of a key
the file sweeps narrows that parameter instead: `seed=1,2` (or `seed=range(1,3)`, Hydra's own sweep
syntax) leaves the grid two seeds, and `seed=3` one. The result is the sweep file the launcher runs,
online too (it is what `wandb.sweep` uploads); it is saved in the sweep dir, and the overrides are
part of the sweep dir's name, so a 1-epoch try never mixes with the real sweep's trials.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shlex
from pathlib import Path
from typing import Any

import yaml

from mlplab.errors import SweepError
from mlplab.tools.sweep.spec import HYDRA_KEYS_ALLOWED, sets_hydra_machinery, validate_sweep



def parse_override(text: str) -> Any:
    """Hydra's parse of one command-line override, or one line saying what is wrong with it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        return OverridesParser.create().parse_override(text)
    except HydraException as error:
        reason = " ".join(str(error).split())
        raise SweepError(f"override {text!r} is not a Hydra override ({reason}): write key=value after the sweep file, "
                         "e.g. trainer.max_epochs=1") from None


def check_not_hydras(text: str, key: str) -> None:
    """hydra.* keys are refused here as spec.check_hydra_key refuses them in a sweep file."""
    if sets_hydra_machinery(key):
        raise SweepError(f"override {text!r} is not allowed: Hydra builds what hydra.* names before any check "
                         f"(allowed: {', '.join(HYDRA_KEYS_ALLOWED)}; choose a launcher with hydra/launcher=NAME)")


def narrowed(text: str, parsed: Any) -> dict[str, Any]:
    """The parameter spec an override of a swept key leaves: its values (a sweep) or its one value."""
    if parsed.is_delete() or parsed.is_add() or parsed.is_force_add():
        raise SweepError(f"override {text!r}: {parsed.key_or_group} is swept by the file, so it cannot be added or "
                         f"deleted: give it values instead, e.g. {parsed.key_or_group}=1,2")
    if parsed.is_interval_sweep():
        raise SweepError(f"override {text!r}: an interval is not a list of values: give the values, e.g. "
                         f"{parsed.key_or_group}=0.1,0.2 (or one value)")
    values = list(parsed.sweep_iterator()) if parsed.is_sweep_override() else [parsed.value()]
    if not values or any(value in ("", None) for value in values):
        raise SweepError(f"override {text!r} leaves {parsed.key_or_group}, which the file sweeps, without a value: "
                         f"give one or more, e.g. {parsed.key_or_group}=1,2")
    return {"values": values} if parsed.is_sweep_override() else {"value": values[0]}


def steer(config: dict[str, Any], overrides: list[str], sweep_file: Path | str) -> dict[str, Any]:
    """The sweep file as the launcher runs it with `overrides` (see the module's docstring), checked."""
    if not overrides:
        return config
    steered = copy.deepcopy(config)
    for text in overrides:
        parsed = parse_override(text)
        key = parsed.key_or_group
        check_not_hydras(text, parsed.get_key_element())
        if key in steered["parameters"]:
            steered["parameters"][key] = narrowed(text, parsed)
        elif parsed.is_sweep_override():
            raise SweepError(f"override {text!r} sweeps {key}, which {sweep_file} does not sweep: give one value, or "
                             "add the parameter to the file's parameters:")
        else:
            replace_or_append(steered["command"], text, parsed.get_key_element())
    validate_sweep(steered, f"{sweep_file} with {shlex.join(overrides)}")
    return steered


def replace_or_append(command: list[Any], text: str, key: str) -> None:
    """The override in place of the command's own element for the same key (trainer.max_epochs=20), else at
    its end, where Hydra lets it win over anything before it."""
    for index, part in enumerate(command):
        if isinstance(part, str) and "=" in part and part.split("=", 1)[0] == key:
            command[index] = text
            return
    command.append(text)


def identity(sweep_file: Path, overrides: list[str]) -> str:
    """8 hex digits naming the sweep dir: the file's content, and the overrides when there are any (without
    them the hash is the file's alone, as before overrides existed, so existing sweep dirs are found again)."""
    digest = hashlib.sha256(Path(sweep_file).read_bytes())
    if overrides:
        digest.update(b"\0" + json.dumps(overrides).encode())
    return digest.hexdigest()[:8]


def saved_copy(sweep_file: Path, overrides: list[str], steered: dict[str, Any], sweep_dir: Path) -> str:
    """What <sweep dir>/sweep.yaml holds: the file itself, or with overrides the file as run and how to rerun it."""
    text = Path(sweep_file).read_text()
    if not overrides:
        return text
    header = (f"# {sweep_file} steered from the command line by: {shlex.join(overrides)}\n"
              f"# Rerun: python -m mlplab.tools.sweep {shlex.quote(str(sweep_file))} --offline {shlex.join(overrides)}\n"
              f"#    or: python -m mlplab.tools.sweep {shlex.quote(str(sweep_dir / 'sweep.yaml'))} --offline "
              f"--sweep-dir {shlex.quote(str(sweep_dir))}\n")
    return header + yaml.safe_dump(steered, sort_keys=False)
