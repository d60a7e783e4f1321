"""Test a saved model: `python eval.py ckpt_path=outputs/<run>/checkpoints/best.ckpt`."""

from mlplab.run.cli import entry, exit_on_stop_signals, output_dir_of, report_errors

# A stop at any point exits with 128 + N and writes no result (a test set half-seen is none).
exit_on_stop_signals()

import hydra  # noqa: E402 - after the signal handlers, which must cover its import time
from omegaconf import DictConfig  # noqa: E402

import mlplab.run.records  # noqa: F401,E402 - registers the run-directory resolvers used by conf/eval.yaml


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> float:
    with report_errors(output_dir_of(cfg)):
        from mlplab.run.evaluation import run

        return run(cfg)["test_acc"]


if __name__ == "__main__":
    entry(main)
