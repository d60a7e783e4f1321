"""The sweep launcher and the report against a hostile user: sweep dirs Hydra's grammar or the OS would
trip on, options naming GPUs that are not there, broken files where the launcher keeps its records, a
disk that fills up, agents that cannot reach wandb. Each case ends in one line (no traceback, no Hydra
hint), nothing written that should not be, or a sweep that works.

Fast tests run the launcher in this process on a probe program: a tiny Hydra app (its own conf/) that
finishes, or fails as Hydra or Python make a program fail. The slow ones train real tiny runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote

import plotly
import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from helpers import REPO, probe_project, script_env
from mlplab.tools.report.__main__ import main as report_main
from mlplab.tools.report.runs import load_runs
from mlplab.tools.sweep import online, pack_launch, slots, trials
from mlplab.run.failures import error_in_text
from mlplab.tools.sweep.__main__ import main
from mlplab.tools.sweep.paths import INTERPOLATION_START, run_root
from mlplab.errors import SweepError
from mlplab.tools.sweep.spec import load_sweep
from mlplab.tools.sweep.trial_commands import make_trial

HYDRA_HINT = "HYDRA_FULL_ERROR"
HOSTILE_NAMES = ["a b", "a,b", "a=b", "it's", 'say "x"', "$HOME", "${x}", "back\\slash", "[0]", "{a:1}", "a:b",
                 "#c", "ü", "😀", "sp ,='\"$${x}ü"]

PROBE = '''
import json, os, sys
import hydra
from hydra.core.hydra_config import HydraConfig

ARGS_FILE = sys.argv.pop(1) if len(sys.argv) > 1 and sys.argv[1].endswith("args.json") else None


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg):
    out = HydraConfig.get().runtime.output_dir
    if cfg.behaviour == "hydra_error":
        print(cfg.broken)  # an interpolation of nothing: Hydra reports it with its boilerplate
    if cfg.behaviour == "user_error":
        sys.exit("error: seed=-1 is not allowed: a whole number >= 0")
    if ARGS_FILE:  # what a program given ${args_json_file} does: read it (before Hydra takes the rest)
        json.dump(json.load(open(ARGS_FILE)), open(os.path.join(out, "seen.json"), "w"))
    json.dump({"status": "finished"}, open(os.path.join(out, "status.json"), "w"))


if __name__ == "__main__":
    main()
'''


@pytest.fixture
def program_root(tmp_path: Path) -> Path:
    return probe_project(tmp_path, PROBE, "seed: 0\nbehaviour: finish\nbroken: ${nope}\n")


def sweep_file(folder: Path, values: list, *fixed: str, name: str = "probe.yaml", key: str = "behaviour") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump({"program": "probe.py", "method": "grid", "parameters": {key: {"values": values}},
                                    "command": ["${env}", "${interpreter}", "${program}", *fixed,
                                                "${args_no_hyphens}"]}))
    return path


def launch(sweep: Path, sweep_dir: Path | str, program_root: Path, *options: str) -> int:
    return main([str(sweep), "--offline", "--fresh-processes", "--stagger", "0", "--sweep-dir", str(sweep_dir),
                 "--program-root", str(program_root), *options])


def one_error_line(captured) -> str:
    """The launcher's stderr: exactly one `error:` line, no traceback, no Hydra hint."""
    assert "Traceback" not in captured.err + captured.out and HYDRA_HINT not in captured.err + captured.out
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    return lines[0]


def records(sweep_dir: Path) -> dict[str, dict]:
    return {path.parent.name: json.loads(path.read_text()) for path in sorted(sweep_dir.glob("*/trial.json"))}


# ---------------------------------------------------------------------------------------------
# A. Any path the OS accepts is a sweep dir; its trials' overrides name it exactly


@given(st.lists(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00/"), min_size=1,
                        max_size=20), min_size=1, max_size=3))
