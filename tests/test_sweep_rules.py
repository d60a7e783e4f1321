"""The sweep file's rules are wandb's: the launcher refuses what `wandb.sweep` or wandb's sweep engine
refuses and lists a grid's points as wandb does (src/mlplab/tools/sweep/rules.py).

CASES is the table: each case, what wandb does with it and what the launcher does. The fast tests
hold the launcher to the table; the slow ones hold the table, generated cases and every file in
sweeps/ to the real engine, the `sweeps` package, run in a venv of its own (it pins numpy < 2, which
this project's pandas refuses). `wandb.sweep`'s own step before upload is wandb's function, from
this venv's wandb.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from helpers import REPO
from mlplab.tools.sweep import rules, search
from mlplab.errors import SweepError
from mlplab.tools.sweep.spec import validate_sweep
from mlplab.tools.sweep.trial_commands import grid_assignments

ACCEPTED, REFUSED = "accepted", "refused"
BASE = {"program": "train.py", "metric": {"name": "val/acc", "goal": "maximize"},
        "command": ["${env}", "${interpreter}", "${program}", "${args_no_hyphens}"]}
GRID_LIMIT = 500  # grid points asked of the engine per case


def sweep(method: str, parameters: dict[str, Any], **keys: Any) -> dict[str, Any]:
    return {**BASE, "method": method, "parameters": parameters, **keys}


# (id, sweep file, what wandb does, what the launcher does: ACCEPTED, or a piece of its one-line refusal).
# Where the two differ, the launcher's refusal says why (a rule of its own, not wandb's).
CASES = [
    # The cases
    ("mu-sigma-without-distribution", sweep("random", {"x": {"mu": 0, "sigma": 1}}), REFUSED,
     "parameters.x: mu, sigma without a distribution is not allowed"),
    ("extra-key-under-metric", sweep("random", {"x": {"values": [1]}}, metric={"name": "val/acc", "extra": 1}),
     REFUSED, "metric.extra is not allowed"),
    ("unknown-top-level-key", sweep("random", {"x": {"values": [1]}}, epochs=3), REFUSED, "epochs is not allowed"),
    ("categorical-with-probabilities",
     sweep("random", {"x": {"distribution": "categorical", "values": [1, 2], "probabilities": [0.5, 0.5]}}),
     REFUSED, "x.probabilities is not allowed with distribution categorical"),
    ("min-int-max-float-without-distribution", sweep("random", {"x": {"min": 1, "max": 2.0}}), REFUSED,
     "min=1, max=2.0 is not allowed without a distribution"),
    ("min-string-without-distribution", sweep("random", {"x": {"min": "1e-5", "max": 1.0}}), REFUSED,
     "write 1.0e-5"),
    ("grid-with-probabilities", sweep("grid", {"x": {"values": [1, 2], "probabilities": [0.5, 0.5]}}), REFUSED,
     "not values with probabilities"),
    ("q-uniform-without-q-random", sweep("random", {"x": {"distribution": "q_uniform", "min": 0, "max": 4}}),
     ACCEPTED, ACCEPTED),
    ("q-uniform-without-q-grid", sweep("grid", {"x": {"distribution": "q_uniform", "min": 0, "max": 4}}),
     ACCEPTED, ACCEPTED),
    ("grid-1-and-1.0", sweep("grid", {"x": {"values": [1, 1.0, 2]}}), ACCEPTED, ACCEPTED),
    # Around them
    ("values-with-probabilities", sweep("random", {"x": {"values": ["a", "b"], "probabilities": [0.25, 0.75]}}),
     ACCEPTED, ACCEPTED),
    ("categorical-w-probabilities-named", sweep("random", {"x": {"distribution": "categorical_w_probabilities",
                                                                  "values": [1, 2], "probabilities": [0.5, 0.5]}}),
     ACCEPTED, ACCEPTED),
    ("probabilities-not-summing-to-1", sweep("random", {"x": {"values": [1, 2], "probabilities": [0.5, 0.4]}}),
     REFUSED, "x.probabilities=[0.5, 0.4] is not allowed"),
    ("probabilities-too-few", sweep("random", {"x": {"values": [1, 2, 3], "probabilities": [0.5, 0.5]}}),
     REFUSED, "x.probabilities=[0.5, 0.5] is not allowed"),
    ("min-max-ints-random", sweep("random", {"x": {"min": 1, "max": 5}}), ACCEPTED, ACCEPTED),
    ("min-max-floats-random", sweep("random", {"x": {"min": 0.5, "max": 5.0}}), ACCEPTED, ACCEPTED),
    ("min-max-bools", sweep("random", {"x": {"min": False, "max": True}}), REFUSED, "x.min=False is not allowed"),
    ("min-max-ints-grid", sweep("grid", {"x": {"min": 1, "max": 3}}), ACCEPTED, ACCEPTED),
    ("int-uniform-grid", sweep("grid", {"a": {"distribution": "int_uniform", "min": -1, "max": 1},
                                        "b": {"values": ["x", "y"]}}), ACCEPTED, ACCEPTED),
    ("q-uniform-float-q-grid", sweep("grid", {"x": {"distribution": "q_uniform", "min": 0.1, "max": 1.0, "q": 0.2}}),
     ACCEPTED, ACCEPTED),
    ("q-uniform-int-q-random", sweep("random", {"x": {"distribution": "q_uniform", "min": 0, "max": 10, "q": 2}}),
     ACCEPTED, ACCEPTED),
    ("uniform-in-grid", sweep("grid", {"x": {"distribution": "uniform", "min": 0.0, "max": 1.0}}), REFUSED,
     "not distribution uniform"),
    ("int-uniform-float-bounds", sweep("random", {"x": {"distribution": "int_uniform", "min": 1.0, "max": 3.0}}),
     REFUSED, "x.min=1.0 is not allowed"),
    ("min-not-below-max", sweep("random", {"x": {"min": 2.0, "max": 2.0}}), REFUSED, "min < max"),
    ("uniform-with-q", sweep("random", {"x": {"distribution": "uniform", "min": 0, "max": 1, "q": 2}}), REFUSED,
     "x.q is not allowed with distribution uniform"),
    ("deprecated-log-uniform", sweep("random", {"x": {"distribution": "log_uniform", "min": -5, "max": 0}}),
     REFUSED, "use log_uniform_values"),
    ("log-uniform-values-min-0", sweep("random", {"x": {"distribution": "log_uniform_values", "min": 0, "max": 1}}),
     REFUSED, "x.min=0 is not allowed"),
    ("inv-log-uniform-values", sweep("random", {"x": {"distribution": "inv_log_uniform_values", "min": 0.01,
                                                      "max": 1.0}}), ACCEPTED, ACCEPTED),
    ("normal-defaults", sweep("random", {"x": {"distribution": "normal"}}), ACCEPTED, ACCEPTED),
    ("q-normal-int-q", sweep("random", {"x": {"distribution": "q_normal", "mu": 10, "sigma": 3, "q": 1}}),
     ACCEPTED, ACCEPTED),
    ("q-log-normal-defaults", sweep("random", {"x": {"distribution": "q_log_normal"}}), ACCEPTED, ACCEPTED),
    ("unknown-distribution", sweep("random", {"x": {"distribution": "gaussian", "mu": 0}}), REFUSED,
     "x.distribution='gaussian' is not allowed"),
    ("empty-values", sweep("grid", {"x": {"values": []}}), REFUSED, "x.values=[] is not allowed"),
    ("value-and-values", sweep("grid", {"x": {"value": 1, "values": [1]}}), REFUSED, "is not allowed with"),
    ("dict-values-grid", sweep("grid", {"x": {"values": [{"a": 1, "b": 2}, {"b": 2, "a": 1}, {"a": 1.0, "b": 2}]}}),
     ACCEPTED, ACCEPTED),
    ("date-value", sweep("grid", {"x": {"values": [datetime.date(2024, 1, 1)]}}), REFUSED, "quote it"),
    ("metric-goal", sweep("random", {"x": {"values": [1]}}, metric={"name": "val/acc", "goal": "max"}), REFUSED,
     "metric.goal='max' is not allowed"),
    ("run-cap-0", sweep("random", {"x": {"values": [1]}}, run_cap=0), REFUSED, "run_cap=0 is not allowed"),
    ("known-top-level-keys", sweep("random", {"x": {"values": [1]}}, name="n", description="d", project="p",
                                   run_cap=3, early_terminate={"type": "hyperband", "min_iter": 2}), ACCEPTED, ACCEPTED),
    ("metric-and-metrics", sweep("random", {"x": {"values": [1]}}, metrics=[{"name": "a"}, {"name": "b"}]),
     REFUSED, "metric and metrics are not allowed together"),
    ("scheduler-engine-optuna-with-grid", sweep("grid", {"x": {"values": [1]}}, scheduler={"engine": "optuna"}),
     REFUSED, "method='grid' is not allowed with scheduler.engine='optuna'"),
    ("bayes", sweep("bayes", {"x": {"distribution": "log_uniform_values", "min": 1.0e-4, "max": 1.0e-1}}),
     ACCEPTED, ACCEPTED),
    # The launcher's own rules: wandb takes these; its draws are then nan or inf, or Hydra cannot read them.
    ("normal-sigma-0", sweep("random", {"x": {"distribution": "normal", "sigma": 0}}), ACCEPTED,
     "x.sigma=0 is not allowed: a number > 0 (wandb's schema takes 0, then draws nan)"),
    ("infinite-max", sweep("random", {"x": {"min": 0.0, "max": math.inf}}), ACCEPTED,
     "x.max=inf is not allowed: a finite number"),
    ("nan-min", sweep("random", {"x": {"min": math.nan, "max": 1.0}}), ACCEPTED, "x.min=nan is not allowed"),
    ("nested-parameters", sweep("random", {"l2": {"parameters": {"weight": {"values": [0.1]}}}}), ACCEPTED,
     "nested parameters become one dict-valued argument"),
    ("method-custom", sweep("custom", {"x": {"values": [1]}}), ACCEPTED, "method='custom' is not allowed"),
]
CASE_IDS = [case[0] for case in CASES]


def our_outcome(config: dict[str, Any]) -> str:
    try:
        validate_sweep(config)
    except SweepError as error:
        return str(error)
    return ACCEPTED


@pytest.mark.parametrize(("config", "ours"), [case[1::2] for case in CASES], ids=CASE_IDS)
def test_the_launcher_keeps_the_table(config, ours):
    outcome = our_outcome(config)
    if ours == ACCEPTED:
        assert outcome == ACCEPTED
    else:
        assert ours in outcome and "\n" not in outcome, outcome


def test_q_uniform_without_q_gives_floats_as_wandbs_q_of_1_0_does():
    spec = {"distribution": "q_uniform", "min": 0, "max": 4}
    draws = [draw["x"] for draw in search.random_assignments({"x": spec}, 200, seed=0)]
    assert {type(value) for value in draws} == {float} and set(draws) == {0.0, 1.0, 2.0, 3.0, 4.0}
    assert grid_assignments({"x": spec}) == [{"x": 0.0}, {"x": 1.0}, {"x": 2.0}, {"x": 3.0}]  # arange: max left out
    integers = [draw["x"] for draw in search.random_assignments({"x": {**spec, "q": 2}}, 100, seed=0)]
    assert {type(value) for value in integers} == {int}


def test_a_grid_lists_values_wandb_hashes_alike_once():
    assert grid_assignments({"x": {"values": [1, 1.0, 2]}}) == [{"x": 1.0}, {"x": 2}]  # the last one's value
    assert grid_assignments({"x": {"values": [True, 1, "1"]}}) == [{"x": True}, {"x": 1}, {"x": "1"}]
    assert grid_assignments({"x": {"values": [{"a": 1, "b": 2}, {"b": 2, "a": 1}]}}) == [{"x": {"b": 2, "a": 1}}]


def test_a_grid_lists_ranges_and_refuses_one_too_large_to_list_in_one_line():
    assert grid_assignments({"a": {"min": 1, "max": 2}, "b": {"values": ["x", "y"]}}) == [
        {"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "x"}, {"a": 2, "b": "y"}]
    with pytest.raises(SweepError, match=r"parameters.a: min=0, max=1000000000 gives the grid 1000000001 points"):
        grid_assignments({"a": {"min": 0, "max": 10 ** 9}}, count=3)


def test_beta_is_wandbs_but_not_drawn_offline_and_says_so():
    parameters = {"x": {"distribution": "beta", "a": 2, "b": 5}}
    validate_sweep(sweep("random", parameters))  # online, wandb draws it
    with pytest.raises(SweepError, match="distribution beta is not allowed offline"):
        search.random_assignments(parameters, 3, seed=0)


# ---------------------------------------------------------------------------------------------
# The real engine, in a venv of its own


# Runs in the venv: one JSON request a line, one JSON answer a line. Python's and numpy's random are
# seeded so that the engine's draws are the same every run.
ORACLE = r"""
import json, pathlib, random, sys, warnings
warnings.simplefilter("ignore")
import numpy
import sweeps
from sweeps import SweepConfig
from sweeps.grid_search import grid_search_next_runs
from sweeps.random_search import random_search_next_runs

