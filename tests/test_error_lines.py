"""The chapter's and the report's error line stays one line a terminal shows as it is, whatever a path holds: a newline, an
escape sequence, a byte that is not UTF-8 (passed on by Python as a lone surrogate)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlplab.chapter.__main__ import main as chapter
from mlplab.errors import printable
from mlplab.tools.report.__main__ import main as report

HOSTILE = ["new\nline", "carriage\rreturn", "tab\there", "\x1b[31mred", "line\u2028separator", "not-utf8-\udcff",
           "nul-ish-\x7f", "plain é and ☃"]
COMMANDS = {
    "report DIR": lambda path: report([f"/tmp/missing-{path}"]),
    "chapter --dir": lambda path: chapter(["--render", "--only", "dropout", "--dir", f"/tmp/missing-{path}"]),
    "chapter --docs": lambda path: chapter(["--render", "--only", "dropout", "--docs", f"/tmp/missing-{path}/x",
                                            "--dir", f"/tmp/missing-{path}"]),
}


@pytest.mark.parametrize("path", HOSTILE)
@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
def test_an_error_naming_a_hostile_path_is_one_printable_line(capsys, command, path):
    assert command(path) in (1, 2)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    (line,) = captured.err.splitlines()
    assert line.startswith("error: ") and line.isprintable()
    assert printable(path) in line  # the path is named, escaped where it must be


@given(st.text())
def test_printable_is_one_line_and_leaves_printable_text_alone(text):
    shown = printable(text)
    assert shown.isprintable() and len(shown.splitlines()) <= 1
    shown.encode("utf-8")
    if text.isprintable():
        assert shown == text
