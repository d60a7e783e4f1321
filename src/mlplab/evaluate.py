"""Test a saved checkpoint on the official MNIST test set: what `eval.py` runs.

A checkpoint is read with `torch.load(weights_only=True)` only, so a file from elsewhere can never
run code; anything that is not one of this project's checkpoints is refused in one line.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from rich.console import Console

from mlplab.data import MNISTDataModule
from mlplab.errors import UserError
from mlplab.module import MLPClassifier
from mlplab.runfiles import METRICS_FILE, write_json
from mlplab.targets import check_targets
from mlplab.train import build_trainer

REQUIRED_KEYS = ("state_dict", "hyper_parameters", "datamodule_hyper_parameters")


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint's contents, or a UserError saying what the file is not."""
    if not path.is_file():
        raise UserError(f"ckpt_path={str(path)!r} is not a file: pass a run's checkpoints/best.ckpt or last.ckpt.")
    try:
        with warnings.catch_warnings():  # torch warns about odd pickles before refusing them
            warnings.simplefilter("ignore")
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - whatever the unpickler met, the file is not a checkpoint
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"ckpt_path={str(path)!r} is not a readable checkpoint ({reason[:120]}); "
                        "pass a run's checkpoints/best.ckpt or last.ckpt.") from None
    missing = [key for key in REQUIRED_KEYS if not isinstance(checkpoint, dict) or key not in checkpoint]
    if missing:
        raise UserError(f"ckpt_path={str(path)!r} is not an mlplab training checkpoint (no {', '.join(missing)}); "
                        "pass a run's checkpoints/best.ckpt or last.ckpt.")
    # weights_only kept the pickle from running code; the settings must not name code to build either.
    for key in ("hyper_parameters", "datamodule_hyper_parameters"):
        if not isinstance(checkpoint[key], dict):
            raise UserError(f"ckpt_path={str(path)!r}: {key} is not a mapping; pass a run's checkpoints/best.ckpt.")
        check_targets(checkpoint[key], f"ckpt_path={str(path)!r} {key}")
    return checkpoint


def restore_module(path: Path, checkpoint: dict[str, Any]) -> MLPClassifier:
    try:
        module = MLPClassifier(**checkpoint["hyper_parameters"])
        module.load_state_dict(checkpoint["state_dict"])
    except (TypeError, KeyError, RuntimeError, ValueError, AttributeError) as error:
        reason = str(error).strip().splitlines()[0]
        raise UserError(f"ckpt_path={str(path)!r} does not hold a model this version of mlplab can build "
                        f"({reason[:160]}).") from None
    return module


def run(cfg: DictConfig) -> dict[str, Any]:
    path = Path(cfg.ckpt_path)
    checkpoint = load_checkpoint(path)
    module = restore_module(path, checkpoint)
    # The datamodule's own settings (split seed, normalization) come from the checkpoint; only where
    # the data lives is taken from this machine.
    settings = {**checkpoint["datamodule_hyper_parameters"], "root": cfg.data_root, "download": False}
    try:
        datamodule = MNISTDataModule(**settings, root_key="data_root")
    except TypeError as error:
        raise UserError(f"ckpt_path={str(path)!r} holds data settings this version of mlplab does not know "
                        f"({' '.join(str(error).split())[:160]}).") from None
    trainer = build_trainer(cfg, callbacks=[], loggers=[])
    results = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    metrics = {"ckpt_path": str(path.resolve()), "test_acc": results["test/acc"], "test_loss": results["test/loss"]}
    output_dir = Path(cfg.paths.output_dir)
    write_json(output_dir / METRICS_FILE, metrics)
    Console(soft_wrap=True).print(f"[bold green]test accuracy {metrics['test_acc']:.2%}[/] of {path} -> {output_dir}")
    return metrics
