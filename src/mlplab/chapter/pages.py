"""The chapter's pages: docs/results/<table>.md (cells, findings, every comparison, every run) and
the generated blocks of docs/results.md (each table's cells and findings, and the chapter's own
block: commits, machine, threads, wall time). Every number in them comes from the run records.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mlplab.chapter import blocks, campaign
from mlplab.chapter.units import UNITS_TABLE, units_block
from mlplab.chapter.cells import (CONFIDENCE, NOT_MEASURED, cell_keys, cells, finished, published, source_runs,
                                  sweep_parameters)
from mlplab.chapter.contents import TABLES, VALIDATION, Table
from mlplab.chapter.findings import compare, sentences
from mlplab.core.data import MNISTDataModule
from mlplab.errors import UserError
from mlplab.run.records import write_text
from mlplab.tools.report import comparisons
from mlplab.tools.report.markdown import markdown_table
from mlplab.tools.report.tables import format_param, runs_table

RESULTS_PAGE = "results.md"
PAGES_DIR = "results"
CELLS_FILE = "cells.json"  # every published cell, for --verify on a machine without the records
REPO = Path(__file__).resolve().parents[3]  # the checkout: its docs/ and sweeps/
TEMPLATE = REPO / "docs" / RESULTS_PAGE


def percent(value: float) -> str:
    return NOT_MEASURED if value is None or math.isnan(value) else f"{value * 100:.2f} %"


def spread(mean: float, std: float) -> str:
    return percent(mean) if math.isnan(std) else f"{percent(mean)} ± {std * 100:.2f}"


def span(low: float, high: float) -> str:
    return NOT_MEASURED if math.isnan(low) else f"{low * 100:.2f} … {high * 100:.2f}"


def cells_table(table_cells: pd.DataFrame, table: Table) -> pd.DataFrame:
    """The cells as text, in the ranking's order (best first)."""
    keys = cell_keys(table)
    columns: dict[str, list[str]] = {key: [format_param(value) for value in table_cells[key]] for key in keys}
    columns["seeds"] = [str(count) for count in table_cells["seeds"]]
    if table.ranking == VALIDATION:
        columns["validation (best epoch), mean ± std"] = [spread(m, s) for m, s in
                                                          zip(table_cells["val_mean"], table_cells["val_std"])]
    columns["test, mean ± std"] = [spread(m, s) for m, s in zip(table_cells["test_mean"], table_cells["test_std"])]
    columns["test: 95 % interval of the mean"] = [span(lo, hi) for lo, hi in
                                                 zip(table_cells["test_low"], table_cells["test_high"])]
    columns["test: 95 % rerun interval"] = [span(lo, hi) for lo, hi in
                                            zip(table_cells["test_rerun_low"], table_cells["test_rerun_high"])]
    columns["test set's own noise (95 %)"] = [f"± {value * 100:.2f}" for value in table_cells["test_noise"]]
    return pd.DataFrame(columns)


def grid_table(table_cells: pd.DataFrame, table: Table) -> pd.DataFrame | None:
    """A two-way table's test means as rows x columns, for reading across."""
    if not table.columns:
        return None
    shown = table_cells.assign(text=[spread(m, s) for m, s in zip(table_cells["test_mean"], table_cells["test_std"])])
    grid = shown.pivot(index=table.rows, columns=table.columns, values="text").fillna(NOT_MEASURED)
    order = sorted(grid.index, key=sort_key)
    grid = grid.loc[order]
    return grid.reset_index().rename(columns={table.rows: f"{table.rows} \\ {table.columns}"}).astype(str)


def sort_key(value: Any) -> tuple:
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(value))


def noise_range(noise: pd.Series) -> str:
    low, high = f"± {noise.min() * 100:.2f}", f"± {noise.max() * 100:.2f}"
    return low if low == high else f"{low} to {high}"


def caption(table: Table, table_cells: pd.DataFrame) -> str:
    ranking = "validation accuracy (the best epoch's, which picked the tested checkpoint)" \
        if table.ranking == VALIDATION else "test accuracy (the full-train protocol holds no images out for validation)"
    noise = table_cells["test_noise"]
    return (f"Ordered by mean {ranking}, best first. Each cell is the same seeds (initial weights, batch order, "
            f"dropout masks and augmentation draws); the validation and test images are the same for every "
            f"seed and cell. The {CONFIDENCE:.0%} interval of the mean (Student's t over the seeds) covers "
            f"seed-to-seed variation only; the rerun interval is where the mean of a rerun of as many seeds "
            f"falls ({CONFIDENCE:.0%} prediction interval, what `--verify` checks). Not in either: the test "
            f"set's own sampling noise, {noise_range(noise)} points for one "
            f"accuracy on {MNISTDataModule.test_size:,} images, the same draw for every cell (so it does not "
            f"separate two cells, but it bounds any claim about the absolute accuracy).")


