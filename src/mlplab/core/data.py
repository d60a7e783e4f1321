"""MNIST as a LightningDataModule: IDX reading in place, MD5 checks, the split, normalization.

The whole data set is small (~55 MB as uint8), so it is held once, as tensors on the training
device, and batches are cut by index (see `DeviceBatches`). Conversion to float, augmentation and
normalization happen on each batch, on whatever device it is on, in `on_after_batch_transfer`.

`seed` is one seed or a list, one per member of a pack (`mlplab.core.model`). A training batch is
[members, batch, pixels]: each member's own images, in its own order, with its own augmentation
draws. The data order and the augmentation draws of an epoch depend only on (member's seed, epoch)
(`epoch_seed`), so reruns, resumed runs and a member in any pack see the same batches. Validation
and test batches are [batch, pixels], the same images for every member. The validation split comes
from `split_seed`, not from `seed`: every seed and configuration is selected on the same images.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytorch_lightning as pl
import torch
from torchvision.datasets import MNIST as TorchvisionMNIST
from torchvision.datasets.utils import download_url

from mlplab.core.augment import BatchAugment
from mlplab.errors import UserError

# The official file names and MD5 sums, as torchvision publishes them.
MNIST_FILES: dict[str, str] = dict(TorchvisionMNIST.resources)
TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"
TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"
NORMALIZE_MODES = ("minmax", "zscore", "none")


class MNISTDataError(UserError):
    """The MNIST files are missing, damaged or cannot be fetched; the message says what to do."""


def raw_dir(root: str | os.PathLike) -> Path:
    """Where the four `.gz` files live under a data root (torchvision's layout)."""
    return Path(root) / "MNIST" / "raw"


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_files(root: str | os.PathLike, root_key: str = "data.root") -> dict[str, str]:
    """Check that all four files exist with their official MD5; return {file name: md5}.

    `root_key` is the setting the user changes to point elsewhere, named in the error.
    """
    folder = raw_dir(root)
    missing = [name for name in MNIST_FILES if not (folder / name).is_file()]
    if missing:
        raise MNISTDataError(
            f"MNIST files missing in {folder}: {', '.join(missing)}. "
            f"Set MNIST_ROOT (or {root_key}=...) to the folder that holds MNIST/raw/"
            + (", or allow a download with data.download=true on a machine with network access."
               if root_key == "data.root" else ".")
        )
    for name, expected in MNIST_FILES.items():
        seen = md5sum(folder / name)
        if seen != expected:
            raise MNISTDataError(
                f"{folder / name} is damaged: MD5 {seen}, expected {expected}. "
                "Delete it and copy (or download) the official file again."
            )
    return dict(MNIST_FILES)


def download_missing(root: str | os.PathLike) -> None:
    """Fetch the files that are not there yet from torchvision's mirrors, checking each MD5."""
    folder = raw_dir(root)
    for name, md5 in MNIST_FILES.items():
        if (folder / name).is_file():
            continue
        errors = []
        for mirror in TorchvisionMNIST.mirrors:
            try:
                download_url(f"{mirror}{name}", root=str(folder), filename=name, md5=md5)
                break
            except Exception as error:  # noqa: BLE001 - any failure means: try the next mirror
                errors.append(f"{mirror}: {error}")
        else:
            raise MNISTDataError(
                f"MNIST file {name} is missing in {folder} and could not be downloaded "
                f"({'; '.join(errors)}). Copy the four official files there, or set MNIST_ROOT "
                "(or data.root=...) to a folder that holds MNIST/raw/."
            )


def read_idx_gz(path: Path) -> torch.Tensor:
    """Read a gzip-compressed IDX file of unsigned bytes (all MNIST files are) in place."""
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    magic = int.from_bytes(data[0:4], "big")
    dtype_code, ndim = magic >> 8, magic & 0xFF
    if dtype_code != 0x08:
        raise MNISTDataError(f"{path}: IDX type {dtype_code:#x} is not unsigned bytes; is this an MNIST file?")
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    values = torch.frombuffer(bytearray(data), dtype=torch.uint8, offset=4 + 4 * ndim)
    return values.reshape(shape)


def load_split(root: str | os.PathLike, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Images as uint8 [N, 784] and labels as int64 [N] of the official train or test set."""
    folder = raw_dir(root)
    images_name, labels_name = (TRAIN_IMAGES, TRAIN_LABELS) if train else (TEST_IMAGES, TEST_LABELS)
    images = read_idx_gz(folder / images_name)
    labels = read_idx_gz(folder / labels_name).long()
    return images.reshape(len(images), -1), labels


def epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    """The seed of one epoch's draws from one stream (0: the data order, AUGMENT_STREAM: augmentation)."""
    return seed * 1_000_003 + epoch + stream


AUGMENT_STREAM = 7_919


def normalization_stats(mode: str, train_images: torch.Tensor) -> tuple[float, float]:
    """(mean, std) such that (x/255 - mean) / std is the network's input for this mode."""
    if mode == "minmax":
        return 0.0, 1.0
    if mode == "zscore":
        scaled = train_images.double() / 255.0
        return scaled.mean().item(), scaled.std().item()
    if mode == "none":
        return 0.0, 1.0 / 255.0
    raise ValueError(f"data.normalize.mode={mode!r} is not one of {NORMALIZE_MODES}")


def member_seeds(seed: int | Sequence[int]) -> list[int]:
    """The seeds of a pack's members: `seed` itself if it is a list, else a pack of one."""
    return [int(s) for s in seed] if isinstance(seed, Sequence) and not isinstance(seed, str) else [int(seed)]


class ShardedPermutation:
    """The index order of one epoch: per member a seeded permutation ([members, N]), or 0..N-1 ([N],
    shared by all members); this rank's shard of it.

    Each member's permutation comes from a generator seeded with (its seed, epoch), so the order depends
    only on the seed and the epoch: reruns and resumed runs see the same batches. Under DDP each rank
    takes every `world_size`-th index, as a DistributedSampler would. Lightning calls `set_epoch` at
    the start of each epoch because this object is the `sampler` of `DeviceBatches`.
    """

    def __init__(self, count: int, shuffle: bool, seed: int | Sequence[int] = 0, rank: int = 0,
                 world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside 0..{world_size - 1}")
        self.count, self.shuffle, self.seeds = count, shuffle, member_seeds(seed)
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> torch.Tensor:
        if self.shuffle:
            orders = [torch.randperm(self.count, generator=torch.Generator().manual_seed(epoch_seed(seed, self.epoch)))
                      for seed in self.seeds]
            # Equal shards keep the ranks in step; the few indices left over change every epoch.
            order = torch.stack(orders)[:, : self.count - self.count % self.world_size]
            return order[:, self.rank :: self.world_size]
        return torch.arange(self.count)[self.rank :: self.world_size]

    def __len__(self) -> int:
        if self.shuffle:
            return self.count // self.world_size
        return len(range(self.rank, self.count, self.world_size))


class DeviceBatches:
    """Batches cut by index from tensors that already live on the training device.

    It stands where a DataLoader would, without workers or per-sample Python: one gather per batch.
    Like a DataLoader it exposes `sampler` (Lightning calls its `set_epoch`) and `batch_sampler`.
    """

    batch_sampler = None

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                 sampler: ShardedPermutation) -> None:
        self.images, self.labels, self.batch_size, self.sampler = images, labels, batch_size, sampler

    @property
    def num_batches(self) -> int:
        """Batches of `batch_size` per epoch (the optimizer steps of a training epoch)."""
        return -(-len(self.sampler) // self.batch_size)

    def __len__(self) -> int:
        return self.num_batches

    def gathered(self, rows: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The epoch's images and labels, `rows` at a time, in the epoch's order (with a leading
        member axis when the order has one)."""
        order = self.sampler.indices().to(self.labels.device)[..., : self.num_batches * self.batch_size]
        for start in range(0, order.shape[-1], rows):
            index = order[..., start : start + rows]
            yield self.images[index], self.labels[index]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.gathered(self.batch_size)


class MNISTDataModule(pl.LightningDataModule):
    """Official 60k/10k MNIST with a validation split carved from train (seeded by `split_seed`).

    The class attributes describe the data set to the rest of the package (the model's input and
    output sizes, the checks on `val_size`), so no other module needs to know them.
    """

    train_size = 60_000
    test_size = 10_000
    image_shape = (28, 28)
    num_classes = 10
    input_size = image_shape[0] * image_shape[1]

    def __init__(
        self,
        root: str = "./data",
        batch_size: int = 100,
        eval_batch_size: int = 1000,
        val_size: int = 5000,
        normalize: dict | None = None,
        download: bool = True,
        seed: int | Sequence[int] = 0,
        augment: BatchAugment | None = None,
        split_seed: int = 0,
        root_key: str = "data.root",
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["augment", "root_key"])
        self.root_key = root_key
        self.augment = None if augment is None or augment.is_identity else augment
        self._generators: list[torch.Generator] = []
        self._generator_key: tuple | None = None
        self.root = root
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.val_size, self.seed, self.download = val_size, seed, download
        self.seeds, self.split_seed = member_seeds(seed), split_seed
        self.normalize_mode = (normalize or {}).get("mode", "minmax")
        self.mean, self.std = 0.0, 1.0
        self.file_md5s: dict[str, str] = {}
        self._splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._on_device: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def prepare_data(self) -> None:
        # Lightning's contract: download here, on one process per node, and assign no state.
        if self.download and any(not (raw_dir(self.root) / name).is_file() for name in MNIST_FILES):
            download_missing(self.root)

    def setup(self, stage: str | None = None) -> None:
        if self._splits:  # train.py sets up before fitting (sizes, MD5s for run_info); Lightning asks again
            return
        self.file_md5s = verify_files(self.root, self.root_key)
        train_images, train_labels = load_split(self.root, train=True)
        test_images, test_labels = load_split(self.root, train=False)
        order = torch.randperm(len(train_labels), generator=torch.Generator().manual_seed(self.split_seed))
        train_index, val_index = order[self.val_size :], order[: self.val_size]
        self._splits = {
            "train": (train_images[train_index], train_labels[train_index]),
            "val": (train_images[val_index], train_labels[val_index]),
            "test": (test_images, test_labels),
        }
        self.mean, self.std = normalization_stats(self.normalize_mode, self._splits["train"][0])

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw uint8 images and labels of 'train', 'val' or 'test' (after `setup`)."""
        return self._splits[name]

    def _device(self) -> torch.device:
        trainer = self.trainer
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    @classmethod
    def train_batches(cls, val_size: int, batch_size: int) -> int:
        """Batches of `batch_size` in one training epoch (the last may be short)."""
        return -(-(cls.train_size - val_size) // batch_size)

    def _batches(self, name: str, batch_size: int, shuffle: bool) -> DeviceBatches:
        device = self._device()
        cached = self._on_device.get(name)
        if cached is None or cached[1].device != device:
            cached = tuple(t.to(device) for t in self._splits[name])
            self._on_device[name] = cached
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        sampler = ShardedPermutation(len(cached[1]), shuffle, self.seeds, rank, world)
        return DeviceBatches(*cached, batch_size, sampler)

    def train_dataloader(self) -> DeviceBatches:
        return self._batches("train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> DeviceBatches | list:
        return self._batches("val", self.eval_batch_size, shuffle=False) if self.val_size else []

    def test_dataloader(self) -> DeviceBatches:
        return self._batches("test", self.eval_batch_size, shuffle=False)

    def to_input(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (or float, in pixel units) [N, 784] -> normalized network input, on the same device."""
        # In pixel units, so that normalize=none passes 0..255 through exactly.
        return (images.float() - 255.0 * self.mean) / (255.0 * self.std)

    def augment_generators(self, device: torch.device) -> list[torch.Generator]:
        """Each member's augmentation generator for the current epoch, seeded from (its seed, epoch).

        Reseeding per epoch makes a run resumed from an epoch-end checkpoint draw exactly what the
        uninterrupted run drew.
        """
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        key = (epoch, str(device))
        if self._generator_key != key:
            self._generators = [torch.Generator(device=device).manual_seed(epoch_seed(seed, epoch, AUGMENT_STREAM))
                                for seed in self.seeds]
            self._generator_key = key
        return self._generators

    def training_pixels(self, images: torch.Tensor) -> torch.Tensor:
        """Training images [members, rows, pixels] (one batch or several gathered at once) as float
        pixels, augmented batch by batch from each member's generator, so each batch draws what it
        would draw alone."""
        pixels = images.float()
        if self.augment is not None:
            pixels = self.augment.members(pixels, self.augment_generators(images.device), self.batch_size)
        return pixels

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """(inputs, labels): normalized, and augmented in training."""
        images, labels = batch
        if self.trainer is None or not self.trainer.training:
            return self.to_input(images), labels
        return self.to_input(self.training_pixels(images)), labels