@settings(max_examples=200, deadline=None)
def test_a_trials_run_dir_override_names_its_folder_exactly(parts):
    sweep_dir = Path("/tmp", *parts)
    config = {"program": "probe.py", "command": ["${interpreter}", "${program}", "${args_no_hyphens}"]}
    trial = make_trial(config, sweep_dir, 0, {"seed": 1})
    parsed = OverridesParser.create().parse_override(trial.command[-1])
    assert parsed.key_or_group == "hydra.run.dir"
    assert OmegaConf.create({"d": parsed.value()}).d == str(trial.run_dir)
    assert trial.directory == sweep_dir / trial.trial_id
    # Hydra copies the run dir unescaped into hydra.runtime.output_dir: it must hold no `${`.
    assert INTERPOLATION_START not in str(trial.run_dir)
    assert trial.run_dir == (run_root(sweep_dir) / trial.trial_id)


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_probe_trials_finish_in_a_hostile_sweep_dir(name, program_root, tmp_path, capsys):
    sweep_dir = tmp_path / f"sweeps {name}"
    assert launch(sweep_file(tmp_path, ["finish"]), sweep_dir, program_root) == 0
    captured = capsys.readouterr()
    assert "1 finished, 0 failed" in captured.out and "Traceback" not in captured.err
    (record,) = records(sweep_dir).values()
    assert record["outcome"] == "finished" and record["run_status"] == "finished"
    (trial_dir,) = [path for path in sweep_dir.iterdir() if path.is_dir()]
    assert (trial_dir / "status.json").is_file() and (trial_dir / ".hydra" / "config.yaml").is_file()


@pytest.mark.parametrize(("make", "expected"), [
    (lambda tmp: tmp / ("x" * 256), "256 bytes"),                            # a name over NAME_MAX
    (lambda tmp: tmp / "/".join(["y" * 200] * 20), "no room under"),         # a path over PATH_MAX
    (lambda tmp: tmp / "a-file", "is a file"),                               # a file where the folder goes
    (lambda tmp: tmp / "a-file" / "below", "is a file"),                     # a file above it
    (lambda tmp: "/proc/mlplab-nowhere/sweep", "/proc/mlplab-nowhere"),     # a folder that cannot be created
])
def test_a_sweep_dir_the_os_refuses_is_one_line_before_any_trial(make, expected, program_root, tmp_path, capsys):
    (tmp_path / "a-file").write_text("not a folder")
    sweep = sweep_file(tmp_path, ["finish"])
    before = sorted(path.name for path in tmp_path.iterdir())
    assert launch(sweep, make(tmp_path), program_root) == 2
    line = one_error_line(capsys.readouterr())
    assert expected in line
    assert sorted(path.name for path in tmp_path.iterdir()) == before  # nothing written
    assert (tmp_path / "a-file").read_text() == "not a folder"