def run_conditions(sweep_dirs: list[Path]) -> dict[str, Counter]:
    """What made the runs: commits, CPU and its vector ISA, threads, torch, counted over pack/run records."""
    found: dict[str, Counter] = {"commit": Counter(), "machine": Counter(), "threads": Counter(), "torch": Counter()}
    for sweep_dir in sweep_dirs:
        for path in sweep_dir.glob("*/run_info.json"):
            try:
                info = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            numerics, hardware = info.get("numerics") or {}, info.get("hardware") or {}
            found["commit"][str((info.get("git") or {}).get("commit", "?"))[:10]] += 1
            gpus = ", ".join(hardware.get("gpus") or []) or "no GPU"
            found["machine"][f"{hardware.get('cpu', '?')} ({numerics.get('cpu_capability', '?')}, "
                             f"{hardware.get('cpu_count', '?')} cores, {gpus})"] += 1
            found["threads"][str(numerics.get("torch_threads", "?"))] += 1
            found["torch"][str((info.get("versions") or {}).get("torch", "?"))] += 1
    return found


def named_conditions(found: dict[str, Counter]) -> tuple[str, str]:
    """The commits, and the machine, torch and threads, as the pages write them."""
    named = {key: ", ".join(f"`{value}`" if key == "commit" else value for value in counter) or NOT_MEASURED
             for key, counter in found.items()}
    threads = named["threads"]
    return named["commit"], (f"{named['machine']}; torch {named['torch']}; "
                             f"{threads} CPU thread{'' if threads == '1' else 's'} per trial")


def conditions_line(found: dict[str, Counter]) -> str:
    several = " (the same training code: the chapter sets aside runs of any other)" \
        if len(found["commit"]) > 1 else ""
    commits, setting = named_conditions(found)
    return f"Commit {commits}{several}; {setting}."


def expected_runs(table: Table, runs_dir: Path) -> int:
    """How many runs the table reads once every sweep is done (a source narrowed by `where`: one cell)."""
    total = 0
    for source in table.sources:
        parameters = sweep_parameters(runs_dir, source.sweep, REPO / "sweeps" / f"{source.sweep}.yaml")
        seeds = len(parameters.pop("seed", [None]))
        total += seeds * (1 if source.where else math.prod(len(values) for values in parameters.values()))
    return total


def measured_line(table: Table, frame: pd.DataFrame, runs_dir: Path) -> str:
    done = len(finished(frame, table).drop_duplicates("path")) if "status" in frame else 0
    expected = expected_runs(table, runs_dir)
    epochs = sorted({int(value) for value in frame.get("epochs", pd.Series(dtype=float)).dropna()})
    sweeps = ", ".join(f"`sweeps/{stem}.yaml`" for stem in table.sweeps)
    partial = "" if done >= expected else (f" **Partial: {expected - done} of the table's {expected} runs are "
                                           f"not finished yet; `python -m mlplab.chapter` continues them.**")
    return (f"From {sweeps}: {done} finished runs of {expected} ({', '.join(map(str, epochs)) or '?'} epochs).{partial} "
            + conditions_line(run_conditions([runs_dir / stem for stem in table.sweeps])))


@dataclass
class TablePage:
    block: str  # for docs/results.md
    page: str  # docs/results/<table>.md
    entries: list[dict[str, Any]]  # its published cells
    headline: dict[str, str]  # its row in README's results


def headline_row(table: Table, table_cells: pd.DataFrame, found: pd.DataFrame) -> dict[str, str]:
    best = table_cells.iloc[0]
    label = ", ".join(f"{key}={format_param(best[key])}" for key in cell_keys(table)) if table.keys else table.name
    supported = int(found["verdict"].str.contains(" beats ").sum()) if not found.empty else 0
    return {"table": f"[{table.name}](docs/results.md)", "first (by validation; by test where no images are held out)":
            f"`{label}`" + ("" if table.ranking == VALIDATION else " (test)"), "its test accuracy, mean ± std": spread(best["test_mean"], best["test_std"]),
            "seeds": str(best["seeds"]),
            "differences shown (Holm) / compared": f"{supported} / {len(found)}" if not found.empty else NOT_MEASURED}


