"""Checks of the config's shape, before any of its values: every group a run builds is there, no key
is one train.py never reads, every `_target_` is one conf/ names, and the fast path and callbacks
groups hold what their classes take."""

from __future__ import annotations

import dataclasses
import difflib
import functools

import yaml
from omegaconf import DictConfig, OmegaConf

from mlplab.errors import ConfigError
from mlplab.fastpath import FastPath
from mlplab.run.build import fast_path
from mlplab.run.records import conf_dir, option_names
from mlplab.run.targets import check_targets

# The groups every run builds from (scheduler, logger, callbacks and fastpath may be left out).
REQUIRED_GROUPS = ("data", "augment", "model", "activation", "norm", "dropout", "l2", "optimizer", "trainer")


def check_groups_present(cfg: DictConfig) -> None:
    for group in REQUIRED_GROUPS:
        if not OmegaConf.is_dict(cfg.get(group)):
            example = (option_names(group) or ["NAME"])[0]
            raise ConfigError(f"{group} is missing (~{group} or {group}=null leaves it out), but every run builds one: "
                              f"choose an option of conf/{group}/, e.g. {group}={example}.")


@functools.cache
def known_keys() -> frozenset[str]:
    """The top-level keys train.py reads: conf/config.yaml's own and one per config group."""
    conf = conf_dir()
    own = yaml.safe_load((conf / "config.yaml").read_text()) or {}
    groups = {path.name for path in conf.iterdir() if path.is_dir() and option_names(path.name)}
    return frozenset({*own, *groups} - {"defaults", "experiment"})


def check_known_keys(cfg: DictConfig) -> None:
    """A key train.py never reads (a typo such as +fastpth=...) would be ignored without a word."""
    for key in cfg:
        if key not in known_keys():
            close = difflib.get_close_matches(str(key), sorted(known_keys()), n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise ConfigError(f"{key} is not a setting train.py reads: {hint}its settings are "
                              f"{', '.join(sorted(known_keys()))}.")


def check_targets_of_config(cfg: DictConfig) -> None:
    check_targets(cfg, "the config")


def check_fastpath(cfg: DictConfig) -> None:
    """The fast path's settings, held by FastPath itself (a missing group is the plain path)."""
    if cfg.get("fastpath") is None:
        return
    if not OmegaConf.is_dict(cfg.fastpath):
        raise ConfigError(f"fastpath={cfg.fastpath!r} is not allowed: an option of conf/fastpath (fastpath=default "
                          "or fastpath=off) or its settings.")
    try:
        fast_path(cfg)
    except TypeError:
        names = [field.name for field in dataclasses.fields(FastPath)]
        unknown = ", ".join(sorted(str(key) for key in cfg.fastpath if key not in (*names, "_target_")))
        raise ConfigError(f"fastpath has no setting {unknown}: its settings are {', '.join(names)}.") from None


def check_callbacks(cfg: DictConfig) -> None:
    callbacks = cfg.get("callbacks")
    if not (callbacks is None or OmegaConf.is_dict(callbacks)):
        raise ConfigError(f"callbacks={callbacks!r} is not allowed: a mapping of name: {{_target_: ...}}, e.g. "
                          "callbacks=default or callbacks=none.")
    for name, node in (callbacks or {}).items():
        if not (node is None or (OmegaConf.is_dict(node) and "_target_" in node)):
            raise ConfigError(f"callbacks.{name}={node!r} is not allowed: a callback's settings with its _target_ "
                              "(one of conf/callbacks/'s), or null to drop it.")
