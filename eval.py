"""Test a saved model: `python eval.py ckpt_path=outputs/<run>/checkpoints/best.ckpt`."""

import hydra
from omegaconf import DictConfig

import mlplab.runfiles  # noqa: F401 - registers the run-directory resolvers used by conf/eval.yaml
from mlplab.cli import entry, report_errors


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> float:
    with report_errors(cfg.paths.output_dir):
        from mlplab.evaluate import run

        return run(cfg)["test_acc"]


if __name__ == "__main__":
    entry(main)