def stale_reasons(table: Table, runs_dir: Path) -> list[str]:
    """Why some of the table's runs are not of the checkout's training code (nothing published then)."""
    head = campaign.head_commit(REPO)
    reasons = []
    for stem in table.sweeps:
        sweep = campaign.Sweep(stem, REPO)
        if sweep.directory(runs_dir).is_dir() and (reason := campaign.staleness(sweep, runs_dir, head)):
            reasons.append(f"`{stem}`: {reason}")
    return reasons


def table_block(table: Table, runs_dir: Path, page_link: str, smoke: bool) -> TablePage:
    if stale := stale_reasons(table, runs_dir):
        text = (f"Stale, not published: {'; '.join(stale)}. `python -m mlplab.chapter --only {table.name}` sets "
                "those runs aside and trains the table again.")
        return TablePage(text, f"# {table.title}\n\n{text}\n", [], {})
    frame = source_runs(table, runs_dir, smoke)
    table_cells = cells(frame, table) if not frame.empty else pd.DataFrame()
    if table_cells.empty:
        text = (f"Not measured yet: run `python -m mlplab.chapter --only {table.name}`.")
        return TablePage(text, f"# {table.title}\n\n{text}\n", [], {})
    found = compare(frame, table)
    lines = sentences(table_cells, found, table)
    short = [line for line in lines if not line.startswith("No difference shown")]
    if len(short) < len(lines):
        others = int((~found["verdict"].str.contains(" beats ")).sum())
        which = f"any of the {others} comparisons" if others == len(found) else f"the other {others} of {len(found)}"
        which = "the one comparison" if len(found) == 1 else which
        short.append(f"No difference shown in {which} (listed in [{page_link}]({page_link})).")
    parts = [measured_line(table, frame, runs_dir), markdown_table(cells_table(table_cells, table)),
             caption(table, table_cells)]
    if (grid := grid_table(table_cells, table)) is not None:
        parts.append("Test accuracy, mean ± std over the seeds:\n\n" + markdown_table(grid))
    block = "\n\n".join(parts + ["\n".join(f"- {line}" for line in short)])
    page = "\n\n".join([f"# {table.title}", "Written by `python -m mlplab.chapter`; do not edit.", *parts[:3],
                        "## Findings", "\n".join(f"- {line}" for line in lines), *comparisons_section(found, table),
                        "## Runs", markdown_table(runs_table(frame, [*cell_keys(table), "seed"], table.ranking))])
    return TablePage(block, page + "\n", published(frame, table_cells, table, runs_dir),
                     headline_row(table, table_cells, found))


def comparisons_section(found: pd.DataFrame, table: Table) -> list[str]:
    if found.empty:
        return []
    return ["## Paired comparisons", comparisons.caption(found, table.ranking),
            markdown_table(comparisons.comparisons_table(found, table.ranking))]


def chapter_block(runs_dir: Path, tables: list[Table]) -> str:
    timing = campaign.read_timing(runs_dir)
    stems = [stem for table in tables for stem in table.sweeps]
    total = sum(entry["seconds"] for entry in timing if entry["sweep"] in stems)
    per_sweep = Counter()
    for entry in timing:
        per_sweep[entry["sweep"]] += entry["seconds"]
    machines = sorted({f"{entry['cpu']}, {entry['cores']} cores, {entry['slots']} trials at a time, "
                       f"{entry['threads_per_trial']} thread each" for entry in timing})
    listed = ", ".join(f"{stem} {per_sweep[stem] / 60:.1f}" for stem in dict.fromkeys(stems) if stem in per_sweep)
    return (f"{conditions_line(run_conditions([runs_dir / stem for stem in dict.fromkeys(stems)]))} "
            f"Wall time of the runs: {total / 3600:.2f} h in all on {'; '.join(machines) or NOT_MEASURED} "
            f"(minutes per sweep: {listed or NOT_MEASURED}), summed over the stretches the resumable run "
            f"was run in, with other work sharing the machine at times.")


def block_names(tables: list[Table]) -> list[str]:
    names = ["chapter"] + (["units"] if UNITS_TABLE in {table.name for table in tables} else [])
    return names + [table.name for table in tables]


