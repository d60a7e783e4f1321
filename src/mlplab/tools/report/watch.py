"""`--watch`: the page rewritten every few seconds while any run runs, and reloading itself meanwhile.

Each pass writes the whole page through a temporary file and a rename, so a browser reloading it,
or a Ctrl-C between passes, never meets half a page. The last pass, once nothing runs, writes the
page without its reload.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from mlplab.tools.report import Written

INTERRUPTED_EXIT = 130  # what a shell reports for Ctrl-C


def watch(write: Callable[[], Written], seconds: float, tell: Callable[[Written], None],
          sleep: Callable[[float], None] = time.sleep) -> int:
    """Call `write` (and `tell` what it wrote) every `seconds` until a pass finds no run running:
    0 then, 130 on Ctrl-C."""
    try:
        while True:
            written = write()
            tell(written)
            if not written.running:
                return 0
            sleep(seconds)
    except KeyboardInterrupt:
        return INTERRUPTED_EXIT
