"""The reference recipe as a minimal hand-written script: what `python train.py +experiment=seed_pytorch`
does, without the framework, for whole-process comparisons (bench/process.py).

784-100-BN-ReLU-10, Adam 1e-3, batch 100, min-max inputs; 55,000 training images, 5,000 held out
and validated after each epoch, the best epoch's weights tested on the official 10,000. It reads the
four .gz files itself and imports nothing but torch.

    MNIST_ROOT=../shared/data python bench/minimal_train.py [--epochs 3] [--seed 42]

A bad argument or a missing or damaged data file is one `error:` line (exit status 2 and 1).
"""

from __future__ import annotations

import argparse
import copy
import gzip
import os
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


MAX_EPOCHS = 1000
MAX_SEED = 2**32 - 1  # as train.py allows: numpy's seeds are 32-bit


def bounded_int(low: int, high: int, what: str = "") -> Callable[[str], int]:
    """An argparse type: an integer in [low, high]; anything else (nan, inf, 1.5, huge) is refused
    by argparse in one line that names the argument, the value and the range. The bench scripts
    share it (bench/ is on their import path)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r} is not allowed: an integer in [{low}, {high}]{what}")
        return value

    return parse


class OneLineParser(argparse.ArgumentParser):
    """argparse, with a refused command line said in one `error:` line (exit status 2), as the
    project's entry points say theirs; --help still prints the whole usage."""

    def error(self, message: str):  # argparse's hook; it must not return
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def read_idx(path: Path) -> torch.Tensor:
    data = bytearray(gzip.open(path).read())
    ndim = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return torch.frombuffer(data, dtype=torch.uint8, offset=4 + 4 * ndim).reshape(shape)


def load(root: Path, prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
    images = read_idx(root / f"{prefix}-images-idx3-ubyte.gz").reshape(-1, 784)
    return images, read_idx(root / f"{prefix}-labels-idx1-ubyte.gz").long()


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    correct = sum((model(images[i : i + 1000].float() / 255).argmax(1) == labels[i : i + 1000]).sum().item()
                  for i in range(0, len(labels), 1000))
    model.train()
    return correct / len(labels)


def main() -> None:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=bounded_int(1, MAX_EPOCHS), default=3)
    parser.add_argument("--seed", type=bounded_int(0, MAX_SEED), default=42)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    raw = Path(os.environ.get("MNIST_ROOT", "./data")) / "MNIST" / "raw"
    try:
        images, labels = load(raw, "train")
        test_images, test_labels = load(raw, "t10k")
    except (OSError, EOFError, zlib.error, RuntimeError, ValueError) as error:  # missing, truncated, not IDX
        sys.exit(f"error: cannot read MNIST from {raw}: {' '.join(str(error).split()) or type(error).__name__}; "
                 "set MNIST_ROOT to the folder that holds MNIST/raw/ with the four official .gz files")
    order = torch.randperm(len(labels))
    val, train = order[:5000], order[5000:]
    model = nn.Sequential(nn.Linear(784, 100), nn.BatchNorm1d(100), nn.ReLU(), nn.Linear(100, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    best, best_state = -1.0, None
    for _ in range(args.epochs):
        for batch in train[torch.randperm(len(train))].split(100):
            loss = F.cross_entropy(model(images[batch].float() / 255), labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        score = accuracy(model, images[val], labels[val])
        if score > best:
            best, best_state = score, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    print(f"test accuracy {accuracy(model, test_images, test_labels):.2%} (best validation {best:.2%})")


if __name__ == "__main__":
    main()