def page_text(path: Path) -> str:
    try:
        return path.read_text()
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text: restore it (git checkout {path.name}) or delete it") from None


def check_page(docs: Path, tables: list[Table]) -> None:
    """The page has one place for each block to write (a try's page, made later from the template, has)."""
    results = docs / RESULTS_PAGE
    if results.exists():
        blocks.check_markers(page_text(results), block_names(tables), results)


def start_page(docs: Path) -> Path:
    """The page to write the blocks into: a try's own copy of the template, its published blocks
    emptied, so that no published number stands beside the try's."""
    results = docs / RESULTS_PAGE
    if not results.exists():
        docs.mkdir(parents=True, exist_ok=True)
        write_text(results, blocks.emptied(TEMPLATE.read_text()))
    return results


def json_number(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


def write_pages(runs_dir: Path, docs: Path, tables: list[Table], overrides: list[str]) -> Iterator[str]:
    """Write each table's page and its block in docs/results.md (a try, run with `overrides`, into its
    own copy of the template); yield one line per page written."""
    smoke = bool(overrides)
    results = start_page(docs)
    check_page(docs, tables)
    # The block says how the page's tables were made: left as it is while the page holds tables of other runs.
    others = {t.name for t in TABLES} - {t.name for t in tables}
    generated = {} if others & blocks.filled(page_text(results)) else {"chapter": chapter_block(runs_dir, tables)}
    if UNITS_TABLE in {table.name for table in tables}:
        generated["units"] = units_block(runs_dir, smoke)
    cells_path = docs / PAGES_DIR / CELLS_FILE
    cells_path.parent.mkdir(parents=True, exist_ok=True)
    kept = [entry for entry in read_published(cells_path) if entry["table"] not in {t.name for t in tables}]
    headlines = []
    for table in tables:
        page_path = docs / PAGES_DIR / f"{table.name}.md"
        written = table_block(table, runs_dir, f"{PAGES_DIR}/{table.name}.md", smoke)
        generated[table.name] = written.block
        kept += [{**{key: json_number(value) for key, value in entry.items()},
                  "overrides": [*overrides, *entry["overrides"]]} for entry in written.entries]
        headlines += [written.headline] if written.headline else []
        write_text(page_path, written.page)
        yield f"wrote {page_path}"
    write_text(cells_path, json.dumps(kept, indent=1, allow_nan=False) + "\n")
    yield f"wrote {cells_path}"
    readme = docs.parent / "README.md"
    if docs == TEMPLATE.parent and {t.name for t in tables} == {t.name for t in TABLES} and readme.is_file():
        headline = markdown_table(pd.DataFrame(headlines).fillna(NOT_MEASURED)) if headlines else NOT_MEASURED
        write_text(readme, blocks.replace_blocks(readme.read_text(), {"headline": headline}, readme))
        yield f"wrote the block headline of {readme}"
    write_text(results, blocks.replace_blocks(page_text(results), generated, results))
    yield f"wrote the blocks {', '.join(generated)} of {results}"


PUBLISHED_KEYS = {"table": str, "cell": dict, "sweep": str, "overrides": list, "seeds": list, "test_by_seed": list}


def no_constant(name: str) -> None:
    raise ValueError(f"{name} is no published number")


def read_published(path: Path) -> list[dict[str, Any]]:
    """docs/results/cells.json's entries, each checked for what --verify and the pages read."""
    if not path.is_file():
        return []
    try:
        entries = json.loads(path.read_text(), parse_constant=no_constant)
    except (UnicodeDecodeError, ValueError) as error:
        raise UserError(f"{path} is not valid JSON ({error}): write it again with python -m mlplab.chapter "
                        "--render (or restore it from git)") from None
    good = isinstance(entries, list) and all(
        isinstance(entry, dict) and all(isinstance(entry.get(key), kind) for key, kind in PUBLISHED_KEYS.items())
        and all(isinstance(entry.get(key), (int, float, type(None))) and not isinstance(entry.get(key), bool)
                for key in ("test_mean", "rerun_low", "rerun_high"))
        for entry in entries)
    if not good:
        raise UserError(f"{path} does not hold the chapter's cells (a list of entries with "
                        f"{', '.join(PUBLISHED_KEYS)}, test_mean, rerun_low, rerun_high): write it again with "
                        "python -m mlplab.chapter --render (or restore it from git)")
    return entries
