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
from mlplab.tools import gradient_rms
from mlplab.run.callbacks import ActivationStats, ConfusionMatrix, GradientNorms, WeightImages
from mlplab.core.data import MNISTDataModule
from mlplab.plots.run_figures import weight_grid_figure
from mlplab.fastpath import FastPath
from mlplab.run.build import build_module

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
    module = build_module(cfg, fastpath=FastPath())  # the plain path, as the plain MNISTDataModule feeds it
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


# The gradient figure's runs (mlplab.tools.figure_runs.GRADIENT_RUNS), shortened: 2 epochs of 100 batches, the
# gradients logged every 10 steps. The sigmoid's gradients vanish in the first hundred steps.
DEEP_RUNS = {"sigmoid": ("+experiment=deep_sigmoid",), "sigmoid_sgd": ("+experiment=deep_sigmoid", "optimizer=sgd"),
             "relu": ("+experiment=deep_relu",)}
DEEP_TRAINING = {"max_epochs": 2, "limit_train_batches": 100, "log_every_n_steps": 10}


@pytest.fixture(scope="module")
def deep_runs(datamodule, tmp_path_factory) -> dict[str, Run]:
    """deep_sigmoid (Adam and SGD) and deep_relu as the experiments configure them, 2 short epochs each."""
    threads = torch.get_num_threads()
    # One thread, as mlplab.tools.docs_figures trains: on a busy machine two threads can make these runs 20x slower.
    torch.set_num_threads(1)
    try:
        return {
            name: train(tmp_path_factory.mktemp(name), datamodule, compose_config(*overrides),
                        [GradientNorms(), ActivationStats()], **DEEP_TRAINING)
            for name, overrides in DEEP_RUNS.items()
        }
    finally:
        torch.set_num_threads(threads)


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


def test_gradient_norms_are_logged_for_every_linear_layer_each_epoch_and_interval(reference_run):
    run, _ = reference_run
    linear_count = len(run.module.net.linear_layers())
    assert linear_count == 2
    for index in range(linear_count):
        for name in ("grad_norm", "grad_rms"):
            values = logged(run, f"{name}/linear{index}")
            assert len(values) == 2 and all(0 < value < math.inf for value in values)
        assert len(logged(run, f"grad_rms_interval/linear{index}")) == 1  # 60 steps: one interval of 50


class GradientRecorder(pl.Callback):
    """The Linear layers' weight gradients before every optimizer step, as GradientNorms sees them."""

    def __init__(self) -> None:
        self.gradients: list[list[torch.Tensor]] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.gradients.append([layer.weight.grad.detach().clone() for layer in pl_module.net.linear_layers()])


def test_gradient_rms_is_each_layers_root_mean_square_per_interval_and_epoch(datamodule, tmp_path):
    recorder = GradientRecorder()
    run = train(tmp_path, datamodule, compose_config(), [recorder, GradientNorms()], max_epochs=1,
                limit_train_batches=4, limit_val_batches=0, log_every_n_steps=2)
    # [steps, layers]: per weight (78,400 and 1,000 of them), and the plain norm.
    rms = torch.tensor([[gradient.pow(2).mean().sqrt().item() for gradient in step] for step in recorder.gradients])
    norms = torch.tensor([[gradient.norm().item() for gradient in step] for step in recorder.gradients])
    assert rms.shape == (4, 2)
    for index in range(2):
        intervals = [rms[:2, index].mean().item(), rms[2:, index].mean().item()]
        assert logged(run, f"grad_rms_interval/linear{index}") == pytest.approx(intervals, rel=1e-5)
        assert logged(run, f"grad_rms/linear{index}") == [pytest.approx(rms[:, index].mean().item(), rel=1e-5)]
        assert logged(run, f"grad_norm/linear{index}") == [pytest.approx(norms[:, index].mean().item(), rel=1e-5)]
    interval_rows = [row for row in run.rows if row.get("grad_rms_interval/linear0")]
    assert [(row["epoch"], row["step"]) for row in interval_rows] == [("0", "2"), ("0", "4")]


