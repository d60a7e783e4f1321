"""Search with Optuna: wandb's distributions as Optuna's, seeded random draws, and the TPE study of
an offline bayes sweep, stored in the sweep dir so a rerun continues it and parallel slots share it.

Each wandb distribution becomes an Optuna distribution plus the map from Optuna's value to the
value the trial gets: log_uniform's bounds are natural logs, q_* rounds to a multiple of q as wandb
does, normal and log_normal draw a quantile in (0, 1) and map it through the inverse normal CDF,
and categorical with probabilities draws a quantile of the cumulative weights.
"""

from __future__ import annotations

import bisect
import itertools
import math
import warnings
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from statistics import NormalDist
from typing import Any, Callable

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from mlplab.tools.sweep import rules
from mlplab.errors import SweepError

optuna.logging.set_verbosity(optuna.logging.WARNING)  # the launcher prints one line per trial itself

QUANTILE = 1e-6  # normal draws stay within ~4.75 sigma: the inverse CDF of 0 or 1 is infinite
# metric.name in a sweep file -> the key of a trial's metrics.json that holds it.
METRIC_KEYS = {"val/acc": "val_acc_best", "val/acc_best": "val_acc_best", "test/acc": "test_acc",
               "test/loss": "test_loss"}


@dataclass(frozen=True)
class Dimension:
    """One parameter: the Optuna distribution it is drawn from (None: a constant) and the map to its value."""

    distribution: BaseDistribution | None
    to_value: Callable[[Any], Any]

    def probe_values(self) -> list[Any]:
        """Every choice, or both ends of the range: the values to compose before anything runs."""
        if self.distribution is None:
            return [self.to_value(None)]
        if isinstance(self.distribution, CategoricalDistribution):
            return [self.to_value(choice) for choice in self.distribution.choices]
        return [self.to_value(self.distribution.low), self.to_value(self.distribution.high)]


def quantize(value: float, q: float) -> float | int:
    """Round to a multiple of q, as wandb's q_ distributions do, without float noise (0.30000000000000004)."""
    digits = max(0, -Decimal(str(q)).as_tuple().exponent)
    rounded = round(round(value / q) * q, digits)
    return int(rounded) if isinstance(q, int) else rounded


def dimension(spec: dict[str, Any], name: str = "parameter") -> Dimension:
    """The Optuna side of one wandb parameter spec (already checked by spec.validate_parameter), read as
    wandb reads it: the distribution named or inferred, q, mu and sigma defaulted (q: 1.0 gives floats)."""
    spec = rules.read_parameter(name, spec)[1]
    kind = spec["distribution"]
    if kind == "constant":
        return Dimension(None, lambda _: spec["value"])
    if kind == "categorical_w_probabilities":
        values, edges = spec["values"], list(itertools.accumulate(spec["probabilities"]))
        return Dimension(FloatDistribution(0.0, 1.0),
                         lambda u: values[min(bisect.bisect_right(edges, u), len(values) - 1)])
    if kind == "categorical":
        values = spec["values"]
        # Optuna's choices must be None/bool/int/float/str; indices carry anything else (lists, dicts).
        if all(value is None or isinstance(value, (bool, int, float, str)) for value in values):
            return Dimension(CategoricalDistribution(values), lambda value: value)
        return Dimension(CategoricalDistribution(list(range(len(values)))), lambda index: values[index])
    if kind == "int_uniform":
        return Dimension(IntDistribution(spec["min"], spec["max"]), int)
    if kind in ("beta", "q_beta"):
        raise SweepError(f"parameters.{name}: distribution {kind} is not allowed offline: the launcher has no beta "
                         "quantile to draw it from (it needs scipy): run the sweep online, or use uniform")
    base = kind.removeprefix("q_")
    finish: Callable[[float], Any] = (lambda value: quantize(value, spec["q"])) if kind.startswith("q_") else float
    if base == "uniform":
        return Dimension(FloatDistribution(spec["min"], spec["max"]), finish)
    if base == "log_uniform":  # min and max are natural logs
        return Dimension(FloatDistribution(math.exp(spec["min"]), math.exp(spec["max"]), log=True), finish)
    if base == "inv_log_uniform":  # wandb's exp(-uniform(min, max))
        return Dimension(FloatDistribution(math.exp(-spec["max"]), math.exp(-spec["min"]), log=True), finish)
    if base in ("log_uniform_values", "inv_log_uniform_values"):  # 1/x log-uniform is x log-uniform
        return Dimension(FloatDistribution(spec["min"], spec["max"], log=True), finish)
    normal = NormalDist(spec["mu"], spec["sigma"])
    to_normal = (lambda u: normal.inv_cdf(u)) if base == "normal" else (lambda u: math.exp(normal.inv_cdf(u)))
    return Dimension(FloatDistribution(QUANTILE, 1 - QUANTILE), lambda u: finish(to_normal(u)))


