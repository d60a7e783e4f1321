"""Test a saved checkpoint on the official MNIST test set: what `eval.py` runs.

A checkpoint is read with `torch.load(weights_only=True)` only, so a file from elsewhere can never
run code; anything that is not one of this project's checkpoints is refused in one line. Its
settings are held to the rules train.py's configs are (mlplab.run.config_checks, mlplab.run.preflight) and its
weights must be finite, before a model of its size is built or any data is read: a file that no
run of this version could have written is refused, never tested and reported as a result.
"""

from __future__ import annotations

import inspect
import warnings
from functools import partial
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from mlplab.run.config_checks import check_data, check_l2, check_model, check_norm
from mlplab.core.data import MNISTDataModule
from mlplab.errors import ConfigError, UserError
from mlplab.core.classifier import MLPClassifier
from mlplab.fastpath import SETTINGS as FAST_PATH_SETTINGS
from mlplab.fastpath import FastPath
from mlplab.run.build import build_trainer, module_from_settings
from mlplab.run.preflight import check_fits, check_module_builds, model_bytes
from mlplab.run.records import METRICS_FILE, covers_all, write_json
from mlplab.run.targets import check_interpolations, check_targets

REQUIRED_KEYS = ("state_dict", "hyper_parameters", "datamodule_hyper_parameters")
SETTINGS_KEYS = ("hyper_parameters", "datamodule_hyper_parameters")
# The module's groups as training saves them; a run without a scheduler saves None or {}.
MODULE_GROUPS = ("model", "activation", "norm", "dropout", "l2", "optimizer")
OPTIONAL_GROUPS = ("scheduler",)
# What the model's settings hold beyond conf/model/mlp.yaml: the data set's sizes, added at build time.
SIZE_KEYS = ("input_size", "num_classes")
NETWORK_PREFIX = "net."  # MLPClassifier.net: the weights and the norms' running statistics
EXAMPLE = "ckpt_path=outputs/<run>/checkpoints/best.ckpt"
PASS_A_RUNS = "pass a run's checkpoints/best.ckpt or last.ckpt"
NOT_SAVED_BY_A_RUN = f"no run of this version saves that, so the file was altered or is not mlplab's: {PASS_A_RUNS}."


def checkpoint_path(cfg: DictConfig) -> Path:
    """cfg.ckpt_path as a Path, or a UserError saying how to pass one."""
    if OmegaConf.is_missing(cfg, "ckpt_path"):
        raise UserError(f"ckpt_path=... is required, e.g. python eval.py {EXAMPLE}")
    value = cfg.ckpt_path
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # a file named by digits alone
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"ckpt_path={value!r} is not a path to a checkpoint: pass one, e.g. {EXAMPLE}")
    return Path(value)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint's contents, or a UserError saying what the file is not."""
    if not path.is_file():
        raise UserError(f"ckpt_path={str(path)!r} is not a file: {PASS_A_RUNS}.")
    try:
        with warnings.catch_warnings():  # torch warns about odd pickles before refusing them
            warnings.simplefilter("ignore")
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - whatever the unpickler met, the file is not a checkpoint
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"ckpt_path={str(path)!r} is not a readable checkpoint ({reason[:120]}); "
                        f"{PASS_A_RUNS}.") from None
    missing = [key for key in REQUIRED_KEYS if not isinstance(checkpoint, dict) or key not in checkpoint]
    if missing:
        raise UserError(f"ckpt_path={str(path)!r} is not an mlplab training checkpoint (no {', '.join(missing)}); "
                        f"{PASS_A_RUNS}.")
    # weights_only kept the pickle from running code; the settings must not name code to build either.
    for key in SETTINGS_KEYS:
        if not isinstance(checkpoint[key], dict):
            raise UserError(f"ckpt_path={str(path)!r}: {key} is not a mapping; {PASS_A_RUNS}.")
        # Checkpoints are saved resolved: an interpolation could only have been written in to be
        # resolved here (an environment variable, a resolver), so it is refused before anything reads it.
        check_interpolations(checkpoint[key], f"ckpt_path={str(path)!r}", allowed=False, prefix=key)
        check_targets(checkpoint[key], f"ckpt_path={str(path)!r} {key}")
    return checkpoint


# ---------------------------------------------------------------------------------------------
# A checkpoint's settings, held to the rules of train.py's configs


