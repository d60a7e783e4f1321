"""What the chapter is made of: its tables, each read from one or more sweeps' runs.

A table's cells are configurations (the values of its `rows` key, and of `columns` in a two-way
table), each over the same seeds. `prepare` turns a sweep's swept values into the table's keys where
they are not already (the number of hidden layers from `model.hidden_sizes`; one strength scale for the
two forms of L2, whose no-L2 cell is the dropout sweep's `none` runs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from mlplab.errors import UserError

VALIDATION = "val_acc_best"  # the best epoch's validation accuracy: what picked the tested checkpoint
TEST = "test_acc"

# The order the sweeps run in: the reference net's tables first, the 40-epoch 800-800 net last.
SWEEP_ORDER = ("baselines", "activations", "dropout", "norms", "l2_penalty", "l2_decoupled", "augmentation",
               "baselines_full_train", "depth", "best_mlp")


@dataclass(frozen=True)
class Source:
    """Runs a table takes from a sweep: all of them, or those whose `where` values match, with
    `assign` values added (a shared baseline cell labelled as the table's keys say)."""

    sweep: str
    where: dict[str, str] = field(default_factory=dict)
    assign: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Table:
    name: str
    title: str
    sources: tuple[Source, ...]
    rows: str | None
    columns: str | None = None
    ranking: str = VALIDATION
    targets: dict[str, float] = field(default_factory=dict)  # row value -> the textbook's test accuracy
    prepare: Callable[[pd.DataFrame], pd.DataFrame] | None = None
    # --verify draws from it unless --only names tables: not the 40-epoch 800-800 net, an hour a cell here
    drawn_by_verify: bool = True

    @property
    def keys(self) -> list[str]:
        return [key for key in (self.rows, self.columns) if key]

    @property
    def sweeps(self) -> list[str]:
        return list(dict.fromkeys(source.sweep for source in self.sources))


def hidden_layers(frame: pd.DataFrame) -> pd.DataFrame:
    """Depth as a number of hidden layers, from the swept widths ("[100,100]" -> 2)."""
    widths = frame["model.hidden_sizes"].astype(str).str.strip("[] ")
    return frame.assign(layers=widths.str.split(",").map(len))


def l2_strength(frame: pd.DataFrame) -> pd.DataFrame:
    """Both forms on one scale: decoupled decay d per step matches the penalty λ·Σw² at d = 2λ (its
    gradient, as plain SGD would apply it). The no-L2 cell stands at strength 0 of each form."""
    weight = pd.to_numeric(frame["l2.weight"], errors="coerce").fillna(0.0)
    strength = weight.where(frame["l2"] != "penalty", 2 * weight)
    frame = frame.assign(strength=strength.map(lambda value: f"{value:g}"))
    baseline = frame[frame["l2"] == "none"]
    return pd.concat([frame[frame["l2"] != "none"], baseline.assign(l2="penalty"), baseline.assign(l2="decoupled")],
                     ignore_index=True)


TEXTBOOK_TARGETS = {"seed_pytorch": 0.976, "seed_keras": 0.977}

TABLES = (
    Table("baselines", "The textbook's two examples (split protocol)", (Source("baselines"),), "experiment",
          targets=TEXTBOOK_TARGETS),
    Table("baselines_full_train", "The textbook's two examples (the textbook's protocol: all 60k, final model)",
          (Source("baselines_full_train"),), "experiment", ranking=TEST, targets=TEXTBOOK_TARGETS),
    Table("protocols", "The two protocols side by side", (Source("baselines", assign={"protocol": "split"}),
          Source("baselines_full_train", assign={"protocol": "all 60k"})), "protocol", columns="experiment",
          ranking=TEST),
    Table("activations", "Activations", (Source("activations"),), "activation"),
    Table("norms", "Activation x normalization", (Source("norms"),), "norm", columns="activation"),
    Table("dropout", "Dropout", (Source("dropout"),), "dropout"),
    Table("l2", "L2 regularization: penalty and decoupled decay at matched strength",
          (Source("l2_penalty"), Source("l2_decoupled"),
           Source("dropout", where={"dropout": "none"}, assign={"l2": "none", "l2.weight": 0.0})),
          "strength", columns="l2", prepare=l2_strength),
    Table("augmentation", "Data augmentation", (Source("augmentation"),), "augment"),
    Table("depth", "Depth: sigmoid vs ReLU without normalization", (Source("depth"),), "layers",
          columns="activation", prepare=hidden_layers),
    Table("best_mlp", "The best plain MLP (`+experiment=best_mlp`)", (Source("best_mlp"),), None,
          drawn_by_verify=False),
)
TABLE_NAMES = tuple(table.name for table in TABLES)


def chosen_tables(only: list[str] | None) -> list[Table]:
    if not only:
        return list(TABLES)
    unknown = [name for name in only if name not in TABLE_NAMES]
    if unknown:
        raise UserError(f"--only {' '.join(unknown)}: no such table; the chapter's tables are {', '.join(TABLE_NAMES)}.")
    return [table for table in TABLES if table.name in only]


def sweeps_of(tables: list[Table]) -> list[str]:
    """The sweeps the tables read, in the order they run."""
    needed = {sweep for table in tables for sweep in table.sweeps}
    return [stem for stem in SWEEP_ORDER if stem in needed]