def dimensions(parameters: dict[str, dict[str, Any]]) -> dict[str, Dimension]:
    return {name: dimension(spec, name) for name, spec in parameters.items()}


def assignment_of(space: dict[str, Dimension], params: dict[str, Any]) -> dict[str, Any]:
    """The trial's values, in file order, from an Optuna trial's params."""
    return {name: dim.to_value(params.get(name)) for name, dim in space.items()}


def ask(study: optuna.Study, space: dict[str, Dimension]) -> tuple[optuna.Trial, dict[str, Any]]:
    trial = study.ask({name: dim.distribution for name, dim in space.items() if dim.distribution is not None})
    return trial, assignment_of(space, trial.params)


def random_assignments(parameters: dict[str, dict[str, Any]], count: int, seed: int) -> list[dict[str, Any]]:
    """`count` draws of Optuna's RandomSampler; trial by trial, so a larger count extends the list."""
    space = dimensions(parameters)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return [ask(study, space)[1] for _ in range(count)]


def probe_assignments(parameters: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The fewest assignments that between them use every choice and both ends of every range."""
    probes = {name: dim.probe_values() for name, dim in dimensions(parameters).items()}
    rows = max(len(values) for values in probes.values())
    return [{name: values[row % len(values)] for name, values in probes.items()} for row in range(rows)]


def metric_key(metric_name: str) -> str:
    """The metrics.json key that holds the sweep's metric, or one line saying which names work."""
    known = sorted({*METRIC_KEYS, *METRIC_KEYS.values()})
    if metric_name in METRIC_KEYS.values():
        return metric_name
    if metric_name in METRIC_KEYS:
        return METRIC_KEYS[metric_name]
    raise SweepError(f"metric.name={metric_name!r} is not in a trial's metrics.json, so Optuna cannot learn from it: "
                     f"use one of {', '.join(known)} (val/acc is the best epoch's, val_acc_best)")


# ---------------------------------------------------------------------------------------------
# The study of an offline bayes sweep


def tpe_sampler(seed: int) -> optuna.samplers.TPESampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # constant_liar
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def reseed(study: optuna.Study, seed: int) -> None:
    """A TPE sampler seeded by the study's size: one seeded as for the first trial would replay the first
    draws, so a rerun, and each launcher of the sweep, draws points of its own."""
    study.sampler = tpe_sampler(seed + len(study.trials))


def open_study(sweep_dir: Path, goal: str, seed: int, storage: optuna.storages.BaseStorage | None = None) -> optuna.Study:
    """The sweep's study, named after the sweep dir, in `storage` (default <sweep dir>/optuna.journal):
    created by the first launcher, loaded by a rerun and by every other launcher on the sweep.

    constant_liar: while slots run trials in parallel, TPE counts the running ones as bad results,
    so two slots do not ask for the same point.
    """
    from mlplab.tools.sweep.storage import open_storage

    storage = storage or open_storage(sweep_dir, None)
    study = optuna.create_study(storage=storage, sampler=tpe_sampler(seed), study_name=sweep_dir.name,
                                direction=goal, load_if_exists=True)
    if study.trials:  # a rerun
        reseed(study, seed)
    return study


def finished_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))


def unfinished_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Trials asked for but never told: a launcher was stopped or killed while they ran."""
    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
