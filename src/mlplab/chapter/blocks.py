"""Generated blocks in a hand-written page: `<!-- chapter:NAME -->` ... `<!-- /chapter:NAME -->`.

The prose around a block is kept; the block's inside is replaced whole. A block the page lacks is an
error naming the markers to add, so that a table is never silently left out of the page.
"""

from __future__ import annotations

import re
from pathlib import Path

from mlplab.errors import UserError


def markers(name: str) -> tuple[str, str]:
    return f"<!-- chapter:{name} -->", f"<!-- /chapter:{name} -->"


BLOCK = re.compile(r"(<!-- chapter:([\w-]+) -->).*?(<!-- /chapter:\2 -->)", re.DOTALL)


def check_markers(text: str, names: list[str], page: Path) -> None:
    """Each named block is there once, its begin marker before its end marker."""
    missing = [name for name in names if any(marker not in text for marker in markers(name))]
    if missing:
        lines = " and ".join(f"'{markers(name)[0]}' ... '{markers(name)[1]}'" for name in missing)
        raise UserError(f"{page} has no block for {', '.join(missing)}: add {lines} where the table belongs.")
    for name in names:
        begin, end = markers(name)
        if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
            raise UserError(f"{page}: the block {name} must be one '{begin}' followed by one '{end}'; "
                            "fix the markers so that the table has exactly one place.")


def emptied(text: str) -> str:
    """The page with every block's inside removed."""
    return BLOCK.sub(lambda match: f"{match.group(1)}\n{match.group(3)}", text)


def replace_blocks(text: str, generated: dict[str, str], page: Path) -> str:
    check_markers(text, list(generated), page)
    for name, content in generated.items():
        begin, end = markers(name)
        pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
        text = pattern.sub(lambda _: f"{begin}\n{content.strip()}\n{end}", text, count=1)
    return text


def filled(text: str) -> set[str]:
    """The names of the page's blocks that hold something."""
    return {match.group(2) for match in BLOCK.finditer(text) if match.group(0) != emptied(match.group(0))}
