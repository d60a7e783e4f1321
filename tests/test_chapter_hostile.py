"""`python -m mlplab.chapter` against hostile input: broken folders, pages and records, wrong options,
mismatched overrides and signals. Each must end in one `error:` line (or argparse's usage line),
never a traceback, and never publish a run it cannot vouch for."""

from __future__ import annotations

import json
import shlex
import signal
import time
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import REPO, run_script, start_script
from mlplab.chapter import campaign, cells, contents
from mlplab.chapter.__main__ import MAX_SLOTS, main, parse_args
from mlplab.errors import UserError

TEMPLATE = REPO / "docs" / "results.md"
TINY = ["trainer.max_epochs=1", "+trainer.limit_train_batches=5", "seed=1,2"]


def one_error(capsys, *expected: str) -> str:
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert "Traceback" not in captured.err and len(errors) == 1, captured.err[-3000:]
    assert all(text in errors[0] for text in expected), errors[0]
    return errors[0]


def some_runs(root: Path) -> Path:
    """A chapter dir that holds a sweep dir (its contents are the case's) and a stale one set aside, so
    that the table has something to say and --render goes on to write it."""
    (root / "dropout").mkdir(parents=True)
    (root / campaign.STALE_DIR / "dropout.1").mkdir(parents=True)
    return root


@pytest.mark.parametrize("content", [
    b"{not json", b"\xff\xfe\x00garbage", b"[1, 2, 3]", b'{"table": "dropout"}', b'[{"table": "dropout"}]',
    b'[{"table": "dropout", "cell": {}, "sweep": "dropout", "overrides": [], "seeds": [1], "test_by_seed": [0.9], '
    b'"test_mean": "high", "rerun_low": 0.8, "rerun_high": 1.0}]',
    b'[{"table": "x", "cell": {}, "sweep": "s", "overrides": [], "seeds": [], "test_by_seed": [], '
    b'"test_mean": NaN, "rerun_low": null, "rerun_high": null}]',
    b'[{"table": "x", "cell": {}, "sweep": "s", "overrides": [], "seeds": [], "test_by_seed": [], '
    b'"test_mean": true, "rerun_low": null, "rerun_high": null}]',
])
@pytest.mark.parametrize("mode", [["--verify", "1"], ["--render"]])
def test_a_broken_cells_json_is_one_line_naming_it(tmp_path, capsys, content, mode):
    docs = tmp_path / "docs"
    (docs / "results").mkdir(parents=True)
    (docs / "results" / "cells.json").write_bytes(content)
    (docs / "results.md").write_text(TEMPLATE.read_text())
    runs = some_runs(tmp_path / "runs")
    assert main(["--only", "dropout", *mode, "--dir", str(runs), "--docs", str(docs)]) == 1
    one_error(capsys, "cells.json")


def test_docs_that_are_a_file_a_directory_or_not_text_are_one_line(tmp_path, capsys):
    runs = some_runs(tmp_path / "runs")
    cases = {}
    cases["a file"] = tmp_path / "file"
    cases["a file"].write_text("x")
    cases["results.md a folder"] = tmp_path / "d1"
    (cases["results.md a folder"] / "results.md").mkdir(parents=True)
    cases["not UTF-8"] = tmp_path / "d2"
    cases["not UTF-8"].mkdir()
    (cases["not UTF-8"] / "results.md").write_bytes(b"\xff\xfe<!-- chapter:dropout -->")
    cases["results a file"] = tmp_path / "d3"
    cases["results a file"].mkdir()
    (cases["results a file"] / "results.md").write_text(TEMPLATE.read_text())
    (cases["results a file"] / "results").write_text("x")
    cases["under /proc"] = Path("/proc/no-such/docs")
    for name, docs in cases.items():
        assert main(["--only", "dropout", "--render", "--dir", str(runs), "--docs", str(docs)]) == 1, name
        one_error(capsys)


@pytest.mark.parametrize("text", ["not: [yaml", "- a list\n- not a sweep\n", "parameters: 3\n"])
def test_a_broken_sweep_copy_in_the_sweep_dir_is_one_line_naming_it(tmp_path, capsys, text):
    runs = some_runs(tmp_path / "runs")
    (runs / "dropout" / "sweep.yaml").write_text(text)
    assert main(["--only", "dropout", "--render", "--dir", str(runs), "--docs", str(tmp_path / "docs")]) == 1
    one_error(capsys, "sweep.yaml")


def test_a_timing_line_cut_short_is_left_out(tmp_path):
    (tmp_path / campaign.TIMING_FILE).write_text(
        '{"sweep": "dropout", "seconds": 12.5, "slots": 2}\n{"sweep": "dropout", "seco\n{"sweep": 3}\n[1]\n')
    assert campaign.read_timing(tmp_path) == [{"sweep": "dropout", "seconds": 12.5, "slots": 2}]


