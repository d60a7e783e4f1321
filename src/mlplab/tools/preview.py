"""See what an augmentation does: `python -m mlplab.tools.preview augment=affine_elastic [out=augment.png]`.

Composes the project's config with the given overrides (any `augment.*` value, `seed`, `data.root`),
checks it like `train.py` does, and writes a PNG of eight test digits, each followed by five
augmented copies drawn with the run's own augmentation code. The `out=` path is checked before any
work, and the file appears whole or not at all; nothing else is written. Every refusal is one
`error:` line: exit status 2 for a bad command line, 1 for anything else.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from hydra.utils import instantiate
from matplotlib.figure import Figure
from omegaconf.errors import OmegaConfBaseException

from mlplab.run.config_checks import check_config
from mlplab.run.cli import hydra_message, one_line
from mlplab.core.data import load_split, verify_files
from mlplab.errors import UserError
from mlplab.plots.run_figures import augmentation_figure
from mlplab.run.records import conf_dir

DIGITS, COPIES = 8, 5
DPI = 100
DEFAULT_OUT = "augment.png"
USAGE = "usage: python -m mlplab.tools.preview [augment=NAME] [augment.KEY=VALUE ...] [seed=N] [data.root=DIR] [out=FILE.png]"


class UsageError(UserError):
    """The command line itself is wrong (exit status 2)."""


def _refuse(value: str, why: str, kind: type[UserError] = UsageError) -> UserError:
    return kind(f"out={value!r} {why}")


def check_out(value: str) -> Path:
    """The PNG path `out=` names, refused in one line unless a new file can be written there.

    Only reads the file system. What a check cannot foresee (a full disk, a read-only mount, /proc)
    is refused by the write itself, in one line too.
    """
    if "\0" in value:
        raise _refuse(value, "is not allowed: a path cannot hold a NUL character.")
    if not value.strip():
        raise _refuse(value, f"is not allowed: a file name ending in .png, e.g. out={DEFAULT_OUT}.")
    try:
        return _checked_path(value)
    except (OSError, RuntimeError) as error:  # a name too long for a stat, a loop of links, ~nobody/
        reason = getattr(error, "strerror", None) or one_line(error)
        raise _refuse(value, f"cannot be used: {reason}; choose another path.") from None


def _checked_path(value: str) -> Path:
    out = Path(value).expanduser()
    if out.is_dir():
        raise _refuse(value, f"is a folder: name a file in it, e.g. out={out / DEFAULT_OUT}.")
    if out.suffix.lower() != ".png":
        example = out.with_suffix(".png") if out.stem and not out.name.startswith(".") else out.parent / DEFAULT_OUT
        raise _refuse(value, f"is not allowed: the preview is a PNG; give a name ending in .png, e.g. out={example}.")
    folder = out.parent
    if not folder.exists():
        raise _refuse(value, f"names a folder that does not exist ({folder}): create it first, or name a file "
                             "in an existing folder.")
    if not folder.is_dir():
        raise _refuse(value, f"is not allowed: {folder} is a file, not a folder.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise _refuse(value, f"cannot be written: no permission to write in {folder}; name a file in a folder "
                             "you can write.")
    try:
        longest = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        longest = 255
    if len(os.fsencode(out.name)) > longest:
        raise _refuse(value, f"is not allowed: its file name is too long ({len(os.fsencode(out.name))} bytes, the "
                             f"file system allows {longest}); choose a shorter name.")
    return out


def write_png(figure: Figure, out: Path) -> Path:
    """The figure as a PNG at `out`, whole or not at all: drawn into a hidden file beside it, then
    renamed over it, so a failed write leaves neither a partial PNG nor a stray file."""
    scratch = out.parent / f".preview-{secrets.token_hex(4)}.tmp"
    try:
        with open(scratch, "xb") as stream:  # "x": never over someone's file; the umask sets the mode
            figure.savefig(stream, format="png", dpi=DPI)
        os.replace(scratch, out)
    except BaseException as error:
        scratch.unlink(missing_ok=True)
        if isinstance(error, OSError):  # /proc, /sys, a full disk, a read-only mount: what no check foresees
            raise _refuse(str(out), f"cannot be written: {error.strerror or one_line(error)}; name the PNG in a "
                                    f"folder you can write, e.g. out={DEFAULT_OUT}.", UserError) from None
        raise
    return out


def preview(augment_overrides: Sequence[str], out: Path) -> Path:
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        # The preview logs nothing: no logger's settings (WANDB_*) can stop it.
        cfg = compose("config", overrides=["logger=none", *augment_overrides])
    check_config(cfg)
    augment = instantiate(cfg.augment)
    verify_files(cfg.data.root)
    images = load_split(cfg.data.root, train=False)[0][:DIGITS].float() / 255.0
    generator = torch.Generator().manual_seed(cfg.seed)
    copies = [augment(images, generator) for _ in range(COPIES)]
    return write_png(augmentation_figure(images, copies), out)


def parse(argv: Sequence[str]) -> tuple[list[str], Path]:
    """The config overrides and the checked output path of a command line."""
    outs = [arg.split("=", 1)[1] for arg in argv if arg.startswith("out=")]
    if len(outs) > 1:
        raise UsageError(f"out= is given {len(outs)} times ({', '.join(map(repr, outs))}): give it once.")
    flags = [arg for arg in argv if arg.startswith("-")]
    if flags:
        raise UsageError(f"{flags[0]!r} is not an option: the arguments are key=value overrides. {USAGE}")
    return [arg for arg in argv if not arg.startswith("out=")], check_out(outs[0] if outs else DEFAULT_OUT)


def main(argv: Sequence[str]) -> int:
    if any(arg in ("-h", "--help") for arg in argv):
        print(f"{USAGE}\n\n{__doc__}")
        return 0
    try:
        overrides, out = parse(argv)
        print(preview(overrides, out))
    except UsageError as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2
    except UserError as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 1
    except (HydraException, OmegaConfBaseException) as error:
        print(f"error: {hydra_message(error)}", file=sys.stderr)
        return 1
    except OSError as error:  # reading the data: an unreadable data.root
        print(f"error: {error.strerror or one_line(error)}: {error.filename or ''}; point data.root (or MNIST_ROOT) "
              "at a folder with readable MNIST files", file=sys.stderr)
        return 1
    except Exception as error:  # noqa: BLE001 - the last line of defence: never a bare traceback
        print(f"error: {type(error).__name__}: {one_line(error)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
