"""wandb's own rules for a sweep file: what `wandb.sweep` and wandb's sweep engine refuse, and how that
engine reads a parameter and lists a grid, applied here without the engine.

`wandb.sweep` names the distribution of a bare min/max pair and sends the file through JSON
(wandb/apis/public/sweeps.py, `_validate_config_and_fill_distribution`); wandb's server then holds it
to the sweep engine, the `sweeps` package (github.com/wandb/sweeps): a JSON schema plus the checks
in sweeps/config/cfg.py and schema.py, and lists a grid with sweeps/grid_search.py.

wandb_sweep_schema.json beside this file is sweeps 0.3.0's sweeps/config/schema.json, unchanged
(MIT license, Copyright (c) 2021 Weights and Biases: wandb_sweep_schema.LICENSE). The project cannot
depend on `sweeps` itself: it pins numpy < 2, which pandas 3 refuses. tests/test_sweep_rules.py runs
the real package in a venv of its own and holds this module to it, case by case.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import jsonschema
import numpy
import yaml

SWEEPS_VERSION = "0.3.0"  # the `sweeps` release the schema file comes from
SCHEMA_FILE = Path(__file__).with_name("wandb_sweep_schema.json")
# The engine reports these as violations: min/max are natural logs (sweeps/params.py).
DEPRECATED_FORMS = {"param_loguniform": "log_uniform_values", "param_inv_loguniform": "inv_log_uniform_values",
                    "param_qloguniform": "q_log_uniform_values"}
# The forms sweeps/grid_search.py lists; any other parameter stops a grid when an agent asks for a run.
GRID_FORMS = ("param_single_value", "param_categorical", "param_int_uniform", "param_quniform")
# sweeps/config/cfg.py: the methods each scheduler engine takes.
ENGINE_METHODS = {"wandb": ("grid", "bayes", "random"), "optuna": ("custom",), "ax": ("custom",)}


class Refused(ValueError):
    """What wandb refuses, in one line naming the key, the value and the fix (without the file's name)."""


@functools.cache
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_FILE.read_text())


def _format_checker() -> jsonschema.FormatChecker:
    # The engine's own formats (sweeps/config/schema.py): `float` tells 1.0 from 1, which JSON types do not.
    checker = jsonschema.FormatChecker(formats=())
    checker.checks("float")(lambda value: isinstance(value, float))
    checker.checks("integer")(lambda value: isinstance(value, int))
    return checker


@functools.cache
def validator(definition: str | None = None) -> jsonschema.Draft7Validator:
    """The engine's Draft 7 validator, of the whole file or of one of the schema's definitions."""
    whole = schema()
    target = whole if definition is None else {"allOf": [{"$ref": f"#/definitions/{definition}"}],
                                               "definitions": whole["definitions"]}
    return jsonschema.Draft7Validator(target, format_checker=_format_checker())


def parameter_forms() -> list[str]:
    """The schema's parameter definitions, in the order the engine tries them."""
    return [choice["$ref"].rsplit("/", 1)[-1] for choice in schema()["definitions"]["parameter"]["anyOf"]]


def _properties(form: str) -> dict[str, Any]:
    definition = schema()["definitions"][form]
    properties: dict[str, Any] = {}
    for branch in definition.get("anyOf", [definition]):  # param_uniform is four objects
        for key, subschema in branch.get("properties", {}).items():
            properties.setdefault(key, {}).update(subschema)
    return properties


def distribution_name(form: str) -> str | None:
    """The `distribution:` a form stands for (None for nested parameters)."""
    enum = _properties(form).get("distribution", {}).get("enum")
    return enum[0] if enum else None


# ---------------------------------------------------------------------------------------------
# What `wandb.sweep` does before upload


