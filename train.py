"""Train one MLP on MNIST: `python train.py [+experiment=NAME] [group=option] [key=value ...]`."""

import sys

import hydra
from omegaconf import DictConfig

import mlplab.rundir  # noqa: F401 - registers the run-directory resolvers used by conf/config.yaml


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from mlplab.checks import check_config
    from mlplab.errors import UserError

    try:
        check_config(cfg)
        from mlplab.train import run

        metrics = run(cfg)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    return metrics["val_acc_best"]


if __name__ == "__main__":
    main()