def data_settings(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The data module's settings of a checkpoint; the fast path's, which checkpoints saved before
    it had a group of its own hold among them, are left out (they never changed a number)."""
    return {key: value for key, value in checkpoint["datamodule_hyper_parameters"].items()
            if key not in FAST_PATH_SETTINGS}


def _data_defaults() -> dict[str, Any]:
    """What the data module takes for a setting a checkpoint does not hold."""
    return {name: parameter.default for name, parameter in inspect.signature(MNISTDataModule).parameters.items()
            if parameter.default is not inspect.Parameter.empty and name not in ("augment", "root_key")}


def _module_groups(path: Path, hyper_parameters: dict[str, Any]) -> dict[str, Any]:
    """The module's groups, each a mapping; the model's data-set sizes checked and left out."""
    groups = {}
    for group in MODULE_GROUPS + OPTIONAL_GROUPS:
        value = hyper_parameters.get(group)
        if group in OPTIONAL_GROUPS and not value:
            continue
        if not isinstance(value, dict):
            raise UserError(f"ckpt_path={str(path)!r}: hyper_parameters.{group}={value!r} is not a mapping of "
                            f"settings; {NOT_SAVED_BY_A_RUN}")
        groups[group] = dict(value)
    model = groups["model"]
    for key in SIZE_KEYS:
        expected = getattr(MNISTDataModule, key)
        if model.get(key) != expected or isinstance(model.get(key), bool):
            raise UserError(f"ckpt_path={str(path)!r}: hyper_parameters.model.{key}={model.get(key)!r}, but MNIST's "
                            f"is {expected}; {NOT_SAVED_BY_A_RUN}")
        del model[key]
    model.setdefault("init", "default")  # checkpoints from before model.init built with torch's
    seeds = model.pop("seeds", [0])  # checkpoints from before packs held one network
    if not (isinstance(seeds, list) and len(seeds) == 1):
        members = len(seeds) if isinstance(seeds, list) else seeds
        raise UserError(f"ckpt_path={str(path)!r} holds a pack of {members} members (hyper_parameters.model.seeds="
                        f"{seeds!r}); test one member's: <pack>/seed-<S>/checkpoints/best.ckpt.")
    return groups


def settings_config(path: Path, checkpoint: dict[str, Any]) -> DictConfig:
    """The checkpoint's settings laid out as a training config (its module's groups, its data
    settings under `data`), so that train.py's checks read them as they read a config."""
    groups = _module_groups(path, checkpoint["hyper_parameters"])
    data = {**_data_defaults(), **data_settings(checkpoint),
            "_target_": "mlplab.core.data.MNISTDataModule", "root": "unused", "download": False}  # eval.py sets both
    try:
        seed = (checkpoint["hyper_parameters"]["model"].get("seeds") or [0])[0]
        return OmegaConf.create({**groups, "data": data, "seed": seed})
    except Exception as error:  # noqa: BLE001 - a value OmegaConf cannot hold is not one a run saved
        reason = " ".join(str(error).split())[:160]
        raise UserError(f"ckpt_path={str(path)!r} holds settings no config can hold ({reason}); "
                        f"{NOT_SAVED_BY_A_RUN}") from None


def _as_saved(message: str, section: str) -> str:
    """A check's line about `data.x` or `norm.x` renamed to where the checkpoint holds the value."""
    if section == "datamodule_hyper_parameters" and message.startswith("data."):
        return f"{section}.{message.removeprefix('data.')}"
    return f"{section}.{message}"


def _held_to(path: Path, section: str, check: Callable[[], None], advice: str = NOT_SAVED_BY_A_RUN) -> None:
    """check(), its ConfigError made a line naming the file and where in it the value is."""
    try:
        check()
    except ConfigError as error:
        message = _as_saved(str(error).rstrip(" ."), section)
        raise UserError(f"ckpt_path={str(path)!r}: {message}" + (f"; {advice}" if advice else ".")) from None


def check_finite_weights(path: Path, state_dict: Any) -> None:
    """A NaN or inf weight makes every prediction the same class: a test of it is no result."""
    if not isinstance(state_dict, dict):
        raise UserError(f"ckpt_path={str(path)!r}: state_dict is not a mapping of weights; {PASS_A_RUNS}.")
    for key, tensor in state_dict.items():
        # Only the network's: the metrics' states are saved too, and the best validation accuracy of
        # a run that validates on nothing stays at its start, -inf.
        if not str(key).startswith(NETWORK_PREFIX):
            continue
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise UserError(f"ckpt_path={str(path)!r}: its weights are not finite (state_dict.{key} holds NaN or "
                            "inf): the run diverged before it was saved; test another checkpoint (e.g. best.ckpt), "
                            "or train again with a smaller optimizer.lr.")


