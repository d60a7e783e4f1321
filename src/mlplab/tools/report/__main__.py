"""`python -m mlplab.tools.report DIR [options]`: the command line of the report.

Exit status 0 when the report was written, 1 with one line `error: ...` when it could not be
(DIR missing or without runs, a metric no run recorded, an unwritable --out), 2 for bad options.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from mlplab.errors import UserError
from mlplab.tools.report import __doc__ as package_doc
from mlplab.tools.report import write_report


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mlplab.tools.report", description=package_doc.split("\n\n")[0])
    parser.add_argument("dir", type=Path, help="folder searched recursively for run directories (holding metrics.json)")
    parser.add_argument("--metric", default="test_acc", help="metrics.json key to rank runs by (default test_acc)")
    parser.add_argument("--out", type=Path,
                        help="HTML file to write (default DIR/report.html); the Markdown table goes next to it (.md)")
    parser.add_argument("--smoke", action="store_true",
                        help="rank smoke checks too (runs with fast_dev_run or limit_*_batches, e.g. +experiment=smoke): "
                             "for a quick try of the tools; by default they are listed as smoke checks, never ranked")
    order = parser.add_mutually_exclusive_group()
    order.add_argument("--lower-is-better", dest="minimize", action="store_true", default=None,
                       help="rank ascending (default: ascending only for losses, errors and seconds)")
    order.add_argument("--higher-is-better", dest="minimize", action="store_false", default=None)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    root = args.dir.resolve()
    out = args.out or root / "report.html"
    try:
        html_path, markdown_path, finished, unfinished = write_report(root, out, args.metric, args.minimize,
                                                                   args.smoke)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # a folder under DIR or --out that cannot be read or written
        where = f": {error.filename}" if error.filename else ""
        print(f"error: {error.strerror or error}{where}: check that DIR is readable and --out writable",
              file=sys.stderr)
        return 1
    print(f"{finished} runs, {unfinished} failed, unfinished or smoke checks -> {html_path} and {markdown_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
