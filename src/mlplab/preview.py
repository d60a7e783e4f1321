"""See what an augmentation does: `python -m mlplab.preview augment=affine_elastic [out=augment.png]`.

Composes the project's config with the given overrides (any `augment.*` value, `seed`, `data.root`),
checks it like `train.py` does, and writes a PNG of eight test digits, each followed by five
augmented copies drawn with the run's own augmentation code.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from hydra.utils import instantiate
from omegaconf.errors import OmegaConfBaseException

from mlplab import plots
from mlplab.plots.run import augmentation_figure
from mlplab.checks import check_config
from mlplab.data import load_split, verify_files
from mlplab.errors import UserError
from mlplab.runfiles import conf_dir

DIGITS, COPIES = 8, 5


def preview(augment_overrides: Sequence[str], out: Path) -> Path:
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose("config", overrides=list(augment_overrides))
    check_config(cfg)
    augment = instantiate(cfg.augment)
    verify_files(cfg.data.root)
    images = load_split(cfg.data.root, train=False)[0][:DIGITS].float() / 255.0
    generator = torch.Generator().manual_seed(cfg.seed)
    copies = [augment(images, generator) for _ in range(COPIES)]
    return plots.save(augmentation_figure(images, copies), out, dpi=100)


def main(argv: Sequence[str]) -> int:
    out = Path(next((arg.split("=", 1)[1] for arg in argv if arg.startswith("out=")), "augment.png"))
    try:
        print(preview([arg for arg in argv if not arg.startswith("out=")], out))
    except (UserError, HydraException, OmegaConfBaseException) as error:
        print(f"error: {error}".splitlines()[0], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
