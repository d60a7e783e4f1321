"""`python -m mlplab.chapter [--only TABLE ...] [--render | --dry-run | --verify K] [-- OVERRIDE ...]`.

Without a mode: run (or continue) every sweep the chosen tables read, then write the docs. Overrides
after `--` make it a try (e.g. `-- trainer.max_epochs=1 seed=1,2`): its runs go to their own
outputs/chapter-try-<hash>/ and its pages to <that dir>/docs, never over the published ones.
Exit status 0 when everything asked for was done, 1 with one line `error: ...` otherwise (or when a
--verify cell missed), 130 / 143 when stopped by Ctrl-C / SIGTERM (run it again to continue).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from mlplab.chapter import __doc__ as package_doc
from mlplab.chapter import campaign
from mlplab.chapter.contents import TABLE_NAMES, Table, chosen_tables, sweeps_of
from mlplab.errors import UserError, printable, resolved

ROOT = Path(__file__).resolve().parents[3]  # the checkout: sweeps/, docs/, train.py


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1, e.g. 2")
    return value


CORES = os.cpu_count() or 1
MAX_SLOTS = 4 * CORES  # beyond, trials of one thread each only wait for a core


def slots(text: str) -> int:
    value = positive(text)
    if value > MAX_SLOTS:
        shown = text if len(text) <= 20 else text[:17] + "..."
        raise argparse.ArgumentTypeError(f"{shown!r}: at most {MAX_SLOTS} trials at a time on {CORES} "
                                         f"core{'' if CORES == 1 else 's'}, e.g. {CORES}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mlplab.chapter", description=package_doc.split("\n\n")[0])
    parser.add_argument("--only", action="append", metavar="TABLE", choices=TABLE_NAMES,
                        help=f"one table (repeatable): {', '.join(TABLE_NAMES)}")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--render", action="store_true", help="write the docs from the runs there are (a table without any keeps its page); train nothing")
    mode.add_argument("--dry-run", action="store_true", help="print what would run, and what is done; run nothing")
    mode.add_argument("--verify", type=positive, metavar="K",
                      help="rerun K published cells here and check each mean against its rerun interval "
                      "(drawn round the tables, best_mlp only when --only names it)")
    parser.add_argument("--slots", type=slots, default=CORES,
                        help="trials (packs) at a time, one CPU thread each (default: the cores, %(default)s)")
    parser.add_argument("--dir", type=Path, help="where the runs go (default outputs/chapter)")
    parser.add_argument("--docs", type=Path, help="where the pages go (default docs/)")
    parser.add_argument("--verify-seed", type=int, default=0, help="which cells --verify draws (default 0)")
    parser.add_argument("overrides", nargs="*", metavar="OVERRIDE",
                        help="Hydra overrides for every trial, after --: a try, kept apart from the chapter")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    # As typed, for the report that says what made it; a byte that is not UTF-8 (a path's) as its escape.
    args.command = shlex.join([*parser.prog.split(), *argv]).encode("utf-8", "backslashreplace").decode()
    return args


def chapter_dir(args: argparse.Namespace) -> Path:
    if args.dir:
        return resolved(args.dir, "--dir")
    if args.overrides:
        # surrogateescape: an override with a byte that is not UTF-8 still names one folder
        digest = hashlib.sha1(" ".join(args.overrides).encode("utf-8", "surrogateescape")).hexdigest()[:8]
        return ROOT / "outputs" / f"chapter-try-{digest}"
    return ROOT / "outputs" / "chapter"


def docs_dir(args: argparse.Namespace, runs: Path) -> Path:
    if args.docs:
        return resolved(args.docs, "--docs")
    return runs / "docs" if args.overrides else ROOT / "docs"


def run(args: argparse.Namespace, runs: Path, overrides: list[str]) -> list[str]:
    """Run the sweeps; the names of those that did not finish every trial."""
    head = campaign.head_commit(ROOT)
    if not overrides:
        campaign.check_committed(ROOT)
    for stem in sweeps_of(chosen_tables(args.only)):
        campaign.Sweep(stem, ROOT).spec(overrides)  # every sweep takes the overrides, before any trains
    campaign.write_manifest(runs, overrides)
    unfinished = []
    for stem in sweeps_of(chosen_tables(args.only)):
        sweep = campaign.Sweep(stem, ROOT)
        if sweep.directory(runs).exists() and (reason := campaign.staleness(sweep, runs, head)):
            campaign.set_aside_stale(sweep, runs, reason)
        print(f"chapter: {stem}", flush=True)
        returncode = campaign.run_sweep(sweep, runs, args.slots, overrides)
        if returncode == campaign.LAUNCHER_REFUSED:
            raise UserError(f"the sweep launcher refused {stem} (its error is above): fix that first; "
                            "nothing was published")
        if returncode != 0:
            unfinished.append(stem)
    return unfinished


def tables_to_write(runs: Path, tables: list[Table], smoke: bool) -> list[Table]:
    """The tables with something to say: a finished run of theirs, or runs set aside as stale (so the
    published numbers are known to be of other code). A table with neither keeps its page as it is:
    a folder that never held its runs (a mistyped --dir, --verify's reruns, a sweep stopped before any
    trial finished) says nothing against the published numbers."""
    from mlplab.chapter.cells import finished, source_runs

    def has_something(table: Table) -> bool:
        set_aside = any(campaign.set_aside(runs, stem) for stem in table.sweeps)
        return set_aside or not finished(source_runs(table, runs, smoke), table).empty

    chosen = [table for table in tables if has_something(table)]
    if not chosen:
        raise UserError(f"no finished run of {', '.join(sweeps_of(tables))} under {runs}: check --dir (the "
                        "chapter's runs are in outputs/chapter, a try's in outputs/chapter-try-<hash>), or run "
                        "the chapter first; no page was written")
    for table in tables:
        if table not in chosen:
            print(f"{table.name}: no finished run under {printable(runs)}: its page is left as it was", flush=True)
    return chosen


def dry_run(args: argparse.Namespace, runs: Path, overrides: list[str]) -> None:
    head = campaign.head_commit(ROOT)
    for stem in sweeps_of(chosen_tables(args.only)):
        sweep = campaign.Sweep(stem, ROOT)
        configurations, seeds = sweep.shape(overrides)
        directory = sweep.directory(runs)
        done = len(list(directory.glob("*/metrics.json"))) if directory.is_dir() else 0
        stale = campaign.staleness(sweep, runs, head) if directory.is_dir() else None
        state = f"stale ({stale}): would be set aside and run again" if stale else f"{done} finished"
        print(f"{stem}: {configurations} configurations x {seeds} seeds, {state} -> {directory}")
        print("  " + " ".join(campaign.launch_command(sweep, runs, args.slots, overrides)), flush=True)


def chapter(args: argparse.Namespace, runs: Path) -> int:
    overrides = campaign.chapter_overrides(runs, list(args.overrides))
    if args.dry_run:
        dry_run(args, runs, overrides)
        return 0
    if args.verify:
        from mlplab.chapter.verification import verify

        if args.overrides and campaign.read_manifest(runs) is None:
            raise UserError("--verify reruns each cell as docs/results/cells.json publishes it, its overrides "
                            "included: drop the overrides after --, or give --dir of the try that made them")

        tables = [table for table in chosen_tables(args.only) if args.only or table.drawn_by_verify]
        return 0 if verify(ROOT, runs, tables, args.verify, args.verify_seed, args.slots, docs_dir(args, runs),
                         args.command) else 1
    from mlplab.chapter.pages import check_page, write_pages

    docs = docs_dir(args, runs)
    check_page(docs, chosen_tables(args.only))  # before hours of training, not after
    unfinished = [] if args.render else run(args, runs, overrides)
    for line in write_pages(runs, docs, tables_to_write(runs, chosen_tables(args.only), bool(overrides)), overrides):
        print(line)
    if unfinished:
        raise UserError(f"{', '.join(unfinished)}: not every trial finished (see each sweep's line above; "
                        "its trial dirs hold each error); run the same command again to continue")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        runs = chapter_dir(args)
        return chapter(args, runs)
    except UserError as error:
        print(f"error: {printable(error)}", file=sys.stderr)
        return 1
    except OSError as error:  # a folder or file of --dir / --docs that cannot be read or written
        where = f": {printable(error.filename)}" if error.filename else ""
        print(f"error: {printable(error.strerror or error)}{where}: check that --dir and --docs are writable folders",
              file=sys.stderr)
        return 1
    except (campaign.Stopped, KeyboardInterrupt) as stop:
        signum = stop.signum if isinstance(stop, campaign.Stopped) else signal.SIGINT
        again = ("--verify starts its reruns afresh each time" if args.verify else
                 "the trials that ran keep their checkpoints; run the same command again to continue")
        print(f"stopped ({signal.Signals(signum).name}): {again}", file=sys.stderr)
        return 128 + signum


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # `--dry-run | head`: the reader has what it wanted
        sys.stderr.close()
        sys.exit(141)