def fill_distribution(name: str, spec: Any) -> Any:
    """A bare min/max pair gets its distribution as `wandb.sweep` gives it: both int -> int_uniform, both
    float -> uniform; anything else it refuses with a ValueError (a CommError, or with WANDB_DEBUG a traceback)."""
    if not isinstance(spec, dict) or "min" not in spec or "max" not in spec or "distribution" in spec:
        return spec
    low, high = spec["min"], spec["max"]
    if isinstance(low, int) and isinstance(high, int):  # bool too, as wandb's isinstance lets it
        return {**spec, "distribution": "int_uniform"}
    if isinstance(low, float) and isinstance(high, float):
        return {**spec, "distribution": "uniform"}
    hint = " (in YAML write 1.0e-5, not 1e-5)" if str in (type(low), type(high)) else ""
    raise Refused(f"parameters.{name}: min={low!r}, max={high!r} is not allowed without a distribution "
                  f"(wandb.sweep refuses it as ambiguous): write both as integers for int_uniform or both with a "
                  f"decimal point for uniform{hint}, or name the distribution")


def _not_json(value: Any, where: str) -> tuple[str, Any] | None:
    """The first place in `value` holding what JSON cannot (a date, a set...), and that thing; or None."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key is not None and not isinstance(key, (str, int, float, bool)):
                return f"{where}.{key!r}", key
            if (found := _not_json(item, f"{where}.{key}")) is not None:
                return found
        return None
    if isinstance(value, list):
        return next((found for index, item in enumerate(value)
                     if (found := _not_json(item, f"{where}[{index}]")) is not None), None)
    return None if value is None or isinstance(value, (str, int, float, bool)) else (where, value)


def as_uploaded(config: dict[str, Any]) -> dict[str, Any]:
    """The file as `wandb.sweep` sends it: bare min/max pairs given a distribution, then through JSON
    (so dict keys become strings, and a value JSON cannot hold is refused)."""
    config = copy.deepcopy(config)
    if isinstance(config.get("parameters"), dict):
        config["parameters"] = {name: fill_distribution(name, spec) for name, spec in config["parameters"].items()}
    return _through_json(config, "")


def _through_json(value: Any, where: str) -> Any:
    if (found := _not_json(value, where)) is not None:
        place, bad = found
        raise Refused(f"{place.lstrip('.')}={bad!r} is not allowed: wandb.sweep sends the file as JSON, which has "
                      f"no {type(bad).__name__}: quote it")
    return json.loads(json.dumps(value))


# ---------------------------------------------------------------------------------------------
# One parameter, as the engine reads it


def parameter_form(spec: Any) -> tuple[str, dict[str, Any]] | None:
    """The first form the (uploaded) spec fits and the spec with that form's defaults (q: 1.0, mu: 0,
    sigma: 1, the distribution's name), as sweeps' fill_parameter reads it; None when it fits none."""
    for form in parameter_forms():
        if validator(form).is_valid(spec):
            filled = dict(spec)
            for key, subschema in _properties(form).items():
                if "default" in subschema:
                    filled.setdefault(key, subschema["default"])
            return form, filled
    return None


def _uploaded_parameter(name: str, spec: Any) -> Any:
    return _through_json(fill_distribution(name, spec), f"parameters.{name}")


def read_parameter(name: str, spec: Any) -> tuple[str, dict[str, Any]]:
    """The form of a parameter that check_parameter let through, and the spec as the engine reads it."""
    found = parameter_form(_uploaded_parameter(name, spec))
    if found is None:
        check_parameter(name, spec)  # says why
        raise Refused(f"parameters.{name}={spec!r} is not allowed: it fits none of wandb's parameter forms")
    return found


def check_parameter(name: str, spec: Any) -> None:
    """Refuse what the engine reports for one parameter: no form fits, min >= max, probabilities that
    do not match the values, a deprecated distribution."""
    spec = _uploaded_parameter(name, spec)
    where = f"parameters.{name}"
    found = parameter_form(spec)
    if found is None:
        raise Refused(_why_no_form(where, spec))
    form, _ = found
    # The engine's own test: NaN bounds pass it.
    if "min" in spec and "max" in spec and spec["min"] >= spec["max"]:
        raise Refused(f"{where}: min={spec['min']!r}, max={spec['max']!r} is not allowed: min < max")
    probabilities = spec.get("probabilities")
    if probabilities is not None and (len(probabilities) != len(spec["values"])
                                      or not numpy.isclose(sum(probabilities), 1.0)):
        raise Refused(f"{where}.probabilities={probabilities!r} is not allowed: one number >= 0 per value, "
                      "summing to 1")
    if form in DEPRECATED_FORMS:
        raise Refused(f"{where}: distribution {distribution_name(form)} is not allowed (wandb reports it as "
                      f"deprecated: its min and max are natural logs): use {DEPRECATED_FORMS[form]} with the "
                      "bounds themselves")


def _required(form: str) -> set[str]:
    definition = schema()["definitions"][form]
    branches = definition.get("anyOf", [definition])
    return set.intersection(*(set(branch.get("required", [])) for branch in branches))


def _named_forms(keys: set[str]) -> list[str]:
    """The distributions (not deprecated) that take all these keys."""
    return [name for form in parameter_forms() if (name := distribution_name(form))
            and form not in DEPRECATED_FORMS and keys <= _properties(form).keys()]


def _why_no_form(where: str, spec: Any) -> str:
    """One line on the form the spec was meant to be and what it lacks or has too much of."""
    if not isinstance(spec, dict):
        return f"{where}={spec!r} is not allowed: a mapping with value, values or a distribution"
    distribution = spec.get("distribution")
    if distribution is not None:
        forms = [form for form in parameter_forms() if distribution_name(form) == distribution]
        if not forms:
            names = sorted(_named_forms(set()))
            return f"{where}.distribution={distribution!r} is not allowed: one of {', '.join(names)}"
    else:  # the forms wandb infers without a name: those whose required keys the spec has
        forms = [form for form in parameter_forms() if distribution_name(form) and "distribution" not in
                 _required(form) and _required(form) <= spec.keys()]
        if not forms:
            fitting = _named_forms(set(spec))
            fix = f"name one: distribution: {' | '.join(fitting)}" if fitting else "use value, values or a distribution"
            return (f"{where}: {', '.join(map(str, spec))} without a distribution is not allowed (wandb infers one "
                    f"only from value, values, or min and max): {fix}")
    return _form_error_line(where, spec, max(forms, key=lambda form: len(_required(form))))


def _form_error_line(where: str, spec: dict[str, Any], form: str) -> str:
    named = distribution_name(form)
    if extra := sorted(spec.keys() - _properties(form).keys()):
        others = [other for other in _named_forms(spec.keys() - {"distribution"}) if other != named]
        hint = f" (with {', '.join(extra)} it is distribution {' or '.join(others)})" if others else ""
        return (f"{where}.{extra[0]} is not allowed with distribution {named}: it takes "
                f"{', '.join(sorted(_properties(form)))}{hint}")
    if missing := sorted(_required(form) - spec.keys()):
        return f"{where}: distribution {named} needs {' and '.join(missing)}"
    error = jsonschema.exceptions.best_match(validator(form).iter_errors(spec))
    key = ".".join(map(str, error.path)) if error is not None else ""
    if error is None or not key:
        return f"{where}={spec!r} is not allowed: it does not fit distribution {named}"
    if error.validator in ("type", "format") and error.validator_value in ("number", "float"):
        return f"{where}.{key}={error.instance!r} is not allowed: a number (in YAML write 1.0e-5, not 1e-5)"
    if error.validator in ("type", "format") and error.validator_value == "integer":
        return f"{where}.{key}={error.instance!r} is not allowed: distribution {named} needs an integer"
    return f"{where}.{key}={error.instance!r} is not allowed with distribution {named}: {error.message}"


# ---------------------------------------------------------------------------------------------
# The whole file


def check_config(config: dict[str, Any]) -> None:
    """Refuse what `wandb.sweep` or the engine refuses in the file, the first thing it reports."""
    uploaded = as_uploaded(config)
    for name, spec in (uploaded.get("parameters") or {}).items():
        check_parameter(name, spec)
    error = jsonschema.exceptions.best_match(validator().iter_errors(uploaded))
    if error is not None:
        raise Refused(_file_error_line(error))
    if (line := _cross_key_refusal(uploaded)) is not None:
        raise Refused(line)


def _file_error_line(error: jsonschema.ValidationError) -> str:
    where = ".".join(map(str, error.path)) or "the file"
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        extra = sorted(error.instance.keys() - error.schema.get("properties", {}).keys())
        inside = f"{where}." if error.path else ""
        return (f"{inside}{extra[0]} is not allowed: wandb's sweep schema takes "
                f"{', '.join(error.schema['properties'])}{' under ' + where if error.path else ''}")
    if error.validator == "enum":
        return f"{where}={error.instance!r} is not allowed: one of {', '.join(map(str, error.validator_value))}"
    return f"{where}={error.instance!r} is not allowed: {error.message} (wandb's sweep schema)"


def _cross_key_refusal(config: dict[str, Any]) -> str | None:
    """The engine's checks across keys that a JSON schema cannot say (sweeps/config/cfg.py)."""
    method, scheduler = config.get("method"), config.get("scheduler")
    if "metric" in config and "metrics" in config:
        return "metric and metrics are not allowed together: metric for one objective, metrics for several"
    if "metrics" in config and method != "custom":
        return f"metrics is not allowed with method={method!r}: several objectives need method: custom"
    if scheduler is None:
        return None
    if (config.get("controller") or {}).get("type") == "local":
        return "controller.type='local' is not allowed with scheduler: use scheduler alone"
    if "early_terminate" in config:
        return "early_terminate is not allowed with scheduler: a custom scheduler stops runs itself"
    if method not in ENGINE_METHODS[scheduler["engine"]]:
        return (f"method={method!r} is not allowed with scheduler.engine={scheduler['engine']!r}: "
                f"it takes method {' or '.join(ENGINE_METHODS[scheduler['engine']])}")
    return None


