"""Every value a user can set, checked once, before any data is read or any model is built.

Each check names the key, the value seen and what is allowed, so a typo costs seconds, not a run.
Sizes that depend on the data set come from the data module's class, not from constants here.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from numbers import Integral, Real
from typing import Any

import yaml
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from mlplab.core.classifier import L2_MODES
from mlplab.core.data import NORMALIZE_MODES
from mlplab.core.model import INITS
from mlplab.errors import ConfigError
from mlplab.run.build import fast_path
from mlplab.run.loggers import check_wandb_environment
from mlplab.run.preflight import check_builds, check_memory
from mlplab.run.structure_checks import (check_callbacks, check_fastpath, check_groups_present,
                                         check_known_keys, check_targets_of_config)

DECOUPLED_OPTIMIZERS = ("torch.optim.Adam", "torch.optim.AdamW")
GPU_ACCELERATORS = ("gpu", "cuda")
MAX_SEED = 2**32 - 1  # numpy's seeds are 32-bit
MAX_MEMBERS = 256  # members of one pack
MAX_TAG = 64  # characters: wandb refuses longer tags when the run starts, after the data is read
# Switches of torch's optimizers; where torch defaults them to None (its own choice), null is allowed.
OPTIMIZER_SWITCHES = ("amsgrad", "nesterov", "maximize", "capturable", "differentiable", "decoupled_weight_decay")
OPTIMIZER_TRISTATES = ("fused", "foreach")


def _is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _require(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is not allowed: {allowed}.")


def _require_switch(cfg: DictConfig, key: str, allow_null: bool = False) -> None:
    value = OmegaConf.select(cfg, key)
    ok = isinstance(value, bool) or (allow_null and value is None)
    _require(ok, key, value, "true or false" + (" (or null: torch's default)" if allow_null else ""))


def _bound(limit: float) -> str:
    """A limit as a user types it: integers in full (a seed's 4294967295), other numbers short."""
    return str(limit) if _is_int(limit) else f"{limit:g}"


def _require_number(cfg: DictConfig, key: str, low: float, high: float | None = None, *, integer: bool = False,
                    low_open: bool = False, high_open: bool = False) -> None:
    value = OmegaConf.select(cfg, key)
    kind = "an integer" if integer else "a finite number"
    if high is None:
        bounds = f"{'>' if low_open else '>='} {_bound(low)}"
    else:
        bounds = f"in {'(' if low_open else '['}{_bound(low)}, {_bound(high)}{')' if high_open else ']'}"
    ok = (_is_int(value) if integer else _is_number(value) and math.isfinite(value))
    ok = ok and (value > low if low_open else value >= low)
    ok = ok and (high is None or (value < high if high_open else value <= high))
    _require(ok, key, value, f"{kind} {bounds}")


def check_seeds(cfg: DictConfig, key: str) -> None:
    """One seed, or a pack's list of distinct seeds (one member each)."""
    value = OmegaConf.select(cfg, key)
    if not OmegaConf.is_list(value):
        _require_number(cfg, key, 0, MAX_SEED, integer=True)
        return
    seeds = OmegaConf.to_object(value)
    fix = f"a list of 1 to {MAX_MEMBERS} distinct integers in [0, {MAX_SEED}], e.g. {key}=[1,2,3,4,5]"
    _require(1 <= len(seeds) <= MAX_MEMBERS and all(_is_int(seed) and 0 <= seed <= MAX_SEED for seed in seeds),
             key, seeds, fix)
    _require(len(set(seeds)) == len(seeds), key, seeds, "distinct seeds: each member is one seed's run")


def check_run(cfg: DictConfig) -> None:
    from mlplab.run.members import check_pack

    check_seeds(cfg, "seed")
    check_pack(cfg)
    _require(isinstance(cfg.name, str) and cfg.name.strip() != "" and "/" not in cfg.name, "name", cfg.name,
             "a non-empty run name without '/' (it names the run directory)")
    tags = OmegaConf.to_object(cfg.tags) if OmegaConf.is_list(cfg.get("tags")) else cfg.get("tags")
    ok = isinstance(tags, list) and all(isinstance(tag, str) and 1 <= len(tag) <= MAX_TAG for tag in tags)
    _require(ok, "tags", tags, f"a list of strings of 1 to {MAX_TAG} characters, e.g. tags=[baseline,adam] "
             "(tags=[] for none)")


@functools.cache
def model_keys() -> tuple[str, ...]:
    """The keys conf/model/mlp.yaml defines: the only ones the model reads."""
    from mlplab.run.records import conf_dir

    return tuple(yaml.safe_load((conf_dir() / "model" / "mlp.yaml").read_text()))


def check_model(cfg: DictConfig) -> None:
    # A key the model does not read (a typo, a stale option) would otherwise be silently ignored.
    settings = OmegaConf.to_container(cfg.model, resolve=False)
    for key, value in settings.items():
        _require(key in model_keys(), f"model.{key}", value,
                 f"the model reads only model.{{{', '.join(model_keys())}}} (conf/model/mlp.yaml); remove it")
    hidden_sizes = cfg.model.get("hidden_sizes")
    sizes = OmegaConf.to_object(hidden_sizes) if OmegaConf.is_list(hidden_sizes) else None
    _require(isinstance(sizes, list) and len(sizes) > 0, "model.hidden_sizes", hidden_sizes,
             "a non-empty list of widths, e.g. model.hidden_sizes=[100] or [256,128]")
    for size in sizes:
        _require(_is_int(size) and size > 0, "model.hidden_sizes", sizes, "every width must be an integer > 0")
    _require(cfg.model.get("init") in INITS, "model.init", cfg.model.get("init"), f"one of {', '.join(INITS)}")
    p = cfg.dropout.get("p")
    _require(_is_number(p) and 0 <= p < 1, "dropout.p", p, "a probability in [0, 1)")


def check_norm(cfg: DictConfig) -> None:
    """eps and momentum of whichever norm option has them (batch, layer, rms)."""
    # torch takes eps=inf and normalizes every unit to 0: a run that finishes at chance.
    if "eps" in cfg.norm:
        _require_number(cfg, "norm.eps", 0, low_open=True)
    if "momentum" in cfg.norm and cfg.norm.momentum is not None:  # torch's None: a cumulative average
        _require_number(cfg, "norm.momentum", 0, 1)


def check_data(cfg: DictConfig) -> None:
    """The data module's values on their own (a checkpoint's data settings are held to them too)."""
    _require(isinstance(cfg.data.root, str) and cfg.data.root != "", "data.root", cfg.data.root,
             "the folder that holds MNIST/raw/ (or set MNIST_ROOT)")
    for key in ("data.batch_size", "data.eval_batch_size"):
        _require_number(cfg, key, 1, integer=True)
    train_size = get_class(cfg.data._target_).train_size
    val_size = cfg.data.val_size
    _require(_is_int(val_size) and 0 <= val_size < train_size, "data.val_size", val_size,
             f"an integer in [0, {train_size}) (0 validates on nothing)")
    normalize = cfg.data.get("normalize")
    mode = normalize.get("mode") if OmegaConf.is_dict(normalize) else normalize
    _require(mode in NORMALIZE_MODES, "data.normalize.mode", mode, f"one of {', '.join(NORMALIZE_MODES)}")
    if "seed" in cfg.data:
        check_seeds(cfg, "data.seed")
    if "split_seed" in cfg.data:
        _require_number(cfg, "data.split_seed", 0, MAX_SEED, integer=True)
    if "download" in cfg.data:
        _require_switch(cfg, "data.download")


def check_augment(cfg: DictConfig) -> None:
    augment = cfg.get("augment") or {}
    limits = {"rotation": 180, "shear": 60, "translate": 0.5, "elastic_alpha": 100}
    for name, high in limits.items():
        if name in augment:
            _require_number(cfg, f"augment.{name}", 0, high)
    if "elastic_sigma" in augment:
        _require_number(cfg, "augment.elastic_sigma", 0, low_open=True)
    if "scale" in augment:
        scale = OmegaConf.to_object(augment.scale) if OmegaConf.is_list(augment.scale) else augment.scale
        ok = isinstance(scale, list) and len(scale) == 2 and all(map(_is_number, scale)) and 0 < scale[0] <= scale[1]
        _require(ok, "augment.scale", scale, "[low, high] zoom factors with 0 < low <= high, e.g. [0.9,1.1]")


def check_optimization(cfg: DictConfig) -> None:
    _require_number(cfg, "optimizer.lr", 0, low_open=True)
    if "momentum" in cfg.optimizer:
        _require_number(cfg, "optimizer.momentum", 0, 1)
    if "eps" in cfg.optimizer:
        _require_number(cfg, "optimizer.eps", 0, low_open=True)
    for key in OPTIMIZER_SWITCHES + OPTIMIZER_TRISTATES:
        if key in cfg.optimizer:
            _require_switch(cfg, f"optimizer.{key}", allow_null=key in OPTIMIZER_TRISTATES)
    if "betas" in cfg.optimizer:
        betas = OmegaConf.to_object(cfg.optimizer.betas) if OmegaConf.is_list(cfg.optimizer.betas) else None
        ok = isinstance(betas, list) and len(betas) == 2 and all(_is_number(b) and 0 <= b < 1 for b in betas)
        _require(ok, "optimizer.betas", cfg.optimizer.betas, "[beta1, beta2], each in [0, 1), e.g. [0.9,0.999]")
    scheduler = cfg.get("scheduler") or {}
    for key in ("step_size", "T_max"):
        if key in scheduler:
            _require_number(cfg, f"scheduler.{key}", 1, integer=True)
    if "gamma" in scheduler:
        _require_number(cfg, "scheduler.gamma", 0, low_open=True)
    if "eta_min" in scheduler:
        _require_number(cfg, "scheduler.eta_min", 0)
    check_l2(cfg)
    if cfg.l2.mode == "decoupled":
        _require(cfg.optimizer._target_ in DECOUPLED_OPTIMIZERS, "optimizer", cfg.optimizer._target_,
                 "l2=decoupled is AdamW-style decay; use optimizer=adam or adamw, or l2=penalty with sgd")


def check_l2(cfg: DictConfig) -> None:
    _require(cfg.l2.get("mode") in L2_MODES, "l2.mode", cfg.l2.get("mode"), f"one of {', '.join(L2_MODES)}")
    _require_number(cfg, "l2.weight", 0)


def check_trainer(cfg: DictConfig) -> None:
    trainer = cfg.trainer
    _require(_is_int(trainer.max_epochs) and trainer.max_epochs >= 1, "trainer.max_epochs", trainer.max_epochs,
             "an integer >= 1 (0 would train nothing and report an untrained model)")
    _require_number(cfg, "trainer.log_every_n_steps", 1, integer=True)
    for key, what in (("limit_train_batches", "trains nothing"), ("limit_test_batches", "tests nothing")):
        value = trainer.get(key)
        if value is not None:
            ok = (_is_int(value) and value >= 1) or (_is_number(value) and not _is_int(value) and 0 < value <= 1)
            _require(ok, f"trainer.{key}", value, f"a number of batches >= 1 or a fraction in (0, 1] (0 {what})")
    check_train_fraction(cfg)
    interval = trainer.get("val_check_interval")
    if interval is not None:
        ok = (_is_int(interval) and interval >= 1) or (_is_number(interval) and not _is_int(interval)
                                                        and 0 < interval <= 1)
        _require(ok, "trainer.val_check_interval", interval,
                 "a number of batches >= 1 or a fraction of the epoch in (0, 1]")
    # The int 1 is one Lightning batch (several steps on the fast path); only the fraction 1.0 is the epoch.
    if interval is not None and not (isinstance(interval, float) and interval == 1.0):
        fast_path(cfg).check_validation_interval(interval)
    devices = trainer.get("devices", 1)
    _require((_is_int(devices) and devices >= 1) or devices == "auto", "trainer.devices", devices,
             "an integer >= 1 or auto")
    if str(trainer.get("accelerator", "auto")).lower() in GPU_ACCELERATORS:
        import torch

        available = torch.cuda.device_count()
        wanted = devices if _is_int(devices) else 1
        _require(available >= wanted, "trainer.accelerator", trainer.accelerator,
                 f"{wanted} GPU(s) asked for, {available} visible on this machine; use trainer=auto or trainer=cpu")


# Lightning arguments that take a count: (smallest value, what it means). None is allowed where
# Lightning allows it. The module steps its optimizer itself, so Lightning's accumulation and
# clipping, which need automatic optimization, are refused rather than silently ignored.
TRAINER_COUNTS = {
    "check_val_every_n_epoch": (1, "validate every N epochs"),
    "num_sanity_val_steps": (-1, "-1 runs every validation batch first"),
    "max_steps": (-1, "-1: no limit"),
    "min_steps": (0, "steps before an early stop may end the run"),
    "min_epochs": (0, "epochs before an early stop may end the run"),
    "num_nodes": (1, "machines"),
    "reload_dataloaders_every_n_epochs": (0, "0 never reloads"),
}
TRAINER_SWITCHES = ("enable_checkpointing", "enable_model_summary", "detect_anomaly", "inference_mode",
                    "use_distributed_sampler", "barebones", "sync_batchnorm")


def check_trainer_arguments(cfg: DictConfig) -> None:
    trainer = cfg.trainer
    for key, (low, meaning) in TRAINER_COUNTS.items():
        value = trainer.get(key)
        if value is not None:
            _require(_is_int(value) and value >= low, f"trainer.{key}", value, f"an integer >= {low} ({meaning})")
    for key in TRAINER_SWITCHES:
        if trainer.get(key) is not None:
            _require(isinstance(trainer.get(key), bool), f"trainer.{key}", trainer.get(key), "true or false")
    accumulate = trainer.get("accumulate_grad_batches")
    _require(accumulate in (None, 1) and not isinstance(accumulate, bool), "trainer.accumulate_grad_batches",
             accumulate, "1: the module takes one optimizer step per batch itself (raise data.batch_size instead)")
    clip = trainer.get("gradient_clip_val")
    _require(clip in (None, 0) and not isinstance(clip, bool), "trainer.gradient_clip_val", clip,
             "null: the module steps its optimizer itself, so Lightning's clipping would be ignored")
    fast = trainer.get("fast_dev_run")
    _require(fast is None or isinstance(fast, bool) or (_is_int(fast) and fast >= 0), "trainer.fast_dev_run", fast,
             "true, false or a number of batches >= 0")
    for key in ("limit_val_batches", "overfit_batches"):
        limit = trainer.get(key)
        if limit is not None:
            ok = (_is_int(limit) and limit >= 0) or (_is_number(limit) and not _is_int(limit) and 0 <= limit <= 1)
            _require(ok, f"trainer.{key}", limit, "a number of batches >= 0 or a fraction in [0, 1]")


def check_train_fraction(cfg: DictConfig) -> None:
    """A fraction of the epoch that rounds down to no batch would train nothing and test an untrained model."""
    fraction = cfg.trainer.get("limit_train_batches")
    if not (_is_number(fraction) and not _is_int(fraction)):
        return
    batches = get_class(cfg.data._target_).train_batches(cfg.data.val_size, cfg.data.batch_size)
    if int(batches * fraction) < 1:
        raise ConfigError(
            f"trainer.limit_train_batches={fraction} is {batches * fraction:.2g} of the epoch's {batches} batches, "
            f"so no batch would be trained: use at least {1 / batches:.2g}, or a number of batches (e.g. 1)."
        )


def check_combinations(cfg: DictConfig) -> None:
    if cfg.norm._target_ == "torch.nn.BatchNorm1d" and cfg.data.batch_size < 2:
        raise ConfigError(
            f"norm=batch needs at least 2 samples per batch, but data.batch_size={cfg.data.batch_size}: "
            "raise data.batch_size or use norm=layer / norm=rms, which work per sample."
        )
    val_size = cfg.data.val_size
    last_batch = (get_class(cfg.data._target_).train_size - val_size) % cfg.data.batch_size
    if cfg.norm._target_ == "torch.nn.BatchNorm1d" and last_batch == 1:
        raise ConfigError(
            f"data.val_size={val_size} leaves a last training batch of 1 image (data.batch_size="
            f"{cfg.data.batch_size}), which norm=batch cannot normalize: change data.val_size by one."
        )


# Targets first (nothing may be built before they pass); the builds and the memory estimate last,
# once every value they read is known to be in range.
CHECKS: tuple[Callable[[DictConfig], None], ...] = (
    check_groups_present, check_targets_of_config, check_known_keys, check_fastpath, check_callbacks, check_run, check_model, check_norm, check_data,
    check_augment, check_optimization, check_trainer, check_trainer_arguments, check_combinations,
    check_wandb_environment, check_memory, check_builds,
)


def check_config(cfg: DictConfig) -> None:
    """Raise ConfigError with a one-line message at the first value that cannot work."""
    for check in CHECKS:
        check(cfg)
