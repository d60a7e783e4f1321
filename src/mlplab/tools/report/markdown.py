"""The report as Markdown: the same text tables as the HTML page, without the charts."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mlplab.tools.report import comparisons, tables


def markdown_table(table: pd.DataFrame) -> str:
    """A pipe table of a DataFrame of text (pandas' to_markdown would need tabulate for this)."""

    def line(cells: list[str]) -> str:
        # A pipe or line break inside a cell would end the cell or the row.
        return "| " + " | ".join(" ".join(str(text).split()).replace("|", "\\|") for text in cells) + " |"

    header = [str(name) for name in table.columns]
    return "\n".join([line(header), line(["---"] * len(header)),
                      *(line(list(row)) for row in table.itertuples(index=False))])


def comparisons_section(runs: pd.DataFrame, swept: list[str], metric: str, minimize: bool) -> list[str]:
    """The paired comparisons' heading, caption and table (the caption alone where there are none)."""
    compared = comparisons.compare(runs, swept, metric, minimize)
    lines = ["## Paired comparisons", "", comparisons.caption(compared, metric), ""]
    if len(compared):
        lines += [markdown_table(comparisons.comparisons_table(compared, metric)), ""]
    return lines


def report_markdown(root: Path | str, frame: pd.DataFrame, runs: pd.DataFrame, metric: str, minimize: bool) -> str:
    """Runs best first, the summary per configuration, the paired comparisons and the failed runs.
    `frame` holds every run, `runs` the finished ones best first."""
    swept = list(frame.attrs["swept"])
    sections = [f"# Training runs under {root}", "", tables.headline(frame, metric, minimize), ""]
    if len(runs):
        summary = tables.summarize(runs, swept, metric, minimize)
        sections += ["## Runs", "", markdown_table(tables.runs_table(runs, swept, metric)), "",
                     "## Summary by configuration", "",
                     markdown_table(tables.summary_table(summary, swept, metric)), "",
                     *comparisons_section(runs, swept, metric, minimize)]
    failed = tables.failed_table(frame)
    if len(failed):
        sections += ["## Failed or unfinished runs", "", markdown_table(failed), ""]
    return "\n".join(sections).rstrip("\n") + "\n"
