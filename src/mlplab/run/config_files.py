"""Config folders from elsewhere (`--config-path`, `--config-dir`: a run's saved `.hydra/`, a
colleague's folder) and command-line overrides of Hydra's machinery (`+hydra.callbacks...`). Hydra builds what their `hydra:` settings name (callbacks, logging handlers,
launchers) before any code of ours runs, so the entry points compose such a folder first, as Hydra
will, and hold the result to what this project and Hydra ship:

- every `_target_` of the run's own groups to conf/'s (mlplab.run.targets), interpolations included;
- Hydra's own targets to Hydra's and its installed plugins' classes;
- its logging to one of the logging options Hydra ships, unchanged (a handler's `class` and
  filename could otherwise create or truncate any file);
- no environment variables set (`hydra.job.env_set` could load code), and the run-directory guard
  kept: a folder from elsewhere cannot turn off one owner per run directory.

Following Hydra's composition (defaults lists, search paths, `# @package` headers, symlinks) is
Hydra's own work here, so no trick of layout hides a file from the check.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf, open_dict, read_write

from mlplab.errors import ConfigError

FOLDER_FLAGS = {"--config-path": "path", "-cp": "path", "--config-dir": "dir", "-cd": "dir"}
NAME_FLAGS = ("--config-name", "-cn")
HYDRA_MODULES = ("hydra._internal.", "hydra_plugins.")
GUARD = "mlplab.run.directory.RunDirectoryGuard"
LOGGING_GROUPS = ("job_logging", "hydra_logging")


# Hydra's long options: its argument parser takes any unambiguous prefix of them (--config-d=...).
HYDRA_LONG_OPTIONS = ("--help", "--hydra-help", "--version", "--cfg", "--resolve", "--package", "--run", "--multirun",
                      "--shell-completion", "--config-path", "--config-name", "--config-dir", "--experimental-rerun",
                      "--info")
REFUSED_FLAGS = ("--experimental-rerun",)


def canonical_flag(flag: str) -> str:
    """The long option a (possibly shortened) flag means, as Hydra's parser reads it."""
    if not flag.startswith("--") or flag in HYDRA_LONG_OPTIONS:
        return flag
    matches = [option for option in HYDRA_LONG_OPTIONS if option.startswith(flag)]
    return matches[0] if len(matches) == 1 else flag


def flag_values(argv: list[str], flags: tuple[str, ...] | dict[str, str]) -> list[tuple[str, str]]:
    """(flag, value) of each of `flags` on the command line, as `--flag value` or `--flag=value`."""
    found = []
    for index, argument in enumerate(argv):
        flag, equals, value = argument.partition("=")
        flag = canonical_flag(flag)
        if flag in flags:
            value = value if equals else (argv[index + 1] if index + 1 < len(argv) else "")
            found.append((flag, value))
    return found


# Hydra settings that only place or name a run: an override of one exactly needs no composition
# to check (the launcher gives every trial a hydra.run.dir).
PLACING_KEYS = ("hydra.run.dir", "hydra.sweep.dir", "hydra.sweep.subdir", "hydra.job.chdir", "hydra.job.name",
                "hydra.verbose", "hydra.output_subdir")


def sets_hydra(override: str) -> bool:
    """Whether an override sets Hydra's machinery (`hydra.x=`, `++hydra={...}`, `hydra/x=`), not
    only where a run goes."""
    key = override.partition("=")[0].lstrip("+~").strip()
    return (key == "hydra" or key.startswith(("hydra.", "hydra/"))) and key not in PLACING_KEYS


def command_overrides(argv: list[str]) -> list[str]:
    """The overrides of a command line: what is neither a flag nor a flag's value."""
    overrides, skip = [], False
    for argument in argv:
        if skip:
            skip = False
        elif argument.startswith("-"):
            skip = "=" not in argument and canonical_flag(argument) in (
                *FOLDER_FLAGS, *NAME_FLAGS, "--cfg", "-c", "--package", "-p", "--info", "-i", "--experimental-rerun")
        else:
            overrides.append(argument)
    return overrides


def foreign_source(argv: list[str], script: Path) -> tuple[Path, str, list[str]] | None:
    """(primary config folder, config name, extra search path) when the command line brings config
    files from elsewhere; None when the run composes conf/ alone."""
    from mlplab.run.records import conf_dir

    folders = flag_values(argv, FOLDER_FLAGS)
    if not folders:
        return None
    primary, search = conf_dir(), []
    for flag, value in folders:
        if FOLDER_FLAGS[flag] == "path":  # relative to the entry script, as Hydra reads it
            primary = Path(value) if Path(value).is_absolute() else script.parent / value
        else:
            search.append(f"file://{Path(value).resolve()}")
    names = flag_values(argv, NAME_FLAGS)
    return primary.resolve(), (names[-1][1] if names else "config"), search


def compose_hydra(folder: Path, name: str, overrides: list[str]) -> Any:
    from hydra import compose, initialize_config_dir

    import mlplab.run.records  # noqa: F401 - the resolvers conf/config.yaml names

    with initialize_config_dir(config_dir=str(folder), version_base="1.3", job_name="check"):
        return compose(config_name=name, overrides=overrides, return_hydra_config=True)


@functools.cache
def shipped_logging(group: str) -> tuple[Any, ...]:
    """Each option Hydra ships for hydra/<group> (default, disabled, none, stdout...), composed."""
    import hydra

    from mlplab.run.records import conf_dir

    options = sorted(path.stem for path in (Path(hydra.__file__).parent / "conf" / "hydra" / group).glob("*.yaml"))
    return tuple(OmegaConf.to_container(compose_hydra(conf_dir(), "config", [f"hydra/{group}={option}"]).hydra[group],
                                        resolve=False) for option in options)