# ---------------------------------------------------------------------------------------------
# A grid, as sweeps/grid_search.py lists it


def check_grid_parameter(name: str, spec: dict[str, Any]) -> None:
    form, filled = read_parameter(name, spec)
    if form not in GRID_FORMS:
        given = "values with probabilities" if "probabilities" in filled else f"distribution {filled['distribution']}"
        raise Refused(f"parameters.{name}: a grid needs value:, values:, int_uniform or q_uniform for every parameter, "
                      f"not {given} (wandb's grid stops at it)")


def wandb_hash(value: Any) -> str:
    """sweeps' yaml_hash: the grid treats values with equal hashes as one point (1 and 1.0 among them)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return hashlib.md5(yaml.dump(value, default_flow_style=True, sort_keys=True).encode("ascii")).hexdigest()


def grid_size(name: str, spec: dict[str, Any]) -> int:
    """How many points the parameter gives a grid, counted without listing a range."""
    _, spec = read_parameter(name, spec)
    if spec["distribution"] == "int_uniform":
        return spec["max"] - spec["min"] + 1
    if spec["distribution"] == "q_uniform":
        return max(0, math.ceil((spec["max"] - spec["min"]) / spec["q"]))
    return len(grid_points(name, spec))


def grid_points(name: str, spec: dict[str, Any]) -> list[Any]:
    """The parameter's grid points as wandb lists them: int_uniform min..max, q_uniform numpy's
    arange(min, max, q) (max itself left out; floats unless all three are ints), values once per
    hash, at the first one's place with the last one's value."""
    _, spec = read_parameter(name, spec)
    if spec["distribution"] == "constant":
        return [spec["value"]]
    if spec["distribution"] == "int_uniform":
        values = list(range(spec["min"], spec["max"] + 1))
    elif spec["distribution"] == "q_uniform":
        values = numpy.arange(spec["min"], spec["max"], spec["q"]).tolist()
    else:
        values = spec["values"]
    points = {}
    for value in values:
        points[wandb_hash(value)] = value
    return list(points.values())


def check_as_sweep_file(path: Any, check: Any, *args: Any) -> None:
    """Run one of these checks; what wandb refuses becomes one line naming the sweep file."""
    from mlplab.errors import SweepError

    try:
        check(*args)
    except Refused as error:
        raise SweepError(f"{path}: {error}") from None