@pytest.mark.parametrize("empty", ["", " "])
def test_an_empty_sweep_dir_is_refused_not_taken_for_the_current_folder(empty, program_root, tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        launch(sweep_file(tmp_path, ["finish"]), empty, program_root)
    assert stopped.value.code == 2 and "--sweep-dir" in one_error_line(capsys.readouterr())
    assert not (Path.cwd() / "launcher.lock").exists()


def test_a_dry_run_with_a_too_long_name_is_refused_too(program_root, tmp_path, capsys):
    assert launch(sweep_file(tmp_path, ["finish"]), tmp_path / ("z" * 300), program_root, "--dry-run") == 2
    assert "300 bytes" in one_error_line(capsys.readouterr())


# ---------------------------------------------------------------------------------------------
# A failed trial's reason is its real error, never Hydra's boilerplate


@pytest.mark.parametrize(("log", "reason"), [
    ("Error executing job with overrides: ['a=1']\nTraceback (most recent call last):\n  File \"x.py\", line 3\n"
     "    error = cfg.broken\nomegaconf.errors.InterpolationKeyError: Interpolation key 'nope' not found\n"
     "    full_key: broken\n    object_type=dict\n\nSet the environment variable HYDRA_FULL_ERROR=1 for a complete "
     "stack trace.\n", "omegaconf.errors.InterpolationKeyError: Interpolation key 'nope' not found"),
    ("mismatched input '=' expecting <EOF>\nSee https://hydra.cc/docs/1.2/advanced/override_grammar/basic for details"
     "\n\nSet the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace.\n",
     "mismatched input '=' expecting <EOF>"),
    ("Epoch 0: 100%\r Epoch 0: 50%\rwarning: slow\nerror: dropout.p=1.5 is not allowed: a probability in [0, 1).\n",
     "error: dropout.p=1.5 is not allowed: a probability in [0, 1)."),
    ("wandb: Starting wandb agent\nwandb: ERROR Find detailed error logs at: /tmp/debug-cli.log\n"
     "Error: Failed to verify credentials with https://api.example: unreachable\n",
     "Error: Failed to verify credentials with https://api.example: unreachable"),
    ("Traceback (most recent call last):\n  File \"a.py\", line 1\nValueError: first\n\nDuring handling of the above "
     "exception, another exception occurred:\n\nTraceback (most recent call last):\n  File \"a.py\", line 3\n"
     "RuntimeError: second\n", "RuntimeError: second"),
    ("Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace.\n", ""),
    ("", ""),
])
def test_the_real_error_of_a_log(log, reason):
    assert error_in_text(log) == reason


def test_failed_trials_show_their_real_error_on_the_terminal_and_in_trial_json(program_root, tmp_path, capsys):
    sweep_dir = tmp_path / "sweep"
    assert launch(sweep_file(tmp_path, ["finish", "hydra_error", "user_error"]), sweep_dir, program_root) == 1
    captured = capsys.readouterr()
    assert HYDRA_HINT not in captured.out + captured.err and "Error executing job" not in captured.out
    assert "1 finished, 2 failed" in captured.out
    errors = {record["overrides"][0]: record.get("error") for record in records(sweep_dir).values()}
    assert errors["behaviour=hydra_error"] == ("omegaconf.errors.InterpolationKeyError: "
                                               "Interpolation key 'nope' not found")
    assert errors["behaviour=user_error"] == "error: seed=-1 is not allowed: a whole number >= 0"
    for error in errors.values():
        assert error is None or error in captured.out  # the summary line names the same reason
    frame = load_runs(sweep_dir).set_index("overrides")
    assert "Interpolation key 'nope' not found" in frame.loc["behaviour=hydra_error", "detail"]
    assert HYDRA_HINT not in " ".join(frame["detail"])


# ---------------------------------------------------------------------------------------------
# B. Liveness, GPUs, ${args_json_file}, the agent's error, OSErrors


def test_a_trial_json_left_running_by_a_killed_launcher_reads_killed_and_a_live_one_running(tmp_path):
    dead, alive = tmp_path / "dead", tmp_path / "alive"
    for directory in (dead, alive):
        directory.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", str(alive)])
    try:
        deadline = time.monotonic() + 10
        cmdline = Path(f"/proc/{sleeper.pid}/cmdline")
        while str(alive) not in cmdline.read_bytes().decode() and time.monotonic() < deadline:
            time.sleep(0.05)
        (dead / "trial.json").write_text(json.dumps({"outcome": "running", "pid": 2**22 + 3, "overrides": ["seed=1"]}))
        (alive / "trial.json").write_text(json.dumps({"outcome": "running", "pid": sleeper.pid,
                                                      "overrides": ["seed=2"]}))
        states = dict(zip(load_runs(tmp_path)["label"], load_runs(tmp_path)["status"]))
        assert states == {"dead": "killed", "alive": "running"}
        assert trials.recorded_outcome(dead) == "interrupted"  # a rerun continues it
        # On another host its process cannot be seen from here: it stays as recorded.
        (dead / "trial.json").write_text(json.dumps({"outcome": "running", "pid": 2**22 + 3, "host": "elsewhere"}))
        assert trials.trial_state(dead) == "running"
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.parametrize(("gpus", "visible", "message"), [
    ("a,b", ["0", "1"], "distinct GPU indices"),
    ("-1", ["0"], "distinct GPU indices"),
    ("0,00", ["0", "1"], "distinct GPU indices"),
    ("7", ["0", "1"], "GPU 7 is not visible here; this machine shows 2 GPU(s)"),
    ("0", [], "GPU 0 is not visible here; this machine shows no GPU"),
])
def test_gpus_that_are_not_visible_are_refused_before_anything(gpus, visible, message, program_root, tmp_path, capsys,
                                                               monkeypatch):
    monkeypatch.setattr(slots, "visible_gpu_count", lambda: len(visible))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert launch(sweep_file(tmp_path, ["finish"]), tmp_path / "sweep", program_root, "--gpus", gpus, "--dry-run") == 2
    assert message in one_error_line(capsys.readouterr())
    assert not (tmp_path / "sweep").exists()


def test_gpus_index_into_an_inherited_cuda_visible_devices(program_root, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    monkeypatch.setattr(slots, "visible_gpu_count", lambda: 2)  # what torch counts under that setting
    assert [slot.gpus for slot in slots.make_slots("0,1", 2, None)] == ["2", "3", "2", "3"]
    assert slots.visible_gpus({"CUDA_VISIBLE_DEVICES": "GPU-aa,GPU-bb"}, count=2) == ["GPU-aa", "GPU-bb"]
    assert slots.visible_gpus({}, count=3) == ["0", "1", "2"]
    with pytest.raises(SweepError, match="GPU 2 is not visible.*CUDA_VISIBLE_DEVICES='2,3'"):
        slots.make_slots("2", None, None)
    sweep_dir = tmp_path / "sweep"
    assert launch(sweep_file(tmp_path, ["finish"]), sweep_dir, program_root, "--gpus", "1") == 0
    (record,) = records(sweep_dir).values()
    assert record["cuda_visible_devices"] == "3"  # physical GPU 3, the second the launcher sees


@pytest.mark.slow  # counts with torch in a process of its own
def test_gpus_on_this_machine_are_checked_against_what_torch_sees(program_root, tmp_path):
    result = subprocess.run([sys.executable, "-m", "mlplab.tools.sweep", str(sweep_file(tmp_path, ["finish"])), "--offline",
                             "--dry-run", "--gpus", "63", "--program-root", str(program_root)],
                            env=script_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "GPU 63 is not visible here" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_args_json_file_is_written_and_passed_as_wandbs_agent_does(program_root, tmp_path, capsys):
    sweep = sweep_file(tmp_path, [1, 2], "${args_json_file}", key="seed")
    sweep_dir = tmp_path / "sweep ${x}"
    assert launch(sweep, sweep_dir, program_root, "--dry-run") == 0
    assert "args.json" in capsys.readouterr().out
    assert launch(sweep, sweep_dir, program_root) == 0, capsys.readouterr()
    for record in records(sweep_dir).values():
        trial_dir = sweep_dir / record["trial"]
        seed = int(record["overrides"][0].split("=")[1])
        assert json.loads((trial_dir / "args.json").read_text()) == {"seed": seed}  # wandb's ${args_json}
        assert json.loads((trial_dir / "seen.json").read_text()) == {"seed": seed}  # what the program read
        assert record["command"][2] == str(run_root(sweep_dir.resolve()) / record["trial"] / "args.json")


def test_a_macro_wandbs_agent_would_drop_is_refused(program_root, tmp_path, capsys):
    assert launch(sweep_file(tmp_path, ["finish"], "${args_jason}"), tmp_path / "s", program_root, "--dry-run") == 2
    line = one_error_line(capsys.readouterr())
    assert "'${args_jason}' is not a macro" in line and "${args_json_file}" in line


def test_a_failing_agent_is_one_line_from_its_own_log(program_root, tmp_path, capsys, monkeypatch):
    failing_agent = [sys.executable, "-c", "import sys; print('wandb: Starting wandb agent'); "
                     "print('wandb: ERROR Find detailed error logs at: /tmp/x.log'); "
                     "sys.exit('Error: Failed to verify credentials with https://api.example: no route')"]
    monkeypatch.setattr(online, "offline_reason", lambda forced: None)
    monkeypatch.setattr("mlplab.tools.sweep.__main__.offline_reason", lambda forced: None)
    monkeypatch.setattr(online, "agent_command", lambda *args: failing_agent)
    code = main([str(sweep_file(tmp_path, ["finish"])), "--sweep-id", "abc", "--project", "p", "--agents", "2",
                 "--stagger", "0", "--sweep-dir", str(tmp_path / "logs"), "--program-root", str(program_root)])
    out = capsys.readouterr().out
    assert code == 1
    failures = [line for line in out.splitlines() if "agent failed" in line]
    assert len(failures) == 2 and all("exit 1): Error: Failed to verify credentials" in line for line in failures)
    assert str(tmp_path / "logs" / "agent-0.log") in out


@pytest.mark.slow  # wandb's agent tries the server for ~20 s before it gives up
def test_a_real_agent_with_a_bad_key_and_no_server_is_reported_in_one_line(program_root, tmp_path):
    env = {key: value for key, value in script_env().items() if key != "WANDB_MODE"}
    env |= {"WANDB_API_KEY": "0123456789abcdef" * 2 + "01234567", "WANDB_BASE_URL": "http://127.0.0.1:9"}
    result = subprocess.run([sys.executable, "-m", "mlplab.tools.sweep", str(sweep_file(tmp_path, ["finish"])), "--sweep-id",
                             "abc123", "--project", "p", "--entity", "e", "--sweep-dir", str(tmp_path / "logs"),
                             "--program-root", str(program_root)], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "Traceback" not in result.stdout + result.stderr
    (failure,) = [line for line in result.stdout.splitlines() if "agent failed" in line]
    log_tail = (tmp_path / "logs" / "agent-0.log").read_text().strip().splitlines()[-1]
    assert log_tail in failure


def test_a_disk_that_fills_up_mid_sweep_is_one_line_and_stops_the_sweep(program_root, tmp_path, capsys, monkeypatch):
    real_start = trials.start_trial
    started = []

    def start_then_fill_up(trial, *args):
        if started:
            raise OSError(28, "No space left on device", str(trial.directory / "trial.json"))
        started.append(trial)
        return real_start(trial, *args)

    monkeypatch.setattr(pack_launch, "start_trial", start_then_fill_up)  # how offline starts a single trial
    sweep_dir = tmp_path / "sweep"
    assert launch(sweep_file(tmp_path, ["finish", "user_error"]), sweep_dir, program_root, "--agents", "1") == 2
    line = one_error_line(capsys.readouterr())
    assert "the sweep stopped: No space left on device" in line and "trial.json" in line


def test_broken_records_in_the_sweep_dir_are_set_aside_and_the_trials_run(program_root, tmp_path, capsys):
    sweep = sweep_file(tmp_path, ["finish", "finish "], key="behaviour")
    sweep_dir = tmp_path / "sweep"
    config = load_sweep(sweep)
    first, second = (make_trial(config, sweep_dir.resolve(), index, {"behaviour": value})
                     for index, value in enumerate(["finish", "finish "]))
    sweep_dir.mkdir()
    first.directory.write_text("a trial dir that is a file")
    second.directory.mkdir()
    (second.directory / "trial.json").write_text("{not json")
    assert launch(sweep, sweep_dir, program_root) == 0, capsys.readouterr()
    assert [record["outcome"] for record in records(sweep_dir).values()] == ["finished", "finished"]
    assert sorted(path.name for path in (sweep_dir / ".previous").iterdir()) == [f"{first.trial_id}.1",
                                                                                 f"{second.trial_id}.1"]


@pytest.mark.parametrize(("content", "expected"), [
    (b"\xff\xfe\x00binary", "is not a text file"),
    (b"", "expected a mapping"),
    (b"- a\n- b\n", "expected a mapping"),
    (b"program: [", "is not valid YAML"),
    (b"program: probe.py\nmethod: grid\nparameters: {seed: {values: ['a]b']}}\n"
     b"command: ['${interpreter}', '${program}', '${args_no_hyphens}']\n", "a trial does not compose"),
    (b"program: probe.py\nmethod: grid\nparameters: {" + b", ".join(b"p%d: {values: [1,2,3,4,5,6,7,8,9,10]}" % i
                                                                   for i in range(6))
     + b"}\ncommand: ['${interpreter}', '${program}', '${args_no_hyphens}']\n", "the grid has 1000000 trials"),
])
def test_odd_sweep_files_are_one_line(content, expected, program_root, tmp_path, capsys):
    sweep = tmp_path / "odd.yaml"
    sweep.write_bytes(content)
    assert launch(sweep, tmp_path / "sweep", program_root) == 2
    assert expected in one_error_line(capsys.readouterr())
    assert not (tmp_path / "sweep").exists()


def test_a_sweep_file_that_is_a_folder_is_one_line(program_root, tmp_path, capsys):
    assert launch(tmp_path, tmp_path / "sweep", program_root) == 2
    assert "cannot read the sweep file" in one_error_line(capsys.readouterr())


# ---------------------------------------------------------------------------------------------
# The report: a bounded page, odd folders


def fake_figure_run(directory: Path, seed: int, figure_bytes: int) -> None:
    (directory / ".hydra").mkdir(parents=True)
    (directory / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"seed={seed}"]))
    (directory / "metrics.json").write_text(json.dumps({"test_acc": 0.9 + seed / 1000, "epochs": 1}))
    (directory / "figures").mkdir()
    for name in ("weights.png", "confusion_matrix.png"):
        (directory / "figures" / name).write_bytes(b"\x89PNG" + os.urandom(figure_bytes))


def test_the_page_links_run_figures_so_its_size_does_not_grow_with_them(tmp_path):
    root = tmp_path / "runs #1 ?%"
    for seed in range(40):
        fake_figure_run(root / f"run {seed}", seed, figure_bytes=200_000)
    assert report_main([str(root), "--out", str(tmp_path / "pages" / "report.html")]) == 0
    page = (tmp_path / "pages" / "report.html").read_text()
    assert len(page.encode()) - len(plotly.offline.get_plotlyjs().encode()) < 200_000  # 40 runs with 16 MB of figures: the page holds none of them
    links = [part.split('"')[0] for part in page.split('<img src="')[1:] if not part.startswith("data:")]
    assert len(links) == 80 and all('loading="lazy"' in part for part in page.split('<img src="')[1:]
                                    if not part.startswith("data:"))
    assert all((tmp_path / "pages" / unquote(link)).resolve().is_file() for link in links)


@pytest.mark.parametrize("case", ["dir is a file", "out is markdown", "overrides.yaml is garbage",
                                  "trial.json is a folder"])
def test_report_hostile_inputs(case, tmp_path, capsys):
    fake_figure_run(tmp_path / "runs" / "a", 1, 10)
    fake_figure_run(tmp_path / "runs" / "b", 2, 10)
    argv = [str(tmp_path / "runs")]
    if case == "dir is a file":
        argv = [str(tmp_path / "runs" / "a" / "metrics.json")]
    elif case == "out is markdown":
        argv += ["--out", str(tmp_path / "report.md")]
    elif case == "overrides.yaml is garbage":
        (tmp_path / "runs" / "a" / ".hydra" / "overrides.yaml").write_text("- 'a b c = ]['\n- [1, 2]\n- seed=1\n")
    else:
        (tmp_path / "runs" / "b" / "trial.json").mkdir()
    code = report_main(argv)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    if case in ("dir is a file", "out is markdown"):
        assert code == 1 and len(captured.err.splitlines()) == 1 and not (tmp_path / "report.md").exists()
    else:
        assert code == 0 and "2 runs" in captured.out


# ---------------------------------------------------------------------------------------------
# Real training in a hostile sweep dir: slow


@pytest.mark.slow
def test_a_real_trial_finishes_in_a_sweep_dir_named_with_every_grammar_character(mnist, tmp_path):
    sweep = tmp_path / "tiny.yaml"
    sweep.write_text(yaml.safe_dump({
        "program": "train.py", "method": "grid", "metric": {"name": "val/acc", "goal": "maximize"},
        "parameters": {"seed": {"values": [1, 2]}},
        "command": ["${env}", "${interpreter}", "${program}", "+experiment=smoke", "trainer.max_epochs=1",
                    "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
                    "logger=csv", "data.val_size=1000", "${args_no_hyphens}"]}))
    # The two seeds as one pack (its trial dirs links into it) in the first, one process each in the second.
    for sweep_dir, packing in ((tmp_path / "sp ,='\"$ ${x} ü", []), (tmp_path / "sp ,='\"$ ü \\", ["--pack", "1"])):
        result = subprocess.run([sys.executable, "-m", "mlplab.tools.sweep", str(sweep), "--offline", "--sweep-dir",
                                 str(sweep_dir), "--program-root", str(REPO), *packing], env=script_env(),
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert "Traceback" not in result.stderr and HYDRA_HINT not in result.stdout + result.stderr
        assert result.stdout.count("] started ") == (2 if packing else 1)
        for record in records(sweep_dir).values():
            assert record["outcome"] == "finished" and record["run_status"] == "finished"
            trial_dir = sweep_dir / record["trial"]
            assert trial_dir.is_symlink() != bool(packing)
            assert 0 < json.loads((trial_dir / "metrics.json").read_text())["test_acc"] <= 1
        assert len(records(sweep_dir)) == 2
        report = subprocess.run([sys.executable, "-m", "mlplab.tools.report", str(sweep_dir), "--smoke"], env=script_env(),
                                capture_output=True, text=True, timeout=300)
        assert report.returncode == 0 and "2 runs, 0 failed" in report.stdout, report.stderr
        page = (sweep_dir / "report.html").read_text()
        links = [part.split('"')[0] for part in page.split('<img src="')[1:] if not part.startswith("data:")]
        assert links and all((sweep_dir / unquote(link)).is_file() for link in links)


# ---------------------------------------------------------------------------------------------
# A sweep file cannot make Hydra or a trial build code


@pytest.mark.parametrize("key, value", [
    ("hydra.callbacks.evil._target_", "builtins.open"),
    ("+hydra.callbacks.evil._target_", "os.system"),
    ("hydra.job_logging.handlers.console.class", "os.system"),
    ("hydra.job.env_set.LD_PRELOAD", "/tmp/evil.so"),
    ("hydra.launcher._target_", "subprocess.Popen"),
    ("activation._target_", "builtins.exec"),
    ("norm._target_", "torch.nn.ReLU"),
])
@pytest.mark.parametrize("where", ["parameters", "command"])
def test_a_sweep_file_naming_code_is_refused_before_any_trial(tmp_path, capsys, key, value, where):
    config = {"program": "train.py", "method": "grid", "metric": {"name": "val/acc", "goal": "maximize"},
              "parameters": {"seed": {"values": [1]}},
              "command": ["${env}", "${interpreter}", "${program}", "+experiment=smoke", "${args_no_hyphens}"]}
    if where == "parameters":  # a + prefix is refused as a name: wandb's parameter names take none
        config["parameters"][key] = {"value": value}
    else:
        config["command"].insert(3, f"{key}={value}")
    sweep = tmp_path / "evil.yaml"
    sweep.write_text(yaml.safe_dump(config))
    code = main([str(sweep), "--offline", "--dry-run", "--sweep-dir", str(tmp_path / "sweep"),
                       "--program-root", str(REPO)])
    assert code == 2
    line = one_error_line(capsys.readouterr())
    assert key.lstrip("+").split(".")[0] in line and ("is not allowed" in line or "is refused" in line)
    assert not (tmp_path / "sweep").exists()


def test_a_sweep_may_not_set_hydra_as_a_whole(tmp_path, capsys):
    sweep = tmp_path / "s.yaml"
    sweep.write_text(yaml.safe_dump({
        "program": "train.py", "method": "grid", "metric": {"name": "val/acc", "goal": "maximize"},
        "parameters": {"seed": {"values": [1]}},
        "command": ["${env}", "${interpreter}", "${program}", "+experiment=smoke", "${args_no_hyphens}"]}))
    code = main([str(sweep), "--offline", "--dry-run", "--sweep-dir", str(tmp_path / "sweep"), "--program-root",
                 str(REPO), "++hydra={callbacks:{evil:{_target_:logging.FileHandler,filename:/tmp/x}}}"])
    assert code == 2 and "hydra" in one_error_line(capsys.readouterr())