@pytest.mark.parametrize("record", [
    "not json", "[1, 2]", '{"git": ["x"]}', '{"git": {"commit": 12345}}', '{"git": {"commit": "--output=PWNED"}}',
    '{"git": {"commit": "zzzz not hex"}}', '{"git": {}}',
])
def test_a_run_record_that_names_no_commit_makes_its_sweep_stale(tmp_path, record):
    runs = tmp_path / "runs"
    (runs / "dropout" / "pack-000").mkdir(parents=True)
    (runs / "dropout" / "pack-000" / "run_info.json").write_text(record.replace("PWNED", str(tmp_path / "pwned")))
    reason = campaign.staleness(campaign.Sweep("dropout", REPO), runs, campaign.head_commit(REPO))
    assert reason is not None and "does not say which commit" in reason
    assert not (tmp_path / "pwned").exists()  # never handed to git as an option


def test_a_commit_this_clone_lacks_is_named_as_such(tmp_path):
    runs = tmp_path / "runs"
    (runs / "dropout" / "pack-000").mkdir(parents=True)
    (runs / "dropout" / "pack-000" / "run_info.json").write_text(json.dumps({"git": {"commit": "ab" * 20}}))
    reason = campaign.staleness(campaign.Sweep("dropout", REPO), runs, campaign.head_commit(REPO))
    assert reason == f"runs of commit {'ab' * 5}, which this clone does not have"


@pytest.mark.parametrize("value", [str(MAX_SLOTS + 1), "99999999999999999999"])
def test_more_slots_than_the_cores_can_use_are_refused(value):
    result = run_script("mlplab.chapter", "--dry-run", "--slots", value)
    assert result.returncode == 2 and "at most" in result.stderr and "Traceback" not in result.stderr


def test_a_dir_made_with_other_overrides_is_refused_and_verify_takes_no_overrides(tmp_path, capsys):
    runs = tmp_path / "runs"
    campaign.write_manifest(runs, ["trainer.max_epochs=1"])
    assert main(["--only", "dropout", "--render", "--dir", str(runs), "--docs", str(tmp_path / "d"), "--",
                 "trainer.max_epochs=2"]) == 1
    one_error(capsys, "trainer.max_epochs=1", "trainer.max_epochs=2", "another --dir")
    other = tmp_path / "fresh"
    assert main(["--only", "dropout", "--verify", "1", "--dir", str(other), "--docs", str(tmp_path / "d"), "--",
                 "trainer.max_epochs=2"]) == 1
    one_error(capsys, "--verify reruns each cell as")


@pytest.mark.parametrize("override", ["trainer.max_epochs=[", "hydra.run.dir=/tmp/x", "dropout=p09",
                                      "trainer.max_epochs=1,2"])
def test_an_override_the_launcher_cannot_run_is_refused_before_anything_trains(tmp_path, capsys, override):
    runs, docs = tmp_path / "runs", tmp_path / "docs"
    code = main(["--only", "dropout", "--dir", str(runs), "--docs", str(docs), "--", *TINY, override])
    assert code == 1 and not (runs / "dropout").exists() and not docs.exists()
    one_error(capsys)


def test_launcher_statuses_of_a_stop_are_read_as_a_stop():
    assert campaign.stop_signal(130) == signal.SIGINT and campaign.stop_signal(143) == signal.SIGTERM
    assert campaign.stop_signal(-signal.SIGHUP) == signal.SIGHUP and campaign.stop_signal(-signal.SIGKILL)
    assert campaign.stop_signal(0) is None and campaign.stop_signal(1) is None and campaign.stop_signal(2) is None


@pytest.mark.slow
def test_a_sweep_narrowed_to_one_value_and_a_nan_metric(tmp_path, capsys, mnist, monkeypatch):
    monkeypatch.setenv("MNIST_ROOT", str(mnist))
    runs, docs = tmp_path / "runs", tmp_path / "docs"
    assert main(["--only", "dropout", "--slots", "1", "--dir", str(runs), "--docs", str(docs), "--", *TINY,
                 "dropout=none"]) == 0
    block = (docs / "results.md").read_text()
    assert "2 finished runs of 2" in block and "| none | 2 |" in block
    metrics = next(runs.glob("dropout/pack-*/seed-1/metrics.json"))
    metrics.write_text(json.dumps({**json.loads(metrics.read_text()), "test_acc": float("nan")}))
    assert main(["--only", "dropout", "--render", "--dir", str(runs), "--docs", str(docs)]) == 0
    block = (docs / "results.md").read_text()
    assert "1 finished runs of 2" in block and "Partial" in block


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])  # SIGHUP takes the same path
def test_a_stopped_chapter_starts_no_further_sweep(tmp_path, mnist, signum):
    runs, docs = tmp_path / "runs", tmp_path / "docs"
    arguments = ["--only", "l2", "--dir", str(runs), "--docs", str(docs), "--slots", "1", "--",
                 "trainer.max_epochs=2", "+trainer.limit_train_batches=100", "seed=1,2"]
    process = start_script("mlplab.chapter", *arguments, env={"MNIST_ROOT": str(mnist)})
    deadline = time.monotonic() + 120
    while not list(runs.glob("l2_penalty/pack-*/seed-1")) and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(3)
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, err[-3000:]
    assert "Traceback" not in err and f"stopped ({signal.Signals(signum).name})" in err
    # l2 reads dropout (its no-L2 cell), l2_penalty, l2_decoupled, in that order: stopped in the second.
    assert not (runs / "l2_decoupled").exists()
    assert [entry["sweep"] for entry in campaign.read_timing(runs)] == ["dropout", "l2_penalty"]


