"""Test a saved model: `python eval.py ckpt_path=outputs/<run>/checkpoints/best.ckpt`."""

import sys

import hydra
from omegaconf import DictConfig

import mlplab.runfiles  # noqa: F401 - registers the run-directory resolvers used by conf/eval.yaml


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> float:
    from mlplab.errors import UserError
    from mlplab.evaluate import run

    try:
        return run(cfg)["test_acc"]
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
