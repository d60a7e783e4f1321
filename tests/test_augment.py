"""Batched augmentation: identity, geometry against torchvision, ranges, seeding, train-only use."""

from __future__ import annotations

import json

import pytest
import pytorch_lightning as pl
import torch
import torchvision.transforms.functional as TF
from hydra.utils import instantiate
from torchvision.transforms import InterpolationMode

from helpers import compose_config, options, read_png, run_script
from mlplab import plots
from mlplab.plots.run_figures import augmentation_figure
from mlplab.core.augment import BatchAugment, affine_matrices, warp
from mlplab.run.config_checks import check_config
from mlplab.core.data import MNISTDataModule, ShardedPermutation, load_split
from mlplab.errors import ConfigError
from mlplab.run.build import build_module

AUGMENTS = options("augment")


@pytest.fixture(scope="module")
def digits(mnist) -> torch.Tensor:
    return load_split(mnist, train=False)[0][:16].float() / 255.0


def load(name: str) -> BatchAugment:
    return instantiate(compose_config(f"augment={name}").augment)


def test_identity_settings_return_the_input_unchanged(digits):
    augment = load("none")
    assert augment.is_identity
    assert augment(digits, torch.Generator().manual_seed(0)) is digits
    same = warp(digits, affine_matrices(torch.zeros(16), torch.zeros(16), torch.ones(16), torch.zeros(16, 2)))
    assert torch.allclose(same, digits, atol=1e-5)


@pytest.mark.parametrize("degrees", [30.0, -45.0, 90.0])
def test_pure_rotation_matches_torchvision(digits, degrees):
    count = len(digits)
    ours = warp(digits, affine_matrices(torch.full((count,), degrees), torch.zeros(count), torch.ones(count),
                                        torch.zeros(count, 2)))
    reference = TF.rotate(digits.view(count, 1, 28, 28), degrees, interpolation=InterpolationMode.BILINEAR)
    assert torch.allclose(ours, reference.view(count, -1), atol=1e-4)


@pytest.mark.parametrize("name", [n for n in AUGMENTS if n != "none"])
def test_output_keeps_shape_dtype_and_range_and_changes_images(digits, name):
    out = load(name)(digits, torch.Generator().manual_seed(0))
    assert out.shape == digits.shape and out.dtype == digits.dtype
    assert out.min().item() >= 0.0 and out.max().item() <= 1.0 + 1e-6
    assert (out - digits).abs().mean().item() > 0.01


@pytest.mark.parametrize("name", [n for n in AUGMENTS if n != "none"])
def test_same_seed_same_draw(digits, name):
    augment = load(name)
    first, again = (augment(digits, torch.Generator().manual_seed(5)) for _ in range(2))
    other = augment(digits, torch.Generator().manual_seed(6))
    assert torch.equal(first, again) and not torch.equal(first, other)


@pytest.mark.parametrize("override, key", [
    ("augment.scale=[1.2,0.8]", "augment.scale"),
    ("augment.rotation=-5", "augment.rotation"),
    ("augment.translate=3", "augment.translate"),
    ("augment.elastic_sigma=0", "augment.elastic_sigma"),
])
def test_bad_ranges_are_refused_by_the_config_checks(override, key):
    with pytest.raises(ConfigError, match=key):
        check_config(compose_config("augment=affine_elastic", override))


def test_the_side_is_read_off_the_batch_not_assumed():
    small = torch.rand(3, 14 * 14)
    out = BatchAugment(rotation=20, elastic_alpha=5)(small, torch.Generator().manual_seed(0))
    assert out.shape == small.shape and not torch.equal(out, small)


def test_preview_figure_shows_the_digits(digits, tmp_path):
    augment = load("affine")
    copies = [augment(digits[:4], torch.Generator().manual_seed(seed)) for seed in range(3)]
    pixels = read_png(plots.save(augmentation_figure(digits[:4], copies), tmp_path / "grid.png"))
    blank = augmentation_figure(torch.zeros(4, 784), [torch.zeros(4, 784)] * 3)
    blank_pixels = read_png(plots.save(blank, tmp_path / "blank.png"))
    # The strokes of 16 digits: a figure without its images would equal the blank one.
    assert (abs(pixels.astype(int) - blank_pixels.astype(int)).max(axis=-1) > 60).mean() > 0.03


@pytest.mark.slow
def test_preview_command_writes_a_png(mnist, tmp_path):
    result = run_script("mlplab.tools.preview", "augment=elastic", f"out={tmp_path / 'x.png'}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert read_png(tmp_path / "x.png").shape[0] > 100


class CaptureBatches(pl.Callback):
    def __init__(self) -> None:
        self.train, self.val = None, None

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if batch_idx == 0:
            self.train = batch[0].clone()  # the plain path: a training batch is (inputs, labels)

    def on_validation_batch_start(self, trainer, module, batch, batch_idx, dataloader_idx=0):
        if batch_idx == 0 and not trainer.sanity_checking:
            self.val = batch[0].clone()


def test_only_training_batches_are_augmented(mnist, tmp_path, compose_cfg):
    datamodule = MNISTDataModule(str(mnist), batch_size=50, eval_batch_size=50, val_size=500, seed=3,
                                 augment=load("affine_elastic"))
    capture = CaptureBatches()
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=2, limit_val_batches=1,
                         num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, callbacks=[capture], default_root_dir=tmp_path)
    trainer.fit(build_module(compose_cfg("fastpath=off")), datamodule=datamodule)
    first_train = ShardedPermutation(54_500, shuffle=True, seed=3).indices()[:, :50]  # [members, batch]
    raw_train = datamodule.to_input(datamodule.split("train")[0][first_train])
    assert capture.train.shape == raw_train.shape == (1, 50, 784)
    assert (capture.train - raw_train).abs().mean().item() > 0.01
    assert torch.equal(capture.val, datamodule.to_input(datamodule.split("val")[0][:50]))


@pytest.mark.parametrize("name", [n for n in AUGMENTS if n != "none"])
def test_each_member_draws_its_own_augmentation(digits, name):
    augment = load(name)
    images = torch.stack([digits, digits.flip(0)])  # [members, N, pixels]
    out = augment.members(images, [torch.Generator().manual_seed(seed) for seed in (5, 6)], batch_size=8)
    assert out.shape == images.shape
    for member, seed in enumerate((5, 6)):  # what a member draws does not depend on its pack
        alone = augment(images[member], torch.Generator().manual_seed(seed), batch_size=8)
        assert torch.equal(out[member], alone)
    assert (out[0] - images[0]).abs().mean().item() > 0.01


@pytest.mark.slow
def test_seed_pytorch_with_affine_augmentation_runs_end_to_end(mnist, tmp_path):
    result = run_script("train.py", "+experiment=seed_pytorch", "augment=affine", "trainer.max_epochs=1",
                        "trainer=cpu", "logger=none", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "metrics.json").read_text())["test_acc"] >= 0.93


def test_preview_draws_the_configured_augmentation_in_process(mnist, tmp_path, monkeypatch):
    from mlplab.tools.preview import preview

    monkeypatch.chdir(tmp_path)  # the checkout is found from the package, not the current folder
    path = preview(["augment=affine", f"data.root={mnist}"], tmp_path / "p.png")
    assert read_png(path).shape[0] > 400