# Arguments as a shell hands them over: spaces, quotes, `=`, newlines, and bytes that are not UTF-8
# (which Python passes on as lone surrogates).
ARGUMENT = st.text(st.sampled_from(["a", " ", "'", '"', "=", "\n", "$", "é", "\udcff", "\udc80"]), max_size=8)


@given(ARGUMENT, st.lists(ARGUMENT, max_size=3))
def test_the_command_a_report_names_is_writable_and_says_what_was_typed(folder, overrides):
    arguments = ["--only", "dropout", "--verify", "1", "--dir", folder or "x", "--", *overrides]
    command = parse_args(arguments).command
    command.encode("utf-8")  # the report is UTF-8: written after the reruns, it must not fail then
    if not any("\udc80" <= char <= "\udcff" for argument in arguments for char in argument):
        assert shlex.split(command) == ["python", "-m", "mlplab.chapter", *arguments]


@pytest.mark.parametrize("option", ["--dir", "--docs"])
@pytest.mark.parametrize("below", ["", "sub"])
def test_a_symbolic_link_loop_given_as_a_folder_is_one_line(tmp_path, capsys, option, below):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    others = {"--dir": ["--docs", str(tmp_path / "docs")], "--docs": ["--dir", str(some_runs(tmp_path / "runs"))]}
    assert main(["--only", "dropout", "--render", option, str(loop / below), *others[option]]) == 1
    one_error(capsys, "symbolic link loop", option)


def test_a_narrowed_sweep_s_one_valued_list_is_one_value_per_run(tmp_path):
    # A depth sweep narrowed to one width (as --verify runs it): the list is every run's value, not spread.
    (tmp_path / "sweep.yaml").write_text("parameters:\n  model.hidden_sizes:\n    values: [[100, 100, 100, 100]]\n"
                                         "  activation:\n    values: [sigmoid]\n")
    frame = cells.with_fixed_parameters(pd.DataFrame({"seed": range(10)}), tmp_path)
    assert list(frame["model.hidden_sizes"]) == [[100, 100, 100, 100]] * 10 and set(frame["activation"]) == {"sigmoid"}
    assert list(contents.hidden_layers(frame)["layers"]) == [4] * 10


def test_a_run_whose_value_its_sweep_never_swept_is_one_line(tmp_path):
    (tmp_path / "dropout").mkdir()
    (tmp_path / "dropout" / "sweep.yaml").write_text("parameters:\n  dropout:\n    values: [none, p01]\n")
    group = pd.DataFrame({"sweep": ["dropout"], "dropout": ["p99"], "seed": [1]})
    with pytest.raises(UserError, match=r"dropout=p99, which its sweep.yaml does not sweep"):
        cells.rerun_overrides(group, tmp_path)


@pytest.mark.parametrize("value", [True, False, "0.978", None, float("nan"), 1.5, -0.1, [0.97]])
def test_an_accuracy_that_is_no_number_in_range_is_no_result(value):
    table = contents.TABLES[[table.name for table in contents.TABLES].index("dropout")]
    frame = pd.DataFrame({"status": ["finished", "finished"], "dropout": ["none", "none"],
                          contents.TEST: [value, 0.97], contents.VALIDATION: [0.97, 0.97]})
    assert list(cells.finished(frame, table)[contents.TEST]) == [0.97]


SET_ASIDE = {"dropout.1/": True, "dropout.12/": True, "dropout.1": False, "dropout.x/": False, "dropout./": False,
             "dropout/": False, "dropoutX.1/": False, "dropout.1.2/": False, "-> dropout.1": False}


def test_only_folders_set_aside_stale_count_as_set_aside(tmp_path):
    for name, counts in SET_ASIDE.items():
        runs = tmp_path / f"case{len(list(tmp_path.iterdir()))}"
        folder = runs / campaign.STALE_DIR
        folder.mkdir(parents=True)
        if name.startswith("-> "):
            (folder / "real").mkdir()
            (folder / "dropout.1").symlink_to(folder / "real")
        elif name.endswith("/"):
            (folder / name.rstrip("/")).mkdir()
        else:
            (folder / name).write_text("x")
        assert bool(campaign.set_aside(runs, "dropout")) == counts, name
