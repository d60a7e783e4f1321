"""The callbacks on real tiny training runs on real MNIST: figures written, metrics logged, and what they show."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger

from helpers import coloured_fraction, compose_config, read_png
from mlplab.callbacks import ActivationStats, ConfusionMatrix, GradientNorms, WeightImages
from mlplab.data import MNISTDataModule
from mlplab.plots.run import weight_grid_figure
from mlplab.train import build_module

DEEP = ("model.hidden_sizes=[100,100,100,100,100,100]", "norm=none")
TEST_BATCHES, EVAL_BATCH_SIZE = 2, 1000


@dataclass
class Run:
    folder: Path
    module: pl.LightningModule
    rows: list[dict[str, str]]  # csv/metrics.csv
    test_results: dict[str, float] | None


def train(folder: Path, datamodule: MNISTDataModule, cfg, callbacks: list, test: bool = False, **trainer_args) -> Run:
    pl.seed_everything(0)
    module = build_module(cfg)
    trainer = pl.Trainer(
        **{"max_epochs": 2, "limit_train_batches": 30, "limit_val_batches": 1, **trainer_args},
        accelerator="cpu", limit_test_batches=TEST_BATCHES, logger=CSVLogger(folder, name="csv", version=""),
        default_root_dir=folder, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
        callbacks=callbacks,
    )
    trainer.fit(module, datamodule=datamodule)
    results = trainer.test(module, datamodule=datamodule, verbose=False)[0] if test else None
    with open(folder / "csv" / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    return Run(folder, module, rows, results)


def logged(run: Run, name: str) -> list[float]:
    """The values of one metric, in logging order."""
    return [float(row[name]) for row in run.rows if row.get(name)]


def assert_coloured_png(path: Path, at_least: float) -> np.ndarray:
    """A PNG whose coloured content (weights in red/blue, counts in blue) covers `at_least` of it."""
    pixels = read_png(path)
    assert coloured_fraction(pixels) > at_least, f"{path} shows almost no content"
    return pixels


@pytest.fixture(scope="module")
def datamodule(mnist) -> MNISTDataModule:
    return MNISTDataModule(root=str(mnist), val_size=1000, batch_size=100, eval_batch_size=EVAL_BATCH_SIZE)


@pytest.fixture(scope="module")
def reference_run(datamodule, tmp_path_factory) -> tuple[Run, ConfusionMatrix]:
    """The default 784-100-BN-ReLU-10 net with all four callbacks, 2 short epochs, then 2 test batches."""
    confusion = ConfusionMatrix()
    callbacks = [WeightImages(), GradientNorms(), ActivationStats(), confusion]
    run = train(tmp_path_factory.mktemp("reference"), datamodule, compose_config(), callbacks, test=True)
    return run, confusion


@pytest.fixture(scope="module")
def deep_runs(datamodule, tmp_path_factory) -> dict[str, Run]:
    """The deep_sigmoid and deep_relu nets, 2 short epochs each."""
    configs = {"sigmoid": [*DEEP, "activation=sigmoid"], "relu": [*DEEP, "activation=relu", "model.init=kaiming"]}
    return {
        name: train(tmp_path_factory.mktemp(name), datamodule, compose_config(*overrides),
                    [GradientNorms(), ActivationStats()])
        for name, overrides in configs.items()
    }


def grid_tile(grid: np.ndarray, unit: int, columns: int, side: int = 28, padding: int = 2) -> np.ndarray:
    row, column = divmod(unit, columns)
    top, left = padding + row * (side + padding), padding + column * (side + padding)
    return grid[top : top + side, left : left + side]


@pytest.mark.parametrize("units, rows, columns", [(100, 10, 10), (30, 5, 6)])
def test_weight_grid_has_one_tile_per_unit_in_order_each_scaled_to_its_own_max(units, rows, columns, tmp_path):
    # Unit i: small positive noise of scale (i+1) and one strong negative weight on pixel i.
    generator = torch.Generator().manual_seed(0)
    weight = torch.rand(units, 784, generator=generator) * 0.01 * torch.arange(1, units + 1).unsqueeze(1)
    weight[torch.arange(units), torch.arange(units)] = -2.0 * torch.arange(1, units + 1)
    figure = weight_grid_figure(weight)

    grid = np.ma.filled(figure.axes[0].get_images()[0].get_array().astype(float), np.nan)
    assert grid.shape == (rows * 30 + 2, columns * 30 + 2)
    for unit in range(units):
        tile = grid_tile(grid, unit, columns)
        assert not np.isnan(tile).any()
        assert tile[divmod(unit, 28)] == pytest.approx(-1.0)  # the unit's own max |w| maps to the colour limit
        assert tile.max() <= 0.01
    assert np.isnan(grid[0]).all()  # padding is not drawn as a zero weight
    figure.savefig(tmp_path / "weights.png")
    assert read_png(tmp_path / "weights.png").shape[1] > columns * 28


def test_weight_images_are_written_every_epoch_and_as_latest(reference_run):
    run, _ = reference_run
    figures = run.folder / "figures"
    for name in ("weights_epoch000.png", "weights_epoch001.png", "weights.png"):
        assert_coloured_png(figures / name, 0.2)
    assert (figures / "weights.png").read_bytes() == (figures / "weights_epoch001.png").read_bytes()
    assert not (figures / "weights_epoch002.png").exists()


def test_gradient_norms_are_logged_for_every_linear_layer_each_epoch(reference_run):
    run, _ = reference_run
    linear_count = len(run.module.net.linear_layers())
    assert linear_count == 2
    for index in range(linear_count):
        norms = logged(run, f"grad_norm/linear{index}")
        assert len(norms) == 2 and all(0 < norm < math.inf for norm in norms)


@pytest.mark.slow  # two deep nets trained for two epochs
def test_sigmoid_gradients_vanish_towards_the_input_and_relu_gradients_do_not(deep_runs):
    def first_over_last(run: Run) -> float:
        return logged(run, "grad_norm/linear0")[0] / logged(run, "grad_norm/linear6")[0]

    sigmoid, relu = first_over_last(deep_runs["sigmoid"]), first_over_last(deep_runs["relu"])
    # sigmoid' <= 1/4 per layer: after six layers the first layer's gradient is orders of magnitude smaller.
    assert sigmoid < 1e-2
    assert relu > 100 * sigmoid
    layer_norms = [logged(deep_runs["sigmoid"], f"grad_norm/linear{index}")[0] for index in range(7)]
    assert layer_norms == sorted(layer_norms)


@pytest.mark.slow
def test_activation_stats_count_dead_relus_and_no_zero_sigmoids(deep_runs, reference_run):
    for index in range(6):
        assert logged(deep_runs["relu"], f"activation/layer{index}/zero_frac")[-1] > 0.05
        assert logged(deep_runs["sigmoid"], f"activation/layer{index}/zero_frac") == [0.0, 0.0]
        sigmoid_means = logged(deep_runs["sigmoid"], f"activation/layer{index}/mean")
        assert all(0 < mean < 1 for mean in sigmoid_means)
        assert all(std > 0 for std in logged(deep_runs["sigmoid"], f"activation/layer{index}/std"))
    # Once per validation epoch, not in the sanity check.
    assert len(logged(reference_run[0], "activation/layer0/zero_frac")) == 2


def test_activation_stats_use_test_images_without_validation_split(mnist, compose_cfg, tmp_path):
    datamodule = MNISTDataModule(root=str(mnist), val_size=0, batch_size=100)
    stats = ActivationStats(num_images=500)
    run = train(tmp_path, datamodule, compose_cfg(*DEEP, "activation=relu"), [stats], max_epochs=1,
                limit_train_batches=5)
    test_images, _ = datamodule.split("test")
    expected = stats.statistics(run.module.net, datamodule.to_input(test_images[:500]))
    for index in range(6):
        assert logged(run, f"activation/layer{index}/mean") == [pytest.approx(expected[index, 0].item(), rel=1e-5)]
        assert logged(run, f"activation/layer{index}/zero_frac") == [pytest.approx(expected[index, 2].item())]


def test_confusion_matrix_counts_every_test_image_and_matches_test_accuracy(reference_run):
    run, confusion = reference_run
    matrix = json.loads((run.folder / "confusion_matrix.json").read_text())
    assert len(matrix) == 10 and all(len(row) == 10 for row in matrix)
    counts = np.array(matrix)
    assert counts.sum() == TEST_BATCHES * EVAL_BATCH_SIZE
    assert np.trace(counts) / counts.sum() == pytest.approx(run.test_results["test/acc"], abs=1e-6)
    assert (confusion.matrix.numpy() == counts).all()
    assert_coloured_png(run.folder / "figures" / "confusion_matrix.png", 0.02)


@pytest.mark.slow  # a wandb run: its service process takes seconds to start and stop
def test_figures_reach_wandb_as_images(datamodule, compose_cfg, tmp_path, monkeypatch):
    from pytorch_lightning.loggers import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    logger = WandbLogger(save_dir=str(tmp_path), offline=True, project="mlplab-test")
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=2, limit_val_batches=0,
                         limit_test_batches=1, logger=logger, default_root_dir=tmp_path, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False,
                         callbacks=[WeightImages(), ConfusionMatrix()])
    module = build_module(compose_cfg())
    try:
        trainer.fit(module, datamodule=datamodule)
        trainer.test(module, datamodule=datamodule, verbose=False)
    finally:
        logger.experiment.finish()
    media = tmp_path / "wandb" / "latest-run" / "files" / "media" / "images"
    for key in ("weights/first_layer", "test/confusion_matrix"):
        folder, prefix = (media / key).parent, (media / key).name
        images = list(folder.glob(f"{prefix}_*.png"))
        assert len(images) == 1, f"no {key} image in {folder}"
        read_png(images[0])


def test_dead_units_are_those_zero_on_every_image():
    torch.manual_seed(0)
    net = build_module(compose_config("model.hidden_sizes=[8]", "norm=none", "activation=relu")).net
    first = net.linear_layers()[0]
    with torch.no_grad():
        first.bias[:2] = -1e6  # two units that no image can switch on
    inputs = torch.rand(200, 784)
    mean, std, zero_frac, dead_frac = ActivationStats().statistics(net, inputs)[0].tolist()
    assert dead_frac == pytest.approx(2 / 8)
    assert zero_frac >= 2 / 8 and std > 0
    sigmoid = build_module(compose_config("model.hidden_sizes=[8]", "norm=none", "activation=sigmoid")).net
    assert ActivationStats().statistics(sigmoid, inputs)[0, 3].item() == 0.0
