"""Before any trial starts: compose each trial's config with Hydra, as its program would.

A value Hydra cannot place (an unknown key, a missing group option, a group that needs `+`) would
otherwise fail trial after trial; here it stops the sweep with one line naming the key and the file.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from pathlib import Path

from mlplab.errors import SweepError
from mlplab.run.config_files import check_group_overrides
from mlplab.run.targets import check_targets

CONFIG_NAME = "config"


def check_trials_compose(conf_dir: Path, sweep_file: Path | str, override_lists: Iterable[list[str]]) -> int:
    """Compose every distinct list of overrides on `conf_dir`; how many were composed."""
    from hydra import compose, initialize_config_dir

    import mlplab.run.records  # noqa: F401 - registers the resolvers conf/config.yaml names

    if not (conf_dir / f"{CONFIG_NAME}.yaml").is_file():
        raise SweepError(f"{sweep_file}: no {conf_dir / CONFIG_NAME}.yaml to compose the trials with: "
                         "pass --program-root, the folder holding the program and its conf/")
    distinct = list(dict.fromkeys(tuple(overrides) for overrides in override_lists))
    with initialize_config_dir(config_dir=str(conf_dir.resolve()), version_base="1.3", job_name="sweep"):
        for overrides in distinct:
            try:
                check_group_overrides(list(overrides), conf_dir.resolve())
                config = compose(config_name=CONFIG_NAME, overrides=list(overrides))
            except Exception as error:  # noqa: BLE001 - Hydra's, OmegaConf's or whatever else it met: no trial can start
                reason = " ".join(str(error).split()) or type(error).__name__
                raise SweepError(f"{sweep_file}: a trial does not compose ({reason}); its overrides: "
                                 f"{shlex.join(overrides)}") from None
            # What a trial would build, held to conf/'s targets before any trial starts.
            check_targets(config, f"{sweep_file}: a trial ({shlex.join(overrides)})", conf_dir.resolve())
    return len(distinct)