def check_hydra_settings(settings: Any, source: str) -> None:
    """Refuse Hydra settings that would build or run what neither Hydra nor this project ships."""
    from mlplab.run.targets import check_interpolations, targets_in

    check_interpolations(settings, source, prefix="hydra")
    for key, target in targets_in(settings, "hydra"):
        if key == "hydra.callbacks.run_directory_guard._target_" and target == GUARD:
            continue
        if not (isinstance(target, str) and target.startswith(HYDRA_MODULES)):
            raise ConfigError(f"{source}: {key}={target!r} is refused: Hydra's settings may only name Hydra's own "
                              "classes or its installed plugins'.")
    for group in LOGGING_GROUPS:
        if OmegaConf.to_container(settings[group], resolve=False) not in shipped_logging(group):
            raise ConfigError(f"{source}: hydra.{group} is refused: it is none of the logging options Hydra ships "
                              f"(its handlers could write any file); choose one with hydra/{group}=default|stdout|...")
    if settings.job.env_set:
        raise ConfigError(f"{source}: hydra.job.env_set={OmegaConf.to_container(settings.job.env_set)} is refused: "
                          "environment variables from a config file could load code; set them in the shell.")
    guard = (settings.get("callbacks") or {}).get("run_directory_guard")
    if "run_directory_guard" in (settings.get("callbacks") or {}) and (guard is None or guard.get("_target_") != GUARD):
        raise ConfigError(f"{source}: hydra.callbacks.run_directory_guard is refused: a config file may not replace "
                          "or remove the guard that gives each run directory one owner.")


def _group_values(value: Any) -> list[Any]:
    """An override's value as the list of option names it chooses (a list, a sweep's choices, one)."""
    if isinstance(value, list):
        return value
    return list(value.list) if hasattr(value, "list") else [value]


def check_group_overrides(argv: list[str], conf: Path) -> None:
    """A config group takes option names: `fastpath=[1]` or `model=null` would otherwise reach Hydra's
    defaults list and end in a line about ints or NoneType."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from mlplab.run.records import option_names

    parser = OverridesParser.create()
    for text in command_overrides(argv):
        try:
            override = parser.parse_override(text)
        except Exception:  # noqa: BLE001 - Hydra itself says what is wrong with this one
            continue
        group = override.key_or_group
        # `++` forces a value in; a folder with no option files of its own (conf/hydra) is no group.
        options = option_names(group, conf)
        if override.is_delete() or override.is_force_add() or not options:
            continue
        if all(isinstance(value, str) for value in _group_values(override.value())):
            continue
        raise ConfigError(f"{text} is refused: the {group} group takes an option's name (one of {', '.join(options)}), "
                          f"e.g. {group}={options[0] if options else 'NAME'}.")


def check_foreign_configs(argv: list[str], script: Path) -> list[str]:
    """Check config folders from elsewhere before Hydra builds anything; the command line to run
    (with the run-directory guard added where the folder's config lacks one)."""
    from mlplab.run.records import conf_dir
    from mlplab.run.targets import check_targets

    check_group_overrides(argv, conf_dir())
    for argument in argv:
        if canonical_flag(argument.partition("=")[0]) in REFUSED_FLAGS:
            raise ConfigError(f"{argument.partition('=')[0]} is refused: Hydra would unpickle the file it names, which "
                              "can run any code; rerun from the run's saved config instead: --config-path "
                              "<run>/.hydra --config-name config")
    source = foreign_source(argv, script)
    if source is None:
        if not any(sets_hydra(override) for override in command_overrides(argv)):
            return argv
        command_line = True
        source = conf_dir(), (flag_values(argv, NAME_FLAGS) or [("", "config")])[-1][1], []
    else:
        command_line = False
    folder, name, search = source
    from mlplab.run.overrides import quoted_value

    overrides = [f"hydra.searchpath=[{','.join(map(quoted_value, search))}]"] if search else []
    label = "the command line's hydra overrides" if command_line else str(folder / f"{name}.yaml")
    try:  # with the command line's overrides (they may pick options of the folder), else without
        composed = compose_hydra(folder, name, [*overrides, *command_overrides(argv)])
    except Exception:  # noqa: BLE001 - e.g. multirun's a,b lists, which compose only as a sweep
        try:
            composed = compose_hydra(folder, name, overrides)
        except Exception as error:  # noqa: BLE001 - Hydra says why it cannot compose; the run would fail alike
            raise ConfigError(f"{label}: cannot be composed ({' '.join(str(error).split())[:300]})") from None
    settings = composed.hydra
    with read_write(composed), open_dict(composed):
        del composed["hydra"]
    check_targets(composed, label)
    check_hydra_settings(settings, label)
    if "run_directory_guard" not in (settings.get("callbacks") or {}):
        if folder == conf_dir().resolve():  # conf/ has the guard: an override took it away
            raise ConfigError("~hydra.callbacks.run_directory_guard is refused: the guard gives each run directory "
                              "one owner and keeps runs from mixing; it cannot be removed.")
        # A run's saved config has no hydra: section: the rerun still gets one owner per folder.
        return [*argv, f"+hydra.callbacks.run_directory_guard._target_={GUARD}"]
    return argv


def checked_argv() -> list[str]:
    """sys.argv[1:] after the check (see check_foreign_configs)."""
    return check_foreign_configs(sys.argv[1:], Path(sys.argv[0]).resolve())