def check_checkpoint(path: Path, checkpoint: dict[str, Any], cfg: DictConfig) -> None:
    """Refuse, in one line naming the file and the key, what no run of this version could have saved,
    and a model too large for this machine, before the model is built or any data is read."""
    settings = settings_config(path, checkpoint)
    for check in (check_model, check_norm, check_l2):
        _held_to(path, "hyper_parameters", partial(check, settings))
    _held_to(path, "datamodule_hyper_parameters", partial(check_data, settings))
    # Estimated from the widths, before a model of that size is allocated (a real run's model can be
    # too large for this machine too: that is no sign of an altered file).
    hidden = list(settings.model.hidden_sizes)
    needed = model_bytes(hidden, settings.data.eval_batch_size, training=False)
    _held_to(path, "hyper_parameters", lambda: check_fits(
        needed, cfg.trainer, f"model.hidden_sizes={hidden}", "weights, test batches and data",
        "test it on a machine with more memory"), advice="")
    _held_to(path, "hyper_parameters", lambda: check_module_builds(settings, fix=""))
    check_finite_weights(path, checkpoint["state_dict"])


def restore_module(path: Path, checkpoint: dict[str, Any]) -> MLPClassifier:
    try:
        module = module_from_settings(checkpoint["hyper_parameters"])
        module.load_state_dict(checkpoint["state_dict"])
    except (TypeError, KeyError, RuntimeError, ValueError, AttributeError) as error:
        reason = str(error).strip().splitlines()[0]
        raise UserError(f"ckpt_path={str(path)!r} does not hold a model this version of mlplab can build "
                        f"({reason[:160]}).") from None
    return module


# What eval.py's config holds (conf/eval.yaml): anything else on its command line would be ignored,
# or built unchecked.
EVAL_KEYS = ("ckpt_path", "data_root", "name", "paths", "trainer", "hydra")


def check_eval_config(cfg: DictConfig) -> None:
    """eval.py's own settings: only its keys, and a trainer that names only conf/trainer's classes."""
    unknown = sorted(str(key) for key in cfg if key not in EVAL_KEYS)
    if unknown:
        raise UserError(f"eval.py takes no {', '.join(unknown)}: its settings are {', '.join(EVAL_KEYS[:-1])}; "
                        "the model, data and training settings come from the checkpoint.")
    check_targets(cfg, "the config")


def partial_test(cfg: DictConfig) -> str | None:
    """Why a test leaves out part of the test set (None: it sees all of it, a result)."""
    trainer = cfg.trainer
    if trainer.get("fast_dev_run"):
        return f"trainer.fast_dev_run={trainer.fast_dev_run}"
    limit = trainer.get("limit_test_batches")
    return None if covers_all(limit) else f"trainer.limit_test_batches={limit}"


def run(cfg: DictConfig) -> dict[str, Any]:
    check_eval_config(cfg)
    path = checkpoint_path(cfg)
    checkpoint = load_checkpoint(path)
    check_checkpoint(path, checkpoint, cfg)
    module = restore_module(path, checkpoint)
    # The datamodule's own settings (split seed, normalization) come from the checkpoint; only where
    # the data lives is taken from this machine.
    settings = {**data_settings(checkpoint), "root": cfg.data_root, "download": False}
    try:
        datamodule = MNISTDataModule(**settings, root_key="data_root")
    except TypeError as error:
        raise UserError(f"ckpt_path={str(path)!r} holds data settings this version of mlplab does not know "
                        f"({' '.join(str(error).split())[:160]}).") from None
    trainer = build_trainer(cfg, callbacks=[], loggers=[], fastpath=FastPath())  # testing takes no training steps
    results = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    metrics = {"ckpt_path": str(path.resolve()), "test_acc": results["test/acc"], "test_loss": results["test/loss"],
               "smoke": partial_test(cfg)}
    output_dir = Path(cfg.paths.output_dir)
    write_json(output_dir / METRICS_FILE, metrics)
    summary = f"test accuracy {metrics['test_acc']:.2%}[/] of {path} -> {output_dir}"
    if metrics["smoke"]:
        summary = f"[bold yellow]smoke check only ({metrics['smoke']}), not a result: {summary}"
    Console(soft_wrap=True).print(summary if metrics["smoke"] else f"[bold green]{summary}")
    return metrics
