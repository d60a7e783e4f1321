"""Which classes a config may build: those that conf/'s groups name, and nothing else.

Hydra's `instantiate` calls whatever `_target_` names. A config read from a file the user did not
write (a checkpoint's hyperparameters, a run's saved config, a sweep file) could otherwise name
`builtins.open` or `shutil.rmtree`. Every `_target_` in a config is held, before anything is
built, to the targets of its own group's yaml files (`activation._target_` to conf/activation/,
a logger to conf/logger/, ...). Adding an option stays one yaml file: the file is the registry.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf

from mlplab.errors import ConfigError

TARGET_KEY = "_target_"
# Folders of conf/ that are not a group of buildable options.
NOT_GROUPS = ("experiment",)


# Resolvers that turn text into config nodes: `${oc.create:{_target_: ...}}` would put a target
# where no file shows one, so they are refused wherever a value could reach `instantiate`.
BUILDING_RESOLVERS = re.compile(r"\$\{\s*oc\.(create|decode)\s*:")


def leaves(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every leaf of a plain or OmegaConf container, unresolved."""
    if isinstance(node, (DictConfig, ListConfig)):
        node = OmegaConf.to_container(node, resolve=False)
    if isinstance(node, Mapping) and node:
        for key, value in node.items():
            yield from leaves(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, (list, tuple)) and node:
        for index, value in enumerate(node):
            yield from leaves(value, f"{path}[{index}]")
    else:  # a value, or an empty container: its key is still seen
        yield path, node


def targets_in(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every `_target_` in a plain or OmegaConf container, at any depth."""
    if isinstance(node, (DictConfig, ListConfig)):
        node = OmegaConf.to_container(node, resolve=False)
    if isinstance(node, Mapping):
        for key, value in node.items():
            where = f"{path}.{key}" if path else str(key)
            if key == TARGET_KEY:
                yield where, value
            else:
                yield from targets_in(value, where)
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            yield from targets_in(value, f"{path}[{index}]")


@functools.cache
def group_targets(conf: Path) -> dict[str, frozenset[str]]:
    """For each top-level key of the config, the targets its group's option files name.

    `hydra` gets those of the root configs' `hydra:` sections (the run-directory guard).
    """
    found: dict[str, set[str]] = {}
    for path in sorted(conf.rglob("*.yaml")):
        parts = path.relative_to(conf).parts
        group = parts[0] if len(parts) > 1 else "hydra"
        if group in NOT_GROUPS:
            continue
        content = yaml.safe_load(path.read_text()) or {}
        if len(parts) == 1:
            content = content.get("hydra", {}) if isinstance(content, dict) else {}
        found.setdefault(group, set()).update(str(value) for _, value in targets_in(content))
    return {group: frozenset(targets) for group, targets in found.items()}


def allowed_for(key: str, conf: Path) -> frozenset[str]:
    """The targets a `_target_` at dotted `key` may name: those of its top-level group."""
    return group_targets(conf).get(key.split(".")[0].split("[")[0], frozenset())


def check_interpolations(config: Any, source: str, allowed: bool = True, prefix: str = "") -> None:
    """Refuse interpolations that build config from text; with `allowed=False` (a checkpoint, saved
    resolved) any interpolation at all."""
    for key, value in leaves(config, prefix):
        if not allowed and "${" in key:
            raise ConfigError(f"{source}: the key {key[:80]!r} holds an interpolation, which no run saves; "
                              "write the key itself.")
        if isinstance(value, str) and (BUILDING_RESOLVERS.search(value) or (not allowed and "${" in value)):
            kind = "an interpolation" if not allowed else "an interpolation that builds config from text"
            raise ConfigError(f"{source}: {key}={value[:80]!r} is refused: {kind} could name code to run; "
                              "write the value itself.")


def check_targets(config: Any, source: str, conf: Path | None = None, prefix: str = "",
                  interpolations: bool = True) -> None:
    """Raise ConfigError, naming `source` and the key, at the first `_target_` that its group does
    not name (or an interpolation that could make one); nothing is built or imported before every
    target has passed."""
    from mlplab.run.records import conf_dir

    check_interpolations(config, source, interpolations, prefix)
    conf = conf or conf_dir()
    for key, value in targets_in(config, prefix):
        allowed = allowed_for(key, conf)
        if isinstance(value, str) and value in allowed:
            continue
        group = key.split(".")[0].split("[")[0]
        if not allowed:
            raise ConfigError(f"{source}: {key}={value!r} is refused: {group} builds nothing, so it names no class; "
                              "remove the _target_.")
        raise ConfigError(
            f"{source}: {key}={value!r} is refused: a config may only build the classes that conf/{group}/ names "
            f"({', '.join(sorted(allowed))}); to use another class, add an option file to conf/{group}/."
        )
