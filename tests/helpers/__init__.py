"""Code shared by the tests: where the repository and real MNIST are, composing the real configs,
running the entry points as a user would, and checking the PNGs the project writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf"
# A short run that draws from every generator the project seeds (dropout, affine augmentation):
# what the reproducibility and stop tests compare against.
SHORT_RUN = ("+experiment=smoke", "trainer.max_epochs=3", "trainer.limit_train_batches=60", "dropout=p02",
             "augment=affine", "trainer.limit_val_batches=2")
TIMING_KEYS = {"fit_seconds", "wall_seconds", "output_dir"}


def mnist_root() -> Path:
    return Path(os.environ.get("MNIST_ROOT", REPO.parent / "shared" / "data")).resolve()


def options(group: str) -> list[str]:
    """The option names of a config group (conf/<group>/*.yaml)."""
    from mlplab.run.records import option_names

    return option_names(group, CONF)


def compose_config(*overrides: str, config_name: str = "config") -> DictConfig:
    """The real config tree composed with `overrides`, as train.py would compose it."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides))


def fit_in_process(output_dir: Path, *overrides: str, callbacks=(), logger=False):
    """Train the real config with `overrides` on the CPU in this process, built as train.py builds
    it (mlplab.run.build); (trainer, module)."""
    import pytorch_lightning as pl

    from mlplab.core.data import member_seeds
    from mlplab.run.build import build_datamodule, build_module, build_trainer, fast_path
    from mlplab.run.stops import NonFiniteLossGuard

    cfg = compose_config("trainer=cpu", "trainer.num_sanity_val_steps=0", "logger=none",
                         f"paths.output_dir={output_dir}", *overrides)
    pl.seed_everything(member_seeds(cfg.seed)[0], workers=True)  # as train.py: members draw from their own seeds
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule)
    shows_progress = any(isinstance(callback, pl.callbacks.ProgressBar) for callback in callbacks)
    loggers = [] if not logger else list(logger) if isinstance(logger, (list, tuple)) else [logger]
    trainer = build_trainer(cfg, [NonFiniteLossGuard(), *callbacks], loggers, enable_progress_bar=shows_progress,
                            enable_checkpointing=False, enable_model_summary=False)
    trainer.fit(fast_path(cfg).prepared(module), datamodule=datamodule)
    return trainer, module


def script_env(**extra: str) -> dict[str, str]:
    """The environment of an entry point started by a test: real MNIST, wandb offline."""
    return {**os.environ, "MNIST_ROOT": str(mnist_root()), "WANDB_MODE": "offline", **extra}


def script_command(script: str, *args: str) -> list[str]:
    """`python <repo>/<script> args...`, or `python -m <module> args...` for a dotted module name."""
    if script.endswith(".py"):
        return [sys.executable, str(REPO / script), *args]
    return [sys.executable, "-m", script, *args]


def run_script(script: str, *args: str, cwd: Path = REPO, env: dict | None = None,
               timeout: int = 600) -> subprocess.CompletedProcess:
    """Run train.py, eval.py or `-m mlplab.<x>` as a user would; return the CompletedProcess."""
    return subprocess.run(script_command(script, *args), cwd=cwd, env={**script_env(), **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def _as_from_a_terminal(then=None):
    """A child with SIGINT at its default, as a command typed at a terminal has it: a shell that
    starts pytest in the background hands it SIGINT ignored, and every child would inherit that."""
    def reset() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if then is not None:
            then()
    return reset


def start_script(script: str, *args: str, cwd: Path = REPO, env: dict | None = None, **popen) -> subprocess.Popen:
    """Start an entry point in the background (to signal it, or to run several at once)."""
    popen.setdefault("stdout", subprocess.PIPE)
    popen.setdefault("stderr", subprocess.PIPE)
    popen["preexec_fn"] = _as_from_a_terminal(popen.get("preexec_fn"))
    return subprocess.Popen(script_command(script, *args), cwd=cwd, env={**script_env(), **(env or {})},
                            text=True, **popen)


def final_metrics(run_dir: Path) -> dict:
    """metrics.json without the timings and the folder, which differ between equal runs."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {key: value for key, value in metrics.items() if key not in TIMING_KEYS}


def final_weights(run_dir: Path) -> dict:
    import torch

    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def assert_same_weights(first: Path, second: Path) -> None:
    import torch

    a, b = final_weights(first), final_weights(second)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "final weights differ"


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 180) -> None:
    """Wait until `path` exists while `process` runs."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, (process.communicate()[1] or "")[-3000:]
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


def assert_one_line_error(result: subprocess.CompletedProcess, *expected: str) -> str:
    """A user error: non-zero exit, no traceback, exactly one `error:` line holding each of `expected`."""
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    assert all(text in errors[0] for text in expected), errors[0]
    return errors[0]


def read_png(path: Path) -> np.ndarray:
    """The RGB pixels of a PNG the project wrote (after checking it is one)."""
    with Image.open(path) as image:
        assert image.format == "PNG", f"{path} is not a PNG"
        return np.asarray(image.convert("RGB"))


def coloured_fraction(pixels: np.ndarray, tolerance: int = 30) -> float:
    """The fraction of pixels that are neither white nor grey: where a figure draws in colour.

    A figure whose curves or images are removed keeps its axes and text (black, grey, white), so
    this drops to about zero; figure tests use it to check that the content is there.
    """
    channels = pixels.astype(int)
    spread = channels.max(axis=-1) - channels.min(axis=-1)
    return float((spread > tolerance).mean())


def wait_until(condition, seconds: float) -> bool:
    """Poll `condition` every 0.2 s for up to `seconds`; whether it became true."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def probe_project(tmp_path: Path, program: str, config_yaml: str) -> Path:
    """A folder holding probe.py and its conf/config.yaml, as a project holds train.py and conf/."""
    root = tmp_path / "project"
    (root / "conf").mkdir(parents=True)
    (root / "conf" / "config.yaml").write_text(config_yaml)
    (root / "probe.py").write_text(program)
    return root