def layer_factors(profile: list[float]) -> list[float]:
    """Each layer's gradient RMS over the one below it (input side first)."""
    return [upper / lower for lower, upper in zip(profile, profile[1:])]


@pytest.mark.slow  # three deep nets, 200 steps each
def test_sigmoid_gradients_vanish_towards_the_input_until_adam_evens_them_out(deep_runs):
    """What docs/figures/gradient_norms.png shows (mlplab.tools.gradient_findings), read through the figure's own path."""
    gradients = {name: gradient_rms.gradient_rms(run.folder) for name, run in deep_runs.items()}

    def profile(name: str, interval: int) -> list[float]:
        return [values[interval] for values in gradients[name].by_interval.values()]

    assert all(len(series.steps) == 20 and len(series.by_interval) == 7 for series in gradients.values())
    start = {name: gradient_rms.first_to_last_ratio(series.by_interval, 0) for name, series in gradients.items()}
    # At the start (steps 1-10) each sigmoid layer gets at least 4x less gradient per weight than the one
    # above it (sigmoid' <= 1/4): 1e-4 of the output layer's reaches the input layer. ReLU's hidden
    # layers stay within 3x of each other, and its input layer gets 1000x more of it.
    for name in ("sigmoid", "sigmoid_sgd"):
        assert min(layer_factors(profile(name, 0))) > 4, name
        assert start[name] < 1e-4, name
    assert max(layer_factors(profile("relu", 0)[:-1])) < 3
    assert start["relu"] > 1000 * start["sigmoid"]

    # With SGD it stays so: rising layer by layer in every interval, still < 1e-4 in both epochs.
    sgd = gradients["sigmoid_sgd"]
    assert gradient_rms.rising_until(sgd) == sgd.steps[-1]
    assert max(gradient_rms.first_to_last_ratio(sgd.by_epoch, epoch) for epoch in range(2)) < 1e-4
    # With Adam it stops after about a hundred steps: the input layer is no longer the smallest, and
    # the ratio has grown 1000x (a ratio of epoch means 100x higher in epoch 2 than in epoch 1).
    adam = gradients["sigmoid"]
    assert 50 <= gradient_rms.rising_until(adam) < 150
    last = profile("sigmoid", -1)
    assert last[0] > min(last[1:-1])
    assert gradient_rms.first_to_last_ratio(adam.by_interval) > 1000 * start["sigmoid"]
    assert gradient_rms.first_to_last_ratio(adam.by_epoch, 1) > 100 * gradient_rms.first_to_last_ratio(adam.by_epoch, 0)


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
    assert len(confusion.matrices) == 1 and (confusion.matrix.numpy() == counts).all()  # a pack of one
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
    module = build_module(compose_cfg("fastpath=off"))
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
    net = build_module(compose_config("model.hidden_sizes=[8]", "norm=none", "activation=relu", "seed=[0,2]")).net
    first = net.linear_layers()[0]
    inputs = torch.rand(200, 784)
    assert ActivationStats().statistics(net, inputs)[0, 3].tolist() == [0.0, 0.0]  # these seeds: no unit dead yet
    with torch.no_grad():
        first.bias[0, :2] = -1e6  # member 0: two units that no image can switch on
        first.bias[1, :3] = -1e6  # member 1: three
    stats = ActivationStats().statistics(net, inputs)
    assert stats.shape == (1, 4, 2)  # [hidden layers, statistics, members]
    mean, std, zero_frac, dead_frac = stats[0].tolist()
    assert dead_frac == pytest.approx([2 / 8, 3 / 8])
    assert zero_frac[0] >= 2 / 8 and zero_frac[1] >= 3 / 8 and min(std) > 0
    sigmoid = build_module(compose_config("model.hidden_sizes=[8]", "norm=none", "activation=sigmoid")).net
    assert ActivationStats().statistics(sigmoid, inputs)[0, 3].tolist() == [0.0]
