"""The composition root: the objects of a composed config, built one way for train.py, eval.py and
the tests, so that what a test trains is what a run trains.

The model, data, augmentation, callbacks and trainer groups are instantiated here; the fast path
(conf/fastpath) decides which classes train and gives them its settings.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mlplab.core.classifier import MODULE_GROUPS, MLPClassifier
from mlplab.core.data import MNISTDataModule, member_seeds
from mlplab.errors import ConfigError
from mlplab.fastpath import FastPath
from mlplab.run.targets import check_targets


def interactive() -> bool:
    return sys.stdout.isatty()


def fast_path(cfg: DictConfig) -> FastPath:
    """The config's fast path (none configured: the plain path). Built from its settings, whatever
    its `_target_` (the checks hold that to FastPath), so the fast path is always a FastPath."""
    if cfg.get("fastpath") is None:
        return FastPath()
    settings = OmegaConf.to_container(cfg.fastpath, resolve=True)
    settings.pop("_target_", None)
    return FastPath(**settings)


def build_datamodule(cfg: DictConfig) -> MNISTDataModule:
    """The data module of cfg.data with cfg.augment's augmentation, in the fast path's class."""
    fastpath = fast_path(cfg)
    datamodule = instantiate(cfg.data, augment=instantiate(cfg.augment), _convert_="all",
                             _target_=fastpath.datamodule_class())
    fastpath.attach_datamodule(datamodule)
    return datamodule


def module_settings(cfg: DictConfig, data: type[MNISTDataModule] | MNISTDataModule = MNISTDataModule) -> dict[str, Any]:
    """The module's groups as plain values, the model's with the data set's input and output sizes."""
    settings = {name: OmegaConf.to_container(cfg[name], resolve=True) if cfg.get(name) is not None else {}
                for name in MODULE_GROUPS}
    settings["model"] = {**settings["model"], "input_size": data.input_size, "num_classes": data.num_classes,
                         "seeds": member_seeds(cfg.seed)}
    return settings


def module_from_settings(settings: Mapping[str, Any], fastpath: FastPath | None = None) -> MLPClassifier:
    """The module of a config's or a checkpoint's settings, in the fast path's class (default: plain)."""
    # Whoever built the settings (a config, a checkpoint), nothing they name is called unless conf/ names it.
    check_targets(dict(settings), "the module's hyperparameters", interpolations=False)
    fastpath = fastpath or FastPath()
    module = fastpath.module_class().from_settings(settings)
    fastpath.attach_module(module)
    return module


def build_module(cfg: DictConfig, data: type[MNISTDataModule] | MNISTDataModule = MNISTDataModule,
                 fastpath: FastPath | None = None) -> MLPClassifier:
    """The LightningModule of cfg, trained the way cfg.fastpath (or `fastpath`) says."""
    return module_from_settings(module_settings(cfg, data), fastpath or fast_path(cfg))


def build_callbacks(cfg: DictConfig) -> list[pl.Callback]:
    """The callbacks group's callbacks (conf/callbacks), in the order the group lists them."""
    return [instantiate(node) for node in (cfg.get("callbacks") or {}).values() if node is not None]


def build_trainer(cfg: DictConfig, callbacks: list[pl.Callback], loggers: list, fastpath: FastPath | None = None,
                  **settings: Any) -> pl.Trainer:
    """Lightning's Trainer from cfg.trainer (and `settings` over it), with the callbacks of `fastpath`
    (default cfg's); a value Lightning refuses is one line naming it."""
    fastpath = fastpath or fast_path(cfg)
    fastpath.quiet_lightning()
    shows = settings.pop("enable_progress_bar", interactive())
    if not any(isinstance(callback, pl.callbacks.ProgressBar) for callback in callbacks):
        callbacks = [*callbacks, *fastpath.callbacks(shows)]
    try:
        return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, enable_progress_bar=shows,
                           **settings)
    except InstantiationException as error:
        cause = error.__cause__ or error
        reason = " ".join(str(cause).split()) or type(cause).__name__
        raise ConfigError(f"trainer settings refused by Lightning: {reason[:300]}. "
                          "See `python train.py --cfg job` for the trainer group.") from None