for line in sys.stdin:
    request = json.loads(line)
    if "schema" in request:
        answer = {"schema": (pathlib.Path(sweeps.__file__).parent / "config" / "schema.json").read_text()}
    else:
        config, answer = request["config"], {"refused": None, "runs": []}
        random.seed(0)
        numpy.random.seed(0)
        try:
            SweepConfig(config)
            if config["method"] == "grid":
                runs = grid_search_next_runs([], config, n=request["limit"])
            elif config["method"] == "random":
                runs = random_search_next_runs(config, n=request["draws"])
            else:
                runs = []
            answer["runs"] = [{name: value["value"] for name, value in run.config.items()} for run in runs if run]
        except Exception as error:  # the engine's refusals: jsonschema's ValidationError, ValueError, ...
            answer["refused"] = f"{type(error).__name__}: {error}"
    print(json.dumps(answer, default=lambda value: value.item()), flush=True)
"""


class Engine:
    """The `sweeps` package behind a pipe, plus `wandb.sweep`'s own step before upload."""

    def __init__(self, python: Path, log: Path):
        self.log = log.open("w")
        self.process = subprocess.Popen([str(python), "-c", ORACLE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self.log, text=True)

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, f"the sweeps engine died: see {self.log.name}"
        return json.loads(line)

    def outcome(self, config: dict[str, Any], draws: int = 0) -> tuple[str, list[dict[str, Any]]]:
        """REFUSED or ACCEPTED, and the runs a grid lists (or `draws` random draws)."""
        # wandb's private step, as `wandb.sweep` takes it: a bare min/max pair named, then JSON.
        from wandb.apis.public.sweeps import _validate_config_and_fill_distribution

        try:
            uploaded = json.loads(json.dumps(_validate_config_and_fill_distribution(config)))
        except (ValueError, TypeError):
            return REFUSED, []
        answer = self.ask({"config": uploaded, "limit": GRID_LIMIT, "draws": draws})
        return (REFUSED if answer["refused"] else ACCEPTED), answer["runs"]

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)
        self.log.close()


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> Engine:
    """sweeps==rules.SWEEPS_VERSION from PyPI in a new venv; under CI a failed install fails the test."""
    venv = tmp_path_factory.mktemp("sweeps-venv")
    python = venv / "bin" / "python"
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=300)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        f"sweeps=={rules.SWEEPS_VERSION}"], check=True, capture_output=True, text=True, timeout=900)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        output = error.stderr.decode() if isinstance(error.stderr, bytes) else error.stderr or ""
        message = (f"cannot install sweeps=={rules.SWEEPS_VERSION} in a venv of its own "
                   f"({(output.strip().splitlines() or [str(error)])[-1]}): PyPI must be reachable")
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    oracle = Engine(python, venv / "oracle.log")
    yield oracle
    oracle.close()


