"""MNIST reading, integrity checks, the split, normalization and the device-resident batches."""

from __future__ import annotations


import shutil
import stat
from pathlib import Path

import pytest
import torch

from mlplab.core import data as mnist_data
from mlplab.core.data import (
    MNIST_FILES,
    DeviceBatches,
    MNISTDataError,
    MNISTDataModule,
    ShardedPermutation,
    load_split,
    raw_dir,
    verify_files,
)

TRAIN_LABEL_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def copy_root(source: Path, target: Path) -> Path:
    shutil.copytree(raw_dir(source), raw_dir(target))
    return target


def snapshot(folder: Path) -> dict[str, tuple[int, float]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime) for p in folder.rglob("*")}


def test_real_files_have_the_official_shapes_and_label_counts(mnist):
    train_images, train_labels = load_split(mnist, train=True)
    test_images, test_labels = load_split(mnist, train=False)
    assert train_images.shape == (60_000, 784) and train_images.dtype == torch.uint8
    assert test_images.shape == (10_000, 784)
    assert torch.bincount(train_labels).tolist() == TRAIN_LABEL_COUNTS
    assert torch.bincount(test_labels).sum().item() == 10_000
    assert (train_images.double() / 255).mean().item() == pytest.approx(0.1307, abs=1e-4)


def test_split_is_seeded_by_split_seed_disjoint_and_complete(mnist):
    first, again, other_seed, pack, other_split = (
        MNISTDataModule(str(mnist), val_size=5000, seed=seed, split_seed=split_seed)
        for seed, split_seed in ((1, 0), (1, 0), (2, 0), ([1, 2, 3], 0), (1, 5)))
    for datamodule in (first, again, other_seed, pack, other_split):
        datamodule.setup()
    assert len(first.split("train")[1]) == 55_000 and len(first.split("val")[1]) == 5_000
    assert torch.equal(first.split("val")[0], again.split("val")[0])
    # Every seed (and every member of a pack) validates on the same images: only split_seed moves them.
    assert torch.equal(first.split("val")[0], other_seed.split("val")[0])
    assert torch.equal(first.split("train")[0], other_seed.split("train")[0])
    assert torch.equal(first.split("val")[0], pack.split("val")[0])
    assert not torch.equal(first.split("val")[0], other_split.split("val")[0])
    counts = torch.bincount(torch.cat([first.split("train")[1], first.split("val")[1]]))
    assert counts.tolist() == TRAIN_LABEL_COUNTS


def test_zscore_inputs_have_zero_mean_unit_std_on_train(mnist):
    datamodule = MNISTDataModule(str(mnist), normalize={"mode": "zscore"})
    datamodule.setup()
    assert datamodule.mean == pytest.approx(0.1307, abs=2e-3) and datamodule.std == pytest.approx(0.3081, abs=2e-3)
    inputs = datamodule.to_input(datamodule.split("train")[0])
    assert inputs.mean().item() == pytest.approx(0.0, abs=1e-4)
    assert inputs.std().item() == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("mode, low, high", [("minmax", 0.0, 1.0), ("none", 0.0, 255.0)])
def test_minmax_and_none_ranges(mnist, mode, low, high):
    datamodule = MNISTDataModule(str(mnist), normalize={"mode": mode})
    datamodule.setup()
    inputs = datamodule.to_input(datamodule.split("test")[0])
    assert inputs.min().item() == low and inputs.max().item() == high


def test_read_only_root_is_read_in_place(mnist, tmp_path):
    root = copy_root(mnist, tmp_path / "ro")
    folder = raw_dir(root)
    for path in [folder, *folder.iterdir()]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    before = snapshot(root)
    datamodule = MNISTDataModule(str(root))
    datamodule.prepare_data()
    datamodule.setup()
    assert len(datamodule.split("test")[1]) == 10_000
    assert snapshot(root) == before  # nothing extracted or written beside the .gz files


@pytest.mark.parametrize("damage", ["truncate", "alter"])
def test_damaged_file_is_rejected_with_its_name_and_expected_md5(mnist, tmp_path, damage):
    root = copy_root(mnist, tmp_path / "bad")
    victim = raw_dir(root) / "t10k-labels-idx1-ubyte.gz"
    content = victim.read_bytes()
    victim.write_bytes(content[:-100] if damage == "truncate" else content[:-1] + bytes([content[-1] ^ 1]))
    with pytest.raises(MNISTDataError) as error:
        MNISTDataModule(str(root), download=False).setup()
    assert victim.name in str(error.value) and MNIST_FILES[victim.name] in str(error.value)


def test_missing_files_name_the_folder_and_mnist_root(tmp_path):
    with pytest.raises(MNISTDataError) as error:
        MNISTDataModule(str(tmp_path), download=False).setup()
    message = str(error.value)
    assert str(raw_dir(tmp_path)) in message and "MNIST_ROOT" in message
    assert all(name in message for name in MNIST_FILES)


