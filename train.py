"""Train one MLP on MNIST: `python train.py [+experiment=NAME] [group=option] [key=value ...]`."""

from mlplab.run.cli import entry, exit_on_stop_signals, output_dir_of, report_errors

# A stop during the seconds of imports and start-up exits with 128 + N, as the run would.
exit_on_stop_signals()

import hydra  # noqa: E402 - after the signal handlers, which must cover its import time
from omegaconf import DictConfig  # noqa: E402

import mlplab.run.records  # noqa: F401,E402 - registers the run-directory resolvers used by conf/config.yaml


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    with report_errors(output_dir_of(cfg)):
        from mlplab.run.config_checks import check_config
        from mlplab.run.training import run

        check_config(cfg)
        return run(cfg)["val_acc_best"]


if __name__ == "__main__":
    entry(main)
