"""The report page: the tables of `tables.py` and the charts of `mlplab.plots`, rendered through the
Jinja2 template templates/report.html.j2 into one HTML file.

The charts (one per swept parameter, one of the learning curves) are embedded as data: URIs; the
figures each run saved (weights, confusion matrix) are linked by their path relative to the page,
not embedded, so that the page stays a few hundred bytes per run: 200 runs' images embedded made a
page of ~100 MB that a browser would not open.
"""

from __future__ import annotations

import json
import math
import os
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from mlplab import plots
from mlplab.plots import report_charts
from mlplab.tools.report import tables
from mlplab.tools.report.runs import figure_files, read_curves

TEMPLATES = Path(__file__).resolve().parent / "templates"
TEMPLATE = "report.html.j2"


def file_link(path: Path, page_dir: Path) -> str:
    """The URL of a file relative to the page in `page_dir`, percent-encoded (spaces, #, ?, % in names)."""
    return urllib.parse.quote(Path(os.path.relpath(path, page_dir)).as_posix(), safe="/")


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


def saved_figures(runs: pd.DataFrame, page_dir: Path) -> list[tuple[str, list[tuple[str, str]]]]:
    """(run, [(figure name, link relative to the page)]) for each run that saved a weight grid or confusion matrix."""
    cards = []
    for label, path in zip(runs["label"], runs["path"]):
        images = [(name, file_link(file, page_dir)) for name, file in figure_files(Path(path)).items()]
        if images:
            cards.append((label, images))
    return cards


def environment(template_dir: Path = TEMPLATES) -> jinja2.Environment:
    """Jinja2 with HTML escaping on and undefined names an error, so a template typo cannot pass silently."""
    return jinja2.Environment(loader=jinja2.FileSystemLoader(template_dir), autoescape=True,
                              undefined=jinja2.StrictUndefined)


def report_html(root: Path, frame: pd.DataFrame, runs: pd.DataFrame, metric: str, minimize: bool,
                template_dir: Path = TEMPLATES, page_dir: Path | None = None) -> str:
    """The whole page, to be saved in `page_dir` (default root). `frame` holds every run, `runs` the
    finished ones best first."""
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
            figures=saved_figures(runs, root if page_dir is None else page_dir),
        )
    return environment(template_dir).get_template(TEMPLATE).render(context)
