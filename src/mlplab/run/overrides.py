"""Values written into Hydra command-line overrides so that they arrive exactly as given.

A path (or any text) put on a `python train.py ...` command line as `key=value` passes two parsers:
Hydra's override grammar, where ` `, `,`, `=`, quotes, brackets, braces and `:` have meanings, and
then OmegaConf, which resolves `${...}` even inside a quoted value. `override(key, value)` writes
`key='<value>'` with both escapes, so `cfg[key]` reads back `value` itself. Every launcher or hint
that puts a path into an override goes through here.
"""

from __future__ import annotations

import re

from hydra.core.override_parser.types import Quote, QuotedString

# OmegaConf reads `${` as the start of an interpolation. `\${` is a literal `${`, and the backslashes
# right before an escaped `${` are themselves halved, so a run of n of them becomes 2n + `\${`.
# Backslashes anywhere else are kept as they are.
_INTERPOLATION_START = re.compile(r"(\\*)\$\{")
MISSING = "???"  # OmegaConf's marker of a missing value: no escape makes it a string


def omegaconf_literal(value: str) -> str:
    """`value` escaped so that OmegaConf resolves it to `value` itself, never to an interpolation."""
    return _INTERPOLATION_START.sub(lambda match: match.group(1) * 2 + "\\${", value)


def quoted_value(value: str) -> str:
    """`value` as one quoted element of Hydra's override grammar, OmegaConf's escapes included."""
    if value == MISSING:
        raise ValueError(f"{value!r} cannot be passed as an override value: OmegaConf reads it as a missing value")
    # Hydra's own inverse of its parser: quotes and the backslashes before them escaped.
    return QuotedString(text=omegaconf_literal(value), quote=Quote.single).with_quotes()


def override(key: str, value: str) -> str:
    """`key=<value quoted for Hydra>`: Hydra's parser and OmegaConf's resolution give back `value`."""
    return f"{key}={quoted_value(str(value))}"


# Characters an unquoted override value may hold and mean only themselves (paths, names, numbers).
_PLAIN = re.compile(r"[A-Za-z0-9_./@+-]+")


def readable_override(key: str, value: str) -> str:
    """`key=value` as a person would type it when nothing in `value` needs quoting, else `override`."""
    return f"{key}={value}" if _PLAIN.fullmatch(str(value)) and str(value) != MISSING else override(key, value)
