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
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from mlplab.chapter import __doc__ as package_doc
from mlplab.chapter import campaign
from mlplab.chapter.contents import TABLE_NAMES, chosen_tables, sweeps_of
from mlplab.errors import UserError

ROOT = Path(__file__).resolve().parents[3]  # the checkout: sweeps/, docs/, train.py


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1, e.g. 2")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mlplab.chapter", description=package_doc.split("\n\n")[0])
    parser.add_argument("--only", action="append", metavar="TABLE", choices=TABLE_NAMES,
                        help=f"one table (repeatable): {', '.join(TABLE_NAMES)}")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--render", action="store_true", help="write the docs from the runs there are; train nothing")
    mode.add_argument("--dry-run", action="store_true", help="print what would run, and what is done; run nothing")
    mode.add_argument("--verify", type=positive, metavar="K",
                      help="rerun K published cells here and check each mean against its rerun interval "
                      "(drawn round the tables, best_mlp only when --only names it)")
    parser.add_argument("--slots", type=positive, default=os.cpu_count() or 1,
                        help="trials (packs) at a time, one CPU thread each (default: the cores, %(default)s)")
    parser.add_argument("--dir", type=Path, help="where the runs go (default outputs/chapter)")
    parser.add_argument("--docs", type=Path, help="where the pages go (default docs/)")
    parser.add_argument("--verify-seed", type=int, default=0, help="which cells --verify draws (default 0)")
    parser.add_argument("overrides", nargs="*", metavar="OVERRIDE",
                        help="Hydra overrides for every trial, after --: a try, kept apart from the chapter")
    return parser.parse_args(argv)


def chapter_dir(args: argparse.Namespace) -> Path:
    if args.dir:
        return args.dir.resolve()
    if args.overrides:
        digest = hashlib.sha1(" ".join(args.overrides).encode()).hexdigest()[:8]
        return ROOT / "outputs" / f"chapter-try-{digest}"
    return ROOT / "outputs" / "chapter"


def docs_dir(args: argparse.Namespace, runs: Path) -> Path:
    if args.docs:
        return args.docs.resolve()
    return runs / "docs" if args.overrides else ROOT / "docs"


def run(args: argparse.Namespace, runs: Path) -> list[str]:
    """Run the sweeps; the names of those that did not finish every trial."""
    head = campaign.head_commit(ROOT)
    if not args.overrides:
        campaign.check_committed(ROOT)
    unfinished = []
    for stem in sweeps_of(chosen_tables(args.only)):
        sweep = campaign.Sweep(stem, ROOT)
        if sweep.directory(runs).exists() and (reason := campaign.staleness(sweep, runs, head)):
            campaign.set_aside_stale(sweep, runs, reason)
        print(f"chapter: {stem}", flush=True)
        if campaign.run_sweep(sweep, runs, args.slots, list(args.overrides)) != 0:
            unfinished.append(stem)
    return unfinished


def dry_run(args: argparse.Namespace, runs: Path) -> None:
    head = campaign.head_commit(ROOT)
    for stem in sweeps_of(chosen_tables(args.only)):
        sweep = campaign.Sweep(stem, ROOT)
        configurations, seeds = sweep.shape(args.overrides)
        directory = sweep.directory(runs)
        done = len(list(directory.glob("*/metrics.json"))) if directory.is_dir() else 0
        stale = campaign.staleness(sweep, runs, head) if directory.is_dir() else None
        state = f"stale ({stale}): would be set aside and run again" if stale else f"{done} finished"
        print(f"{stem}: {configurations} configurations x {seeds} seeds, {state} -> {directory}")
        print("  " + " ".join(campaign.launch_command(sweep, runs, args.slots, list(args.overrides))))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    runs = chapter_dir(args)
    try:
        if args.dry_run:
            dry_run(args, runs)
            return 0
        if args.verify:
            from mlplab.chapter.verification import verify

            tables = [table for table in chosen_tables(args.only) if args.only or table.drawn_by_verify]
            passed = verify(ROOT, runs, tables, args.verify, args.verify_seed, args.slots, docs_dir(args, runs))
            return 0 if passed else 1
        unfinished = [] if args.render else run(args, runs)
        from mlplab.chapter.pages import write_pages

        for line in write_pages(runs, docs_dir(args, runs), chosen_tables(args.only), list(args.overrides)):
            print(line)
        if unfinished:
            raise UserError(f"{', '.join(unfinished)}: not every trial finished (see each sweep's line above); "
                            "run the same command again to continue")
        return 0
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except (campaign.Stopped, KeyboardInterrupt) as stop:
        signum = stop.signum if isinstance(stop, campaign.Stopped) else signal.SIGINT
        print(f"stopped ({signal.Signals(signum).name}): the trials that ran keep their checkpoints; run the same "
              "command again to continue", file=sys.stderr)
        return 128 + signum


if __name__ == "__main__":
    sys.exit(main())