def canonical(runs: list[dict[str, Any]]) -> list[str]:
    """Each run as JSON, keys sorted: 1 and 1.0, True and 1 stay apart."""
    return [json.dumps(run, sort_keys=True) for run in runs]


def assert_same_draws(ours: list[Any], theirs: list[Any], where: str) -> None:
    """The same types, and for numbers the same 10th, 50th and 90th percentiles within a fifth of their spread."""
    assert {type(value) for value in ours} == {type(value) for value in theirs}, where
    if not all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in theirs):
        assert set(map(json.dumps, ours)) == set(map(json.dumps, theirs)), where
        return
    ours, theirs = sorted(ours), sorted(theirs)
    quantiles = [(sample[len(sample) // 10], sample[len(sample) // 2], sample[9 * len(sample) // 10])
                 for sample in (ours, theirs)]
    spread = max(quantiles[1][2] - quantiles[1][0], 1e-9)
    assert all(abs(mine - real) <= spread / 5 for mine, real in zip(*quantiles)), (where, quantiles)


@pytest.mark.slow
def test_the_schema_file_is_the_engines_own(engine):
    assert rules.SCHEMA_FILE.read_text() == engine.ask({"schema": True})["schema"]


@pytest.mark.slow
@pytest.mark.parametrize(("config", "expected"), [case[1:3] for case in CASES], ids=CASE_IDS)
def test_the_table_is_what_wandb_does(engine, config, expected):
    assert engine.outcome(config)[0] == expected


@pytest.mark.slow
@pytest.mark.parametrize("config", [case[1] for case in CASES if case[2] == case[3] == ACCEPTED],
                         ids=[case[0] for case in CASES if case[2] == case[3] == ACCEPTED])
def test_an_accepted_case_expands_as_wandb_expands_it(engine, config):
    """Grids: the same points in the same order (names here are sorted, the order wandb lists them in);
    random: draws of the same types and spread."""
    if config["method"] == "grid":
        assert canonical(grid_assignments(config["parameters"])) == canonical(engine.outcome(config)[1])
    elif config["method"] == "random":
        theirs = engine.outcome(config, draws=1000)[1]
        ours = search.random_assignments(config["parameters"], 1000, seed=0)
        for name in config["parameters"]:
            assert_same_draws([draw[name] for draw in ours], [draw[name] for draw in theirs], name)


@pytest.mark.slow
@pytest.mark.parametrize("path", sorted((REPO / "sweeps").glob("*.yaml")), ids=lambda path: path.stem)
def test_every_sweep_file_is_accepted_by_wandb_and_its_grid_is_wandbs(engine, path):
    config = yaml.safe_load(path.read_text())
    outcome, runs = engine.outcome(config)
    assert outcome == ACCEPTED
    if config["method"] == "grid":  # the file's order is ours; wandb's is the sorted names'
        assert sorted(canonical(grid_assignments(config["parameters"]))) == sorted(canonical(runs))


# Generated parameters: near-valid ones (a distribution with some of its keys, maybe one more, numbers
# of both kinds and a few hostile values) and bare ones without a distribution.
DISTRIBUTIONS = {"constant": ["value"], "categorical": ["values"], "categorical_w_probabilities": ["values",
                 "probabilities"], "int_uniform": ["min", "max"], "uniform": ["min", "max"],
                 "q_uniform": ["min", "max", "q"], "log_uniform_values": ["min", "max"],
                 "q_log_uniform_values": ["min", "max", "q"], "inv_log_uniform_values": ["min", "max"],
                 "log_uniform": ["min", "max"], "normal": ["mu", "sigma"], "q_normal": ["mu", "sigma", "q"],
                 "log_normal": ["mu", "sigma"], "q_log_normal": ["mu", "sigma", "q"], "beta": ["a", "b"]}
KEYS = sorted({key for keys in DISTRIBUTIONS.values() for key in keys})
numbers = st.one_of(st.integers(-3, 6), st.sampled_from([-1.5, 0.0, 0.25, 1.0, 2.0, 3.5, 1.0e-3]))
hostile = st.sampled_from([True, None, "1e-5", "a", math.inf, [1]])
scalars = st.one_of(numbers, numbers, numbers, numbers, numbers, numbers, hostile)
values = st.lists(st.one_of(numbers, st.booleans(), st.sampled_from(["a", "b"])), max_size=4)


# A grid takes only these (and bare values or min/max): half its cases are drawn from them.
GRID_DISTRIBUTIONS = ["constant", "categorical", "int_uniform", "q_uniform", None]


@st.composite
def parameter_specs(draw, method: str = "random") -> dict[str, Any]:
    choices = [*DISTRIBUTIONS, None, None, "bogus"]
    if method == "grid" and draw(st.booleans()):
        choices = GRID_DISTRIBUTIONS
    distribution = draw(st.sampled_from(choices))
    keys = DISTRIBUTIONS.get(distribution) or draw(st.lists(st.sampled_from(["value", "values", "probabilities",
                                                                               "min", "max", "mu", "sigma"]),
                                                            min_size=1, max_size=3, unique=True))
    keys = [key for key in keys if draw(st.integers(0, 7))]  # now and then a key left out
    keys += [draw(st.sampled_from(KEYS))] if draw(st.integers(0, 3)) == 0 else []  # or one too many
    spec: dict[str, Any] = {} if distribution is None else {"distribution": distribution}
    for key in keys:
        if key == "values":
            spec[key] = draw(values)
        elif key == "probabilities":
            size = len(spec.get("values", [])) or draw(st.integers(1, 3))
            spec[key] = draw(st.sampled_from([[1 / size] * size, [0.5] * size, [1.0] + [0.0] * (size - 1)]))
        elif key == "value":
            spec[key] = draw(st.one_of(scalars, values))
        else:
            spec[key] = draw(scalars)
    if "min" in spec and "max" in spec and draw(st.booleans()) and all(map(_is_number, (spec["min"], spec["max"]))):
        spec["max"] = spec["min"] + draw(st.sampled_from([1, 2, 0.5, 4.0]))  # more often min < max
    return spec


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


LAUNCHER_RULES = ("(wandb would draw nan or inf)", "then draws nan")


@pytest.mark.slow
@pytest.mark.parametrize("method", ["grid", "random"])
def test_generated_parameters_are_refused_and_expanded_as_wandb_does(engine, method):
    @settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
    @given(spec=parameter_specs(method))
    def check(spec):
        compare_with_wandb(engine, sweep(method, {"a": spec, "b": {"values": [1, 2]}}))

    check()


def compare_with_wandb(engine: Engine, config: dict[str, Any]) -> None:
    spec, method = config["parameters"]["a"], config["method"]
    theirs, runs = engine.outcome(config)
    ours = our_outcome(config)
    event(f"wandb: {theirs}, launcher: {'accepted' if ours == ACCEPTED else 'refused'}")  # --hypothesis-show-statistics
    if theirs == REFUSED:
        assert ours != ACCEPTED, f"wandb refuses {spec}"
    elif ours != ACCEPTED:  # only the launcher's own rules, and only where they apply
        assert any(rule in ours for rule in LAUNCHER_RULES), (spec, ours)
        assert any(not _is_number(spec[key]) or (key in ("sigma", "a", "b") and spec[key] <= 0)
                   for key in spec if key in ("min", "max", "mu", "sigma", "q", "a", "b")), (spec, ours)
    elif method == "grid":
        assert canonical(grid_assignments(config["parameters"])) == canonical(runs)


@pytest.mark.parametrize("method", ["grid", "random"])
def test_generated_parameters_get_one_line_or_expand(method):
    """Without the engine: whatever a generated parameter is, the launcher answers with one line or lists it."""
    @settings(deadline=None)
    @given(spec=parameter_specs(method))
    def check(spec):
        config = sweep(method, {"a": spec})
        outcome = our_outcome(config)
        if outcome != ACCEPTED:
            assert "\n" not in outcome and "parameters.a" in outcome, outcome
        elif method == "grid":
            assert grid_assignments(config["parameters"], count=GRID_LIMIT)
        elif spec.get("distribution") not in ("beta", "q_beta"):
            assert len(search.random_assignments(config["parameters"], 5, seed=0)) == 5

    check()
