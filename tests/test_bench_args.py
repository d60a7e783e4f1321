"""The packs' bench arguments refuse hostile values in one line, as the other bench scripts' do
(tests/test_tools_errors.py): bench/throughput.py --packs and --json, bench/packs.py's options.
Fast tests call the argument types in this process; the slow ones start the scripts as a user would.
No figure is timed here: the scripts print their figures."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import pytest

from helpers import REPO, script_env
from mlplab.run.config_checks import MAX_MEMBERS

BENCH = REPO / "bench"
HUGE = "9" * 30


@pytest.fixture(scope="module")
def throughput(request):
    """bench/throughput.py as a module (bench/ is its import path, as when it runs)."""
    sys.path.insert(0, str(BENCH))
    request.addfinalizer(lambda: sys.path.remove(str(BENCH)))
    import throughput

    return throughput


HOSTILE_PACKS = ["", ",", "0", "-1", "1,,5", "1,5,", "5,5", "1.5", "nan", "inf", "1e2", "abc", "0x10", HUGE,
                 str(MAX_MEMBERS + 1), f"1,{MAX_MEMBERS + 1}", "1;5", "1 5", "\0", "[1,5]"]


@pytest.mark.parametrize("text", HOSTILE_PACKS)
def test_pack_sizes_refuse_each_hostile_value_naming_it(text, throughput):
    with pytest.raises(argparse.ArgumentTypeError, match=rf"^{re.escape(repr(text))} is not allowed: pack sizes in "
                                                         rf"\[1, {MAX_MEMBERS}\] separated by commas"):
        throughput.pack_sizes(text)


@pytest.mark.parametrize(("text", "sizes"), [("1,5,16", (1, 5, 16)), ("32", (32,)), (" 1, 5 ", (1, 5)),
                                              (str(MAX_MEMBERS), (MAX_MEMBERS,)), ("16,1", (16, 1))])
def test_pack_sizes_take_distinct_sizes_in_their_range(text, sizes, throughput):
    assert throughput.pack_sizes(text) == sizes


def test_the_default_packs_are_the_issues_sizes(throughput):
    assert throughput.DEFAULT_PACKS == {"cpu": (1, 5, 16), "cuda": (1, 5, 32)}


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr[-3000:]
    return lines[0]


CASES = [
    ("throughput.py", ["--packs", "0"], "'0'"), ("throughput.py", ["--packs", "5,5"], "'5,5'"),
    ("throughput.py", ["--packs", "257"], "'257'"), ("throughput.py", ["--packs", ""], "''"),
    ("throughput.py", ["--packs"], "--packs"), ("throughput.py", ["--json", "/nonexistent/folder/x.json"], "--json"),
    ("throughput.py", ["--json", "."], "--json"),
    ("packs.py", ["--epochs", "0"], "'0'"), ("packs.py", ["--epochs", "nan"], "'nan'"),
    ("packs.py", ["--members", "1"], "'1'"), ("packs.py", ["--members", str(MAX_MEMBERS + 1)], str(MAX_MEMBERS + 1)),
    ("packs.py", ["--runs", "0"], "'0'"), ("packs.py", ["--runs", HUGE], HUGE),
    ("packs.py", ["--limit-train-batches", "0"], "'0'"), ("packs.py", ["--limit-train-batches", "551"], "'551'"),
    ("packs.py", ["--parts", "bogus"], "'bogus'"), ("packs.py", ["--parts"], "--parts"),
    ("packs.py", ["--slots", "0"], "'0'"), ("packs.py", ["--sweep-runs", "-1"], "'-1'"),
    ("packs.py", ["--sweep-activations", "11"], "'11'"), ("packs.py", ["--bogus"], "--bogus"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("script", "argv", "names"), CASES)
def test_a_pack_bench_refuses_a_hostile_argument_in_one_line(script, argv, names, tmp_path):
    result = subprocess.run([sys.executable, str(BENCH / script), *argv], cwd=tmp_path, env=script_env(),
                            capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert "Traceback" not in output and names in one_error_line(result.stderr)
    assert not any(tmp_path.iterdir())
