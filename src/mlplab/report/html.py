"""The report page: the tables of `tables.py` and the charts of `mlplab.plots`, rendered through the
Jinja2 template templates/report.html.j2 into one self-contained HTML file (images embedded)."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from mlplab import plots
from mlplab.plots import report as report_charts
from mlplab.report import tables
from mlplab.report.runs import figure_files, read_curves

TEMPLATES = Path(__file__).resolve().parent / "templates"
TEMPLATE = "report.html.j2"


def file_data_uri(path: Path) -> str:
    """A PNG on disk as a data: URI."""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def sort_values(values: Sequence[Any]) -> list[Any]:
    """Distinct parameter values: numbers in numeric order, then the rest in text order."""
    distinct = {json.dumps(value, default=str): value for value in values}.values()
    return sorted(distinct, key=lambda value: (not tables.is_number(value),
                                               value if tables.is_number(value) else 0, str(value)))


def parameter_charts(runs: pd.DataFrame, swept: Sequence[str], metric: str) -> list[tuple[str, str]]:
    """(parameter, chart as data: URI) for each swept parameter."""
    scores = tables.metric_values(runs, metric)
    charts = []
    for key in swept:
        values = sort_values(list(runs[key]))
        labels = [tables.format_param(value) for value in values]
        per_value = [[score for param, score in zip(map(tables.format_param, runs[key]), scores)
                      if param == label and not math.isnan(score)] for label in labels]
        figure = report_charts.parameter_figure(key, metric, labels, per_value)
        charts.append((key, plots.png_data_uri(figure)))
    return charts


def learning_curves(runs: pd.DataFrame, swept: Sequence[str]) -> str | None:
    """One chart of every run's learning curves, as a data: URI; None when no run logged any."""
    keys = tables.config_keys(swept)
    labels = [" ".join(f"{key}={tables.format_param(value)}" for key, value in zip(swept, values)) or label
              for label, values in zip(runs["label"], runs[list(swept)].itertuples(index=False))]
    groups = [json.dumps([tables.format_param(value) for value in values])
              for values in runs[keys].itertuples(index=False)]
    curves = [read_curves(Path(path)) for path in runs["path"]]
    if not any(points for run_curves in curves for points in run_curves.values()):
        return None
    return plots.png_data_uri(report_charts.learning_curves_figure(curves, labels, groups))


def saved_figures(runs: pd.DataFrame) -> list[tuple[str, list[tuple[str, str]]]]:
    """(run, [(figure name, data: URI)]) for each run that saved a weight grid or confusion matrix."""
    cards = []
    for label, path in zip(runs["label"], runs["path"]):
        images = [(name, file_data_uri(file)) for name, file in figure_files(Path(path)).items()]
        if images:
            cards.append((label, images))
    return cards


def environment(template_dir: Path = TEMPLATES) -> jinja2.Environment:
    """Jinja2 with HTML escaping on and undefined names an error, so a template typo cannot pass silently."""
    return jinja2.Environment(loader=jinja2.FileSystemLoader(template_dir), autoescape=True,
                              undefined=jinja2.StrictUndefined)


def report_html(root: Path, frame: pd.DataFrame, runs: pd.DataFrame, metric: str, minimize: bool,
                template_dir: Path = TEMPLATES) -> str:
    """The whole page. `frame` holds every run, `runs` the finished ones best first."""
    swept = list(frame.attrs["swept"])
    failed = tables.failed_table(frame)
    context: dict[str, Any] = {
        "root": root, "metric": metric, "swept": swept, "common": frame.attrs["common"],
        "headline": tables.headline(frame, metric, minimize),
        "runs": None, "failed": failed if len(failed) else None,
    }
    if len(runs):
        summary = tables.summary_table(tables.summarize(runs, swept, metric, minimize), swept, metric)
        context.update(
            runs=tables.runs_table(runs, swept, metric), paths=list(runs["path"]),
            summary=summary, config_keys=tables.config_keys(swept), summary_metric=tables.mean_column(metric),
            parameter_charts=parameter_charts(runs, swept, metric), curves=learning_curves(runs, swept),
            figures=saved_figures(runs),
        )
    return environment(template_dir).get_template(TEMPLATE).render(context)
