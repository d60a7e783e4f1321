"""The search methods of a sweep file (`method: grid`, `random`, `bayes`): one object each, chosen once
from the file, which the checks and the launcher ask what differs between them.

- grid: every combination of the parameters' points (the first --count), listed up front.
- random: --count seeded draws of Optuna's RandomSampler, listed up front.
- bayes: --count trials in all, each drawn when a slot frees by the sweep's shared Optuna TPE study,
  which learns from the file's metric.

Every method's trials go through the shared Optuna study (shared.py); a listed method enqueues its
trials there, bayes asks TPE for each.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

from mlplab.tools.sweep import rules, search, storage
from mlplab.tools.sweep.shared import SharedTrials, open_trials
from mlplab.errors import SweepError
from mlplab.tools.sweep.trial_commands import Trial, grid_assignments, make_trial
from mlplab.tools.sweep.trial_commands import grid_count_note


class SearchMethod(ABC):
    """What one method checks, which trials it lists, what it composes first and how it opens its trials."""

    name: ClassVar[str]
    needs_metric: ClassVar[bool] = False  # whether it learns from metric: (else a metric is only recorded)

    def check_parameter(self, name: str, spec: dict[str, Any], path: Path | str) -> None:
        """The method's own rule on one parameter, on top of those every method shares."""

    @abstractmethod
    def assignments(self, config: dict[str, Any], count: int | None, seed: int) -> list[dict[str, Any]]:
        """The values of each trial listed up front, after the checks an offline run needs first."""

    def listed_trials(self, config: dict[str, Any], sweep_dir: Path, count: int | None, seed: int) -> list[Trial]:
        """The trials an offline run lists up front (none for a method that draws them one by one)."""
        assignments = self.assignments(config, count, seed)
        return [make_trial(config, sweep_dir, index, assignment) for index, assignment in enumerate(assignments)]

    def trials_to_compose(self, config: dict[str, Any], sweep_dir: Path, listed: list[Trial]) -> list[Trial]:
        """The trials whose configs are composed with Hydra before anything runs."""
        return listed

    def count_note(self, parameters: dict[str, dict[str, Any]], count: int | None) -> str | None:
        """What --count leaves out of the sweep, worth a line before it runs; None when nothing."""
        return None

    def dry_run_header(self, listed: list[Trial], program_root: Path, sweep_dir: Path, count: int | None) -> str:
        """The comment line of --dry-run above the listed trials' command lines."""
        return f"# {len(listed)} {self.name} trials, run in {program_root}, into {sweep_dir}"

    def open_source(self, config: dict[str, Any], sweep_dir: Path, count: int | None, seed: int,
                    listed: list[Trial], storage_url: str | None, stale_after: float) -> SharedTrials:
        """The sweep's shared trials: the listed ones, enqueued once in the study every launcher shares."""
        return open_trials(config, sweep_dir, count, seed, listed, storage_url, stale_after)


class Grid(SearchMethod):
    name = "grid"

    def check_parameter(self, name: str, spec: dict[str, Any], path: Path | str) -> None:
        rules.check_as_sweep_file(path, rules.check_grid_parameter, name, spec)

    def assignments(self, config: dict[str, Any], count: int | None, seed: int) -> list[dict[str, Any]]:
        return grid_assignments(config["parameters"], count)

    def count_note(self, parameters: dict[str, dict[str, Any]], count: int | None) -> str | None:
        return grid_count_note(parameters, count)


class Random(SearchMethod):
    name = "random"

    def assignments(self, config: dict[str, Any], count: int | None, seed: int) -> list[dict[str, Any]]:
        if not count:
            raise SweepError(f"method {self.name} draws trials: say how many with --count, e.g. --count 20")
        return search.random_assignments(config["parameters"], count, seed)


class Bayes(SearchMethod):
    name = "bayes"
    needs_metric = True

    def assignments(self, config: dict[str, Any], count: int | None, seed: int) -> list[dict[str, Any]]:
        """None listed: TPE draws each when a slot frees."""
        if not count:
            raise SweepError(f"method {self.name} draws trials: say how many in all with --count, e.g. --count 20")
        search.metric_key(config["metric"]["name"])  # fail before anything runs
        return []

    def trials_to_compose(self, config: dict[str, Any], sweep_dir: Path, listed: list[Trial]) -> list[Trial]:
        """Every choice and both ends of every range: what TPE may draw."""
        probes = search.probe_assignments(config["parameters"])
        return [make_trial(config, sweep_dir, index, assignment) for index, assignment in enumerate(probes)]

    def dry_run_header(self, listed: list[Trial], program_root: Path, sweep_dir: Path, count: int | None) -> str:
        return (f"# {self.name}: {count} trials in all, drawn one by one by Optuna's TPE (study "
                f"{storage.journal_path(sweep_dir)}), run in {program_root}")

    def open_source(self, config: dict[str, Any], sweep_dir: Path, count: int | None, seed: int,
                    listed: list[Trial], storage_url: str | None, stale_after: float) -> SharedTrials:
        """The sweep's shared TPE study, which draws `count` trials in all."""
        return open_trials(config, sweep_dir, count, seed, None, storage_url, stale_after)


METHODS: dict[str, SearchMethod] = {method.name: method for method in (Grid(), Random(), Bayes())}


def method_of(config: dict[str, Any], path: Path | str = "sweep file") -> SearchMethod:
    """The object for the file's `method:`, or one line naming the methods there are."""
    method = config.get("method")
    if not isinstance(method, str) or method not in METHODS:  # a list or a mapping cannot be looked up
        raise SweepError(f"{path}: method={method!r} is not allowed: one of {', '.join(METHODS)}")
    return METHODS[method]
