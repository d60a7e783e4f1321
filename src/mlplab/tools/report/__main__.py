"""`python -m mlplab.tools.report DIR [DIR ...] [options]`: the command line of the report.

Exit status 0 when the report was written (with --watch: once nothing runs any more), 1 with one
line `error: ...` when it could not be (a DIR missing or without runs, a metric no run recorded, an
unwritable --out), 2 for bad options, 130 when --watch is stopped by Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from mlplab.errors import UserError, printable, resolved
from mlplab.tools.report import __doc__ as package_doc
from mlplab.tools.report import MAX_POINTS, Written, write_report
from mlplab.tools.report.watch import watch

WATCH_SECONDS = 30


def whole_number(minimum: int, example: str):
    """An argparse type: a whole number >= minimum, else one line naming the value and an example."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= {minimum}, e.g. {example}")
        return value

    return parse


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mlplab.tools.report", description=package_doc.split("\n\n")[0])
    parser.add_argument("dirs", type=Path, nargs="+", metavar="DIR",
                        help="folder searched recursively for run directories (a sweep dir, outputs/, one run); "
                             "several are compared on one page")
    parser.add_argument("--metric", help="metrics.json key to rank runs by (default: a sweep dir's own metric, "
                                         "e.g. val_acc_best for val/acc, else test_acc)")
    parser.add_argument("--out", type=Path,
                        help="HTML file to write (default DIR/report.html, ./report.html for several DIRs); "
                             "the Markdown table goes next to it (.md)")
    parser.add_argument("--smoke", action="store_true",
                        help="rank smoke checks too (runs with fast_dev_run or limit_*_batches, e.g. +experiment=smoke): "
                             "for a quick try of the tools; by default they are listed as smoke checks, never ranked")
    parser.add_argument("--watch", action="store_true",
                        help="rewrite the page every --every seconds while any run is running, the page reloading "
                             "itself meanwhile; stop when none runs")
    parser.add_argument("--every", type=whole_number(1, "--every 30"), default=WATCH_SECONDS, metavar="SECONDS",
                        help=f"with --watch: seconds between pages (default {WATCH_SECONDS})")
    parser.add_argument("--points", type=whole_number(2, "--points 100"), default=MAX_POINTS, metavar="N",
                        help=f"at most N points per curve on the page (default {MAX_POINTS}): bounds its size for "
                             "hundreds of runs")
    order = parser.add_mutually_exclusive_group()
    order.add_argument("--lower-is-better", dest="minimize", action="store_true", default=None,
                       help="rank ascending (default: the sweep's goal; else ascending only for losses, errors "
                            "and seconds)")
    order.add_argument("--higher-is-better", dest="minimize", action="store_false", default=None)
    return parser.parse_args(argv)


def output_file(out: Path) -> Path:
    """Where the page goes: through a link to its target (the page replaces the file, never the link),
    and never over a folder or a device (the page is written beside and renamed into place)."""
    target = resolved(out, "--out")
    if target.exists() and not target.is_file():
        raise UserError(f"--out {out}: {target} is not a regular file (a folder, a device or a pipe): give a "
                        "file path, e.g. --out report.html")
    return target


def report_once(args: argparse.Namespace) -> Written:
    roots = [resolved(path, "DIR") for path in args.dirs]
    out = output_file(args.out or (roots[0] / "report.html" if len(roots) == 1 else Path("report.html")))
    return write_report(roots, out, args.metric, args.minimize, args.smoke,
                        refresh=args.every if args.watch else None, max_points=args.points)


def summary(written: Written) -> str:
    return (f"{written.finished} runs, {written.unfinished} failed, unfinished or smoke checks "
            f"-> {written.html} and {written.markdown}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if not args.watch:
            print(summary(report_once(args)))
            return 0
        def tell(written: Written) -> None:
            still = f"; {written.running} running, next page in {args.every} s" if written.running else ""
            print(summary(written) + still, flush=True)

        status = watch(lambda: report_once(args), args.every, tell)
        if status != 0:
            print("stopped watching: the page is the last one written, whole", file=sys.stderr)
        return status
    except UserError as error:
        print(f"error: {printable(error)}", file=sys.stderr)
        return 1
    except OSError as error:  # a folder under DIR or --out that cannot be read or written
        where = f": {printable(error.filename)}" if error.filename else ""
        print(f"error: {printable(error.strerror or error)}{where}: check that DIR is readable and --out writable",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
