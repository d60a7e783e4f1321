"""Train one MLP on MNIST: `python train.py [+experiment=NAME] [group=option] [key=value ...]`."""

import signal
import sys

# Until the run takes the stop signals over (mlplab.guards), a stop during the seconds of imports
# and start-up exits with 128 + N as the run would, instead of the default kill by the signal.
for _signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(_signum, lambda signum, frame: sys.exit(128 + signum))

import hydra  # noqa: E402 - after the signal handlers, which must cover its import time
from omegaconf import DictConfig  # noqa: E402

import mlplab.runfiles  # noqa: F401,E402 - registers the run-directory resolvers used by conf/config.yaml
from mlplab.cli import entry, report_errors  # noqa: E402


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    with report_errors(cfg.paths.output_dir):
        from mlplab.checks import check_config
        from mlplab.train import run

        check_config(cfg)
        return run(cfg)["val_acc_best"]


if __name__ == "__main__":
    entry(main)
