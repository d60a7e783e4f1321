"""`python -m mlplab.chapter --verify K`: rerun K published cells on this machine and check each.

The published cells are docs/results/cells.json (written with the pages), so a reader needs the
repository only, not the records. K cells are drawn (seeded) round the tables, one table after another,
each rerun with its own sweep narrowed to it and its seeds into a fresh folder. A cell passes when the
rerun's mean test accuracy lies inside its published 95 % rerun interval; on the machine type, threads
and builds that made it the rerun is also expected to match seed for seed, which the report says too.
With K cells, about 1 - 0.95^K of clean reruns miss somewhere by chance (23 % for K = 5); a miss is a
reason to look, not proof of a fault.
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path
from typing import Any

import pandas as pd

from mlplab.chapter import campaign
from mlplab.chapter.contents import TEST, Table
from mlplab.chapter.pages import CELLS_FILE, PAGES_DIR, named_conditions, read_published, run_conditions
from mlplab.errors import UserError
from mlplab.run.records import FINISHED, write_text
from mlplab.tools.report.markdown import markdown_table
from mlplab.tools.report.runs import load_runs


VERIFY_PAGE = "verify.md"


def drawn(entries: list[dict[str, Any]], count: int, seed: int) -> list[dict[str, Any]]:
    """`count` distinct cells, round the tables in a seeded order, so that K >= tables touches every
    table with a cell of its own. A cell two tables publish (a shared baseline) is drawn once: its
    second rerun would train the same runs again and check nothing more."""
    by_table: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        by_table.setdefault(entry["table"], []).append(entry)
    generator = random.Random(seed)
    queues = [generator.sample(cells, len(cells)) for cells in by_table.values()]
    generator.shuffle(queues)
    chosen: list[dict[str, Any]] = []
    runs_of_chosen: set[tuple] = set()
    while len(chosen) < count and queues:
        queues = [queue for queue in queues if queue]  # each round only over tables with cells left
        for queue in queues:
            while queue and len(chosen) < count:
                entry = queue.pop()
                if (runs := same_runs(entry)) not in runs_of_chosen:
                    runs_of_chosen.add(runs)
                    chosen.append(entry)
                    break
    return chosen


def same_runs(entry: dict[str, Any]) -> tuple:
    """What decides a cell's runs: its sweep, its overrides but the seeds, and the seeds."""
    overrides = sorted(text for text in entry["overrides"] if not text.startswith("seed="))
    return entry["sweep"], tuple(overrides), tuple(sorted(entry["seeds"]))


def cell_name(entry: dict[str, Any]) -> str:
    return f"{entry['table']}: " + ", ".join(f"{key}={value}" for key, value in entry["cell"].items())


def rerun(entry: dict[str, Any], root: Path, folder: Path, slots: int) -> pd.DataFrame:
    """Train the cell's seeds again through its sweep; its finished runs."""
    seeds = ",".join(str(seed) for seed in entry["seeds"])
    sweep = campaign.Sweep(entry["sweep"], root)
    narrowed = [text for text in entry["overrides"] if not text.startswith("seed=")]
    returncode = campaign.run_sweep(sweep, folder, slots, [*narrowed, f"seed={seeds}"])
    # smoke=True: a try's cells (limit_train_batches) are checked like any other
    frame = load_runs([sweep.directory(folder)], smoke=True) if sweep.directory(folder).is_dir() else pd.DataFrame()
    if returncode != 0 or frame.empty:
        return frame.iloc[0:0] if not frame.empty else frame
    return frame[frame["status"] == FINISHED]


def check(entry: dict[str, Any], runs: pd.DataFrame) -> dict[str, Any]:
    values = runs.set_index(runs["seed"].astype(int))[TEST].reindex(entry["seeds"]) if not runs.empty \
        else pd.Series([math.nan] * len(entry["seeds"]))
    mean = float(values.mean()) if values.notna().all() else math.nan
    identical = bool(values.notna().all() and list(values) == entry["test_by_seed"])
    low, high = entry["rerun_low"], entry["rerun_high"]
    if low is None or high is None:  # one seed: no spread, so no interval; only the bits can agree
        interval, inside = "none (1 seed): same bits or not", identical
    else:
        interval, inside = f"{low * 100:.2f} … {high * 100:.2f}", low <= mean <= high
    return {"cell": cell_name(entry), "seeds": len(entry["seeds"]), "published mean": f"{entry['test_mean'] * 100:.2f} %",
            "rerun interval": interval,
            "rerun mean": "did not finish" if math.isnan(mean) else f"{mean * 100:.2f} %",
            "inside": "yes" if inside else "NO", "same bits seed for seed": "yes" if identical else "no",
            "passed": inside, "finished": not math.isnan(mean)}


def verify(root: Path, runs_dir: Path, tables: list[Table], count: int, seed: int, slots: int,
           docs: Path | None = None, command: str = "") -> bool:
    """Rerun and check `count` cells of `tables`; print and write the report; whether all passed."""
    cells_path = (docs or root / "docs") / PAGES_DIR / CELLS_FILE
    names = {table.name for table in tables}
    entries = [entry for entry in read_published(cells_path) if entry["table"] in names]
    if not entries:
        raise UserError(f"{cells_path} holds no published cell of {', '.join(sorted(names))}: write the pages "
                        "first (python -m mlplab.chapter, or --render from existing runs).")
    folder = runs_dir / "verify" / time.strftime("%Y%m%d-%H%M%S")
    results, sweep_dirs = [], []
    for index, entry in enumerate(drawn(entries, count, seed)):
        print(f"chapter --verify: {cell_name(entry)}", flush=True)
        # A folder per cell: two cells of one table through one sweep dir would mix their runs.
        cell_folder = folder / f"{index:02d}-{entry['table']}"
        results.append(check(entry, rerun(entry, root, cell_folder, slots)))
        sweep_dirs.append(campaign.Sweep(entry["sweep"], root).directory(cell_folder))
    report = pd.DataFrame(results)
    passed = bool(report["passed"].all())
    unfinished = int((~report["finished"]).sum())
    summary = (f"{'Every' if passed else 'Not every'} rerun mean lies inside its published rerun interval "
               f"({int(report['passed'].sum())} of {len(report)}).")
    if unfinished:
        summary += f" {unfinished} rerun(s) did not finish: see their sweep's lines above, not chance."
    elif not passed:
        summary += (f" By chance alone about {(1 - 0.95 ** len(report)) * 100:.0f} % of clean reruns of "
                    f"{len(report)} cells miss at least once: a miss is a reason to look, not proof of a fault.")
    text = "\n\n".join([
        f"# --verify {count} (seed {seed})",
        rerun_conditions(sweep_dirs, command or f"python -m mlplab.chapter --verify {count} --verify-seed {seed}"),
        markdown_table(report.drop(columns=["passed", "finished"]).astype(str)), summary])
    write_text(folder / "report.md", text + "\n")
    print(text)
    print(f"report: {folder / 'report.md'}")
    # The published chapter's check is part of it: kept beside the cells it checked.
    write_text(cells_path.parent / VERIFY_PAGE, text + "\n")
    print(f"report: {cells_path.parent / VERIFY_PAGE}")
    return passed


def rerun_conditions(sweep_dirs: list[Path], command: str) -> str:
    """What made the reruns, from their own records (the checkout may move on while they train)."""
    commits, setting = named_conditions(run_conditions(sweep_dirs))
    return f"Rerun {time.strftime('%Y-%m-%d')} at commit {commits}; {setting}: `{command}`."
