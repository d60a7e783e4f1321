"""Test a saved checkpoint on the official MNIST test set: what `eval.py` runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from rich.console import Console

from mlplab.data import MNISTDataModule
from mlplab.errors import UserError
from mlplab.module import MLPClassifier
from mlplab.train import build_trainer, write_metrics


def run(cfg: DictConfig) -> dict[str, Any]:
    checkpoint = Path(cfg.ckpt_path)
    if not checkpoint.is_file():
        raise UserError(f"ckpt_path={cfg.ckpt_path!r} is not a file: pass a run's checkpoints/best.ckpt or last.ckpt.")
    # The datamodule's own hyperparameters (split seed, normalization) come from the checkpoint;
    # only where the data lives is taken from this machine.
    datamodule = MNISTDataModule.load_from_checkpoint(checkpoint, root=cfg.data_root)
    module = MLPClassifier.load_from_checkpoint(checkpoint, map_location="cpu")
    trainer = build_trainer(cfg, callbacks=[], loggers=[])
    results = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    metrics = {"ckpt_path": str(checkpoint.resolve()), "test_acc": results["test/acc"], "test_loss": results["test/loss"]}
    output_dir = Path(cfg.paths.output_dir)
    write_metrics(output_dir, metrics)
    Console(soft_wrap=True).print(f"[bold green]test accuracy {metrics['test_acc']:.2%}[/] of {checkpoint} -> {output_dir}")
    return metrics
