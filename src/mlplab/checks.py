"""Checks on a composed config, run before any data is read or any model is built.

Each check names the key, the value seen and what is allowed, so a typo costs seconds, not a run.
"""

from __future__ import annotations

from collections.abc import Callable
from numbers import Integral, Real
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mlplab.data import NORMALIZE_MODES, TRAIN_SIZE
from mlplab.errors import ConfigError
from mlplab.model import INITS

L2_MODES = ("none", "penalty", "decoupled")
DECOUPLED_OPTIMIZERS = ("torch.optim.Adam", "torch.optim.AdamW")


def _is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _require(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is not allowed: {allowed}.")


def check_model(cfg: DictConfig) -> None:
    sizes = OmegaConf.to_object(cfg.model.hidden_sizes) if OmegaConf.is_list(cfg.model.hidden_sizes) else None
    _require(
        isinstance(sizes, list) and len(sizes) > 0,
        "model.hidden_sizes",
        cfg.model.hidden_sizes,
        "a non-empty list of widths, e.g. model.hidden_sizes=[100] or [256,128]",
    )
    for size in sizes:
        _require(_is_int(size) and size > 0, "model.hidden_sizes", sizes, "every width must be an integer > 0")
    _require(cfg.model.init in INITS, "model.init", cfg.model.init, f"one of {', '.join(INITS)}")
    p = cfg.dropout.p
    _require(_is_number(p) and 0 <= p < 1, "dropout.p", p, "a probability in [0, 1)")


def check_data(cfg: DictConfig) -> None:
    for key in ("batch_size", "eval_batch_size"):
        value = cfg.data[key]
        _require(_is_int(value) and value > 0, f"data.{key}", value, "an integer > 0")
    val_size = cfg.data.val_size
    _require(
        _is_int(val_size) and 0 <= val_size < TRAIN_SIZE,
        "data.val_size",
        val_size,
        f"an integer in [0, {TRAIN_SIZE}) (0 validates on nothing)",
    )
    mode = cfg.data.normalize.mode
    _require(mode in NORMALIZE_MODES, "data.normalize.mode", mode, f"one of {', '.join(NORMALIZE_MODES)}")


def check_optimization(cfg: DictConfig) -> None:
    lr = cfg.optimizer.lr
    _require(_is_number(lr) and lr > 0, "optimizer.lr", lr, "a number > 0")
    _require(cfg.l2.mode in L2_MODES, "l2.mode", cfg.l2.mode, f"one of {', '.join(L2_MODES)}")
    weight = cfg.l2.weight
    _require(_is_number(weight) and weight >= 0, "l2.weight", weight, "a number >= 0")
    if cfg.l2.mode == "decoupled":
        target = cfg.optimizer._target_
        _require(
            target in DECOUPLED_OPTIMIZERS,
            "optimizer",
            target,
            "l2=decoupled is AdamW-style decay; use optimizer=adam or adamw, or l2=penalty with sgd",
        )


def check_combinations(cfg: DictConfig) -> None:
    if cfg.norm._target_ == "torch.nn.BatchNorm1d" and cfg.data.batch_size < 2:
        raise ConfigError(
            f"norm=batch needs at least 2 samples per batch, but data.batch_size={cfg.data.batch_size}: "
            "raise data.batch_size or use norm=layer / norm=rms, which work per sample."
        )


CHECKS: tuple[Callable[[DictConfig], None], ...] = (check_model, check_data, check_optimization, check_combinations)


def check_config(cfg: DictConfig) -> None:
    """Raise ConfigError with a one-line message at the first value that cannot work."""
    for check in CHECKS:
        check(cfg)