def test_unreachable_mirror_stops_with_one_clear_message(tmp_path, monkeypatch):
    # A closed local port: a real connection failure, as on a machine without network.
    monkeypatch.setattr(mnist_data.TorchvisionMNIST, "mirrors", ["http://127.0.0.1:9/"])
    with pytest.raises(MNISTDataError) as error:
        MNISTDataModule(str(tmp_path), download=True).prepare_data()
    assert "could not be downloaded" in str(error.value) and "MNIST_ROOT" in str(error.value)


def test_verify_files_returns_the_checked_md5s(mnist):
    assert verify_files(mnist) == MNIST_FILES


def test_each_epoch_visits_every_index_once_and_reruns_repeat():
    sampler = ShardedPermutation(1000, shuffle=True, seed=3)
    orders = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        order = sampler.indices()
        assert order.shape == (1, 1000)  # [members, N]: a single seed is a pack of one
        assert sorted(order[0].tolist()) == list(range(1000))
        orders.append(order)
    assert not torch.equal(orders[0], orders[1])
    again = ShardedPermutation(1000, shuffle=True, seed=3)
    again.set_epoch(1)
    assert torch.equal(again.indices(), orders[1])


def test_each_member_of_a_pack_draws_its_own_seeds_order():
    pack = ShardedPermutation(1000, shuffle=True, seed=[3, 4])
    alone = ShardedPermutation(1000, shuffle=True, seed=4)
    pack.set_epoch(2), alone.set_epoch(2)
    order = pack.indices()
    assert order.shape == (2, 1000)
    assert all(sorted(row.tolist()) == list(range(1000)) for row in order)
    assert torch.equal(order[1], alone.indices()[0])  # what member 4 sees does not depend on its pack
    assert not torch.equal(order[0], order[1])


def test_evaluation_order_is_shared_by_all_members():
    assert torch.equal(ShardedPermutation(10, shuffle=False, seed=[3, 4]).indices(), torch.arange(10))


@pytest.mark.parametrize("world_size", [2, 4])
def test_ddp_shards_are_disjoint_equal_and_cover_the_set(world_size):
    seeds = [7, 8]
    shards = []
    for rank in range(world_size):
        sampler = ShardedPermutation(1000, shuffle=True, seed=seeds, rank=rank, world_size=world_size)
        sampler.set_epoch(5)
        shard = sampler.indices()
        assert shard.shape == (len(seeds), 1000 // world_size) and len(sampler) == 1000 // world_size
        shards.append(shard.tolist())
    for member in range(len(seeds)):  # each member's shards, as one seed's alone would be
        merged = [i for shard in shards for i in shard[member]]
        assert len(merged) == len(set(merged)) == 1000


def test_device_batches_cover_the_split_in_order_for_evaluation():
    images = torch.arange(250 * 784, dtype=torch.int32).reshape(250, 784).to(torch.uint8)
    labels = torch.arange(250)
    batches = DeviceBatches(images, labels, 100, ShardedPermutation(250, shuffle=False))
    seen = [y for _, y in batches]
    assert len(batches) == 3 and [len(y) for y in seen] == [100, 100, 50]
    assert torch.equal(torch.cat(seen), labels)


def test_datamodule_yields_normalized_float_batches(mnist):
    datamodule = MNISTDataModule(str(mnist), batch_size=64, val_size=1000)
    datamodule.setup()
    x, y = datamodule.on_after_batch_transfer(next(iter(datamodule.train_dataloader())), 0)
    # Training batches: [members, batch, pixels] and [members, batch]
    assert x.shape == (1, 64, 784) and y.shape == (1, 64) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert 0.0 <= x.min().item() and x.max().item() <= 1.0
    assert len(datamodule.train_dataloader()) == -(-59_000 // 64)
    # Evaluation batches are shared by the members: [batch, pixels]
    x, y = datamodule.on_after_batch_transfer(next(iter(datamodule.val_dataloader())), 0)
    assert x.shape == (1000, 784) and y.shape == (1000,) and x.dtype == torch.float32
    assert 0.0 <= x.min().item() and x.max().item() <= 1.0


def test_a_packs_training_batches_hold_each_members_own_images(mnist):
    pack = MNISTDataModule(str(mnist), batch_size=64, val_size=1000, seed=[3, 4])
    alone = MNISTDataModule(str(mnist), batch_size=64, val_size=1000, seed=4)
    pack.setup(), alone.setup()
    (x, y), (x_alone, y_alone) = (next(iter(d.train_dataloader())) for d in (pack, alone))
    assert x.shape == (2, 64, 784) and y.shape == (2, 64)
    assert torch.equal(x[1], x_alone[0]) and torch.equal(y[1], y_alone[0])
    assert not torch.equal(y[0], y[1])


def test_eval_names_its_own_data_root_key(tmp_path):
    with pytest.raises(MNISTDataError, match="data_root=") as error:
        MNISTDataModule(str(tmp_path), download=False, root_key="data_root").setup()
    assert "data.root" not in str(error.value)


def test_prepare_data_assigns_no_state(mnist):
    # Lightning runs prepare_data on one process only: state set there would be missing on the others.
    datamodule = MNISTDataModule(str(mnist))
    before = dict(vars(datamodule))
    datamodule.prepare_data()
    assert {key: value for key, value in vars(datamodule).items() if key in before} == before
