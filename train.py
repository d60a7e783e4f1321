"""Train one MLP on MNIST: `python train.py [+experiment=NAME] [group=option] [key=value ...]`."""

import signal
import sys

# Until the run takes the stop signals over (mlplab.guards), a stop during the seconds of imports
# and start-up exits with 128 + N as the run would, instead of the default kill by the signal.
for _signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(_signum, lambda signum, frame: sys.exit(128 + signum))

import hydra  # noqa: E402 - after the signal handlers, which must cover its import time
from omegaconf import DictConfig  # noqa: E402

import mlplab.runfiles  # noqa: F401 - registers the run-directory resolvers used by conf/config.yaml


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from mlplab.checks import check_config
    from mlplab.errors import UserError

    try:
        check_config(cfg)
        from mlplab.train import run

        metrics = run(cfg)
    except UserError as error:
        from mlplab.runfiles import record_refusal

        record_refusal(cfg.paths.output_dir, error)
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except OSError as error:  # a full disk or a vanished folder while writing checkpoints or logs
        print(f"error: {error.strerror or error}: {error.filename or cfg.paths.output_dir}; free space there "
              "or point paths.output_root=... at another folder", file=sys.stderr)
        sys.exit(1)
    return metrics["val_acc_best"]


if __name__ == "__main__":
    main()
