"""The tools around runs refuse hostile values in one line: `python -m mlplab.tools.preview` (its `out=` path
and what the file system does to it) and the bench scripts' arguments (bench/process.py,
bench/throughput.py, bench/minimal_train.py). Fast tests call the checks in this process; the slow
ones start the real entry points, as a user would."""

from __future__ import annotations

import argparse
import errno
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from helpers import REPO, options, script_env
from mlplab.tools import preview
from mlplab.errors import UserError

BENCH = REPO / "bench"
LONG_NAME = "a" * 300 + ".png"
HUGE = "9" * 30


@pytest.fixture(scope="module")
def bench(request):
    """The bench scripts as modules (bench/ is their import path, as when they run)."""
    sys.path.insert(0, str(BENCH))
    request.addfinalizer(lambda: sys.path.remove(str(BENCH)))
    import minimal_train
    import process

    return {"minimal_train": minimal_train, "process": process}


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr[-3000:]
    return lines[0]


def run_tool(command: list[str], cwd: Path, **environment: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *command], cwd=cwd, env={**script_env(), **environment},
                          capture_output=True, text=True, timeout=300)


def listing(folder: Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*")}


# --- preview: the out= path -------------------------------------------------------------------

def hostile_outs(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """out= values that cannot name a new PNG, and a word of what each refusal says."""
    (tmp_path / "a_file").write_text("")
    (tmp_path / "folder").mkdir()
    return {
        "a folder": (str(tmp_path / "folder"), "is a folder"),
        "the current folder": (".", "is a folder"),
        "a missing folder": (str(tmp_path / "missing" / "deeper" / "x.png"), "does not exist"),
        "a file as folder": (str(tmp_path / "a_file" / "x.png"), "is a file, not a folder"),
        "not a png": (str(tmp_path / "x.jpg"), "ending in .png"),
        "no suffix": (str(tmp_path / "x"), "ending in .png"),
        "a hidden name only": (str(tmp_path / ".png"), "ending in .png"),
        "a device": ("/dev/null", "ending in .png"),
        "empty": ("", "ending in .png"),
        "blank": ("   ", "ending in .png"),
        "a name too long": (str(tmp_path / LONG_NAME), "too long"),
        "a folder name too long": (str(tmp_path / ("b" * 300) / "x.png"), "too long"),
        "a NUL byte": (str(tmp_path / "x\0.png"), "nul character"),
        "an unknown user's home": ("~no_such_user_here/x.png", "cannot be used"),
    }


def test_every_hostile_out_is_refused_before_any_work_in_one_line(tmp_path):
    cases = hostile_outs(tmp_path)
    files = listing(tmp_path)
    for name, (value, says) in cases.items():
        with pytest.raises(preview.UsageError) as refused:
            preview.check_out(value)
        message = str(refused.value)
        assert "\n" not in message and message.startswith(f"out={value!r}") and says in message.lower(), (name, message)
    assert listing(tmp_path) == files  # the checks only looked


@pytest.mark.parametrize("value", ["x.png", "X.PNG", "deep/er/../x.png"])
def test_a_writable_png_path_passes(value, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "deep" / "er").mkdir(parents=True)
    assert preview.check_out(value) == Path(value)


def figure():
    from mlplab.plots import new_figure

    drawing = new_figure(1, 1)
    drawing.add_subplot().plot([0, 1])
    return drawing


@pytest.mark.parametrize("failure", [errno.ENOSPC, errno.EROFS, errno.EIO])
def test_a_failed_write_leaves_no_partial_png_and_no_stray_file(failure, tmp_path, monkeypatch):
    out = tmp_path / "augment.png"
    out.write_bytes(b"the previous preview")
    drawing = figure()

    def half_then_fail(stream, **kwargs):
        stream.write(b"\x89PNG half a file")
        raise OSError(failure, os.strerror(failure))

    monkeypatch.setattr(drawing, "savefig", half_then_fail)
    with pytest.raises(UserError, match=rf"^out='{out}' cannot be written: {os.strerror(failure)}"):
        preview.write_png(drawing, out)
    assert listing(tmp_path) == {"augment.png"} and out.read_bytes() == b"the previous preview"


@pytest.mark.parametrize("folder", ["/proc", "/sys"])
def test_a_folder_that_takes_no_files_is_refused_by_the_write_in_one_line(folder):
    if not Path(folder, "self").exists() and folder == "/proc":
        pytest.skip("no /proc here")
    with pytest.raises(UserError, match=rf"^out='{folder}/x.png' cannot be written: "):
        preview.write_png(figure(), Path(folder) / "x.png")
    assert not Path(folder, "x.png").exists()


def test_a_write_is_a_whole_png(tmp_path):
    out = preview.write_png(figure(), tmp_path / "augment.png")
    assert Image.open(out).format == "PNG" and listing(tmp_path) == {"augment.png"}


@pytest.mark.parametrize(("argv", "says"), [
    (["out=a.png", "out=b.png"], "out= is given 2 times"),
    (["-x"], "'-x' is not an option"),
    (["--out", "x.png"], "'--out' is not an option"),
    (["out=x.jpg"], "ending in .png"),
])
def test_a_bad_command_line_is_status_2(argv, says, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert preview.main(argv) == 2
    assert says in one_error_line(capsys.readouterr().err) and listing(tmp_path) == set()


PREVIEW_CASES = {  # the command line, the exit status, what the one line names
    "/proc": (["out=/proc/x.png"], 1, "out='/proc/x.png' cannot be written"),
    "augment=bogus": (["augment=bogus"], 1, "augment/bogus"),
    "augment.rotation=nan": (["augment=affine", "augment.rotation=nan"], 1, "augment.rotation=nan"),
    "data.root=/proc": (["data.root=/proc"], 1, "/proc/MNIST/raw"),
    "a folder": (None, 2, "is a folder"),
    "a missing folder": (None, 2, "does not exist"),
    "a file as folder": (None, 2, "is a file, not a folder"),
    "not a png": (None, 2, "ending in .png"),
    "empty": (None, 2, "out=''"),
    "a name too long": (None, 2, "too long"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", PREVIEW_CASES)
def test_preview_refuses_in_one_line_and_writes_nothing(case, mnist, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    argv, status, names = PREVIEW_CASES[case]
    argv = argv or [f"out={hostile_outs(tmp_path)[case][0]}"]
    files = listing(tmp_path)
    result = run_tool(["-m", "mlplab.tools.preview", *argv], cwd=work)
    output = result.stdout + result.stderr
    assert result.returncode == status, output[-3000:]
    assert "Traceback" not in output and "HYDRA_FULL_ERROR" not in output and names in one_error_line(result.stderr)
    assert listing(tmp_path) == files and not Path("/proc/x.png").exists()


@pytest.mark.slow
def test_preview_help_is_the_usage(tmp_path):
    result = run_tool(["-m", "mlplab.tools.preview", "--help"], cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.startswith("usage: python -m mlplab.tools.preview")
    assert listing(tmp_path) == set()


# --- the bench scripts' arguments ------------------------------------------------------------

HOSTILE_INTEGERS = ["0", "-1", "1001", "nan", "inf", "-inf", "1.5", "1e3", "abc", "", " ", HUGE, "-" + HUGE, "0x10",
                    "1_000_000", "\0"]


@pytest.mark.parametrize("text", HOSTILE_INTEGERS)
def test_bounded_int_refuses_each_hostile_value_naming_it(text, bench):
    parse = bench["minimal_train"].bounded_int(1, 1000)
    with pytest.raises(argparse.ArgumentTypeError, match=rf"^{re.escape(repr(text))} is not allowed: an integer in "
                                                         r"\[1, 1000\]$"):
        parse(text)


@pytest.mark.parametrize(("text", "value"), [("1", 1), ("1000", 1000), (" 7 ", 7), ("+3", 3)])
def test_bounded_int_takes_integers_in_its_range(text, value, bench):
    assert bench["minimal_train"].bounded_int(1, 1000)(text) == value


def test_process_offers_every_logger_option_and_only_those(bench):
    assert bench["process"].logger_options() == options("logger")


def test_a_refused_argument_is_one_line_with_status_2(bench, capsys):
    parser = bench["minimal_train"].OneLineParser(prog="tool.py")
    parser.add_argument("--epochs", type=bench["minimal_train"].bounded_int(1, 9))
    with pytest.raises(SystemExit) as stopped:
        parser.parse_args(["--epochs", "nan"])
    assert stopped.value.code == 2
    assert one_error_line(capsys.readouterr().err) == (
        "error: argument --epochs: 'nan' is not allowed: an integer in [1, 9] (see tool.py --help)")


BENCH_CASES = [
    ("process.py", ["--logger", "bogus"], "'bogus'"), ("process.py", ["--logger", ""], "''"),
    ("process.py", ["--logger", "csv;rm -rf x"], "'csv;rm -rf x'"), ("process.py", ["--logger"], "--logger"),
    ("process.py", ["--epochs", "0"], "'0'"), ("process.py", ["--epochs", "-1"], "'-1'"),
    ("process.py", ["--epochs", "nan"], "'nan'"), ("process.py", ["--epochs", "inf"], "'inf'"),
    ("process.py", ["--epochs", HUGE], HUGE), ("process.py", ["--runs", "0"], "'0'"),
    ("process.py", ["--runs", "101"], "'101'"), ("process.py", ["--runs", "two"], "'two'"),
    ("process.py", ["--bogus"], "--bogus"),
    ("throughput.py", ["--steps", "0"], "'0'"), ("throughput.py", ["--steps", "nan"], "'nan'"),
    ("throughput.py", ["--steps", HUGE], HUGE), ("throughput.py", ["--warmup", "-1"], "'-1'"),
    ("throughput.py", ["--device", "bogus"], "'bogus'"), ("throughput.py", ["--device", "cuda:99"], "'cuda:99'"),
    ("throughput.py", ["--device", "meta"], "'meta'"),
    ("minimal_train.py", ["--epochs", "0"], "'0'"), ("minimal_train.py", ["--epochs", "inf"], "'inf'"),
    ("minimal_train.py", ["--seed", "-1"], "'-1'"), ("minimal_train.py", ["--seed", str(2**32)], str(2**32)),
    ("minimal_train.py", ["--seed", "nan"], "'nan'"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("script", "argv", "names"), BENCH_CASES)
def test_a_bench_script_refuses_a_hostile_argument_in_one_line(script, argv, names, tmp_path):
    result = run_tool([str(BENCH / script), *argv], cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert "Traceback" not in output and names in one_error_line(result.stderr)
    assert listing(tmp_path) == set()


@pytest.mark.slow
@pytest.mark.parametrize("script", ["minimal_train.py", "throughput.py"])
def test_a_bench_script_without_mnist_says_where_it_looked(script, tmp_path):
    # (process.py's runs are train.py's, which may download MNIST where there is network.)
    result = run_tool([str(BENCH / script)], cwd=tmp_path, MNIST_ROOT=str(tmp_path / "nothing"))
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert "Traceback" not in output and "MNIST" in one_error_line(result.stderr)
