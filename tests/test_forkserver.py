"""Trials forked from the warm launcher (src/mlplab/tools/sweep/warm.py): they train exactly as a fresh
`python train.py` does, get their slot's environment, session and log, and end with the exit status
a fresh interpreter would have."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from helpers import REPO, assert_same_weights, final_metrics, script_env
from mlplab.errors import SweepError
from mlplab.tools.sweep.trials import INTERRUPTED, LOG_FILE, recorded_outcome
from mlplab.tools.sweep.warm import ForkedProcess, start_forked

# SHORT_RUN's generators (dropout, affine augmentation), over two short epochs, with wandb (offline).
TWO_EPOCHS = ["+experiment=smoke", "trainer.max_epochs=2", "trainer.limit_train_batches=10", "dropout=p02",
              "augment=affine", "trainer.limit_val_batches=2", "logger=default"]


def sweep_file(path: Path, parameters: dict, *fixed: str, program: str = "train.py") -> Path:
    path.write_text(yaml.safe_dump({"program": program, "method": "grid", "parameters": parameters,
                                    "command": ["${env}", "${interpreter}", "${program}", *fixed,
                                                "${args_no_hyphens}"]}))
    return path


TWO_VISIBLE_GPUS = ("import runpy, sys; import mlplab.tools.sweep.slots as slots; slots.visible_gpu_count = lambda: 2; "
                    "sys.argv[0] = 'mlplab.tools.sweep'; runpy.run_module('mlplab.tools.sweep', run_name='__main__')")


def launcher_command(sweep: Path, sweep_dir: Path, *options: str) -> list[str]:
    return [sys.executable, "-m", "mlplab.tools.sweep", str(sweep), "--offline", "--stagger", "0",
            "--sweep-dir", str(sweep_dir), "--program-root", str(REPO), *options]


def trial_records(sweep_dir: Path) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted(sweep_dir.glob("*/trial.json"))]


@pytest.mark.slow
def test_a_forked_trial_trains_bit_identically_to_a_fresh_process(mnist, tmp_path):
    sweep = sweep_file(tmp_path / "one.yaml", {"seed": {"values": [5]}}, *TWO_EPOCHS)
    launchers = {mode: subprocess.Popen(launcher_command(sweep, tmp_path / mode, *options), env=script_env(),
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for mode, options in (("forked", ()), ("fresh", ("--fresh-processes",)))}  # side by side
    trial_dirs = {}
    for mode, launcher in launchers.items():
        output = launcher.communicate(timeout=600)[0]
        assert launcher.returncode == 0, output[-3000:]
        (record,) = trial_records(tmp_path / mode)
        assert record["forked"] == (mode == "forked") and record["outcome"] == "finished"
        trial_dirs[mode] = tmp_path / mode / record["trial"]
    assert final_metrics(trial_dirs["forked"]) == final_metrics(trial_dirs["fresh"])
    assert_same_weights(trial_dirs["forked"], trial_dirs["fresh"])
    # Lightning logs through Hydra's handlers as in a fresh process, so into the run's own train.log too.
    assert "Seed set to 5" in (trial_dirs["forked"] / "train.log").read_text()
    # wandb's offline run holds the same files, the console it copies (files/output.log) included.
    assert wandb_files(trial_dirs["forked"]) == wandb_files(trial_dirs["fresh"])
    assert "files/output.log" in wandb_files(trial_dirs["forked"])


def wandb_files(run_dir: Path) -> set[str]:
    """The files of the run's wandb folder, without the run's id and time in their paths."""
    (offline_run,) = (run_dir / "wandb").glob("offline-run-*")
    return {re.sub(r"run-\w+\.wandb$", "run.wandb", str(path.relative_to(offline_run)))
            for path in offline_run.rglob("*") if path.is_file()}


PROBE = textwrap.dedent("""
    import json, os, signal, sys, torch

    print("to stdout", flush=False)  # left in the buffer: the exit must flush it
    print("to stderr", file=sys.stderr)
    from hydra.core.override_parser.overrides_parser import OverridesParser  # the launcher quotes the run dir
    run_dir = next(OverridesParser.create().parse_override(arg).value() for arg in sys.argv
                   if arg.startswith("hydra.run.dir="))
    seed = int(next(arg.split("=", 1)[1] for arg in sys.argv if arg.startswith("seed=")))
    descriptors = [os.path.realpath(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")]
    json.dump({"argv": sys.argv, "name": __name__, "file": __file__, "cwd": os.getcwd(),
               "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "marker": os.environ.get("MARKER"),
               "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "torch_threads": torch.get_num_threads(),
               "session_leader": os.getsid(0) == os.getpid(), "ppid": os.getppid(),
               "stdin": os.readlink("/proc/self/fd/0"), "descriptors": descriptors,
               "launcher_threads": len(os.listdir(f"/proc/{os.getppid()}/task")),
               "sigterm_default": signal.getsignal(signal.SIGTERM) == signal.SIG_DFL},
              open(os.path.join(run_dir, "probe.json"), "w"))
    json.dump({"status": "finished"}, open(os.path.join(run_dir, "status.json"), "w"))
    if seed == 2:
        sys.exit(2)
    if seed == 3:
        raise RuntimeError("the probe broke")
""")


@pytest.mark.slow
def test_a_forked_trial_gets_its_slots_environment_threads_session_and_log(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    sweep = sweep_file(tmp_path / "probe.yaml", {"seed": {"values": [1, 2, 3]}}, program=str(probe))
    env = {key: value for key, value in script_env(MARKER="launcher").items() if key != "OMP_NUM_THREADS"}
    # The slots' GPUs as a shared node gives them: two visible GPUs behind CUDA_VISIBLE_DEVICES=5,7. The
    # launcher counts them with torch (mlplab.tools.sweep.slots.visible_gpu_count), told 2 here on any machine.
    env["CUDA_VISIBLE_DEVICES"] = "5,7"
    command = [sys.executable, "-c", TWO_VISIBLE_GPUS, *launcher_command(sweep, tmp_path / "sweep", "--gpus", "0,1")[3:]]
    result = subprocess.run(command, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]  # seeds 2 and 3 failed
    assert "trials start forked" in result.stdout
    records = trial_records(tmp_path / "sweep")
    assert [record["returncode"] for record in records] == [0, 2, 1]
    assert all(record["forked"] for record in records)
    for record in records:
        trial_dir = tmp_path / "sweep" / record["trial"]
        probe_run = json.loads((trial_dir / "probe.json").read_text())
        assert probe_run["argv"] == [str(probe), *record["command"][2:]]
        assert probe_run["name"] == "__main__" and probe_run["file"] == str(probe) and probe_run["cwd"] == str(REPO)
        assert probe_run["cuda_visible_devices"] == record["cuda_visible_devices"] == {0: "5", 1: "7"}[record["slot"]]
        assert probe_run["marker"] == "launcher"
        assert probe_run["omp_num_threads"] == record["omp_num_threads"]
        assert probe_run["torch_threads"] == int(record["omp_num_threads"])
        assert probe_run["session_leader"] and probe_run["sigterm_default"]
        assert probe_run["launcher_threads"] == 1  # no OpenMP pool or helper thread a fork could break
        assert probe_run["stdin"] == "/dev/null"
        assert not any("launcher.lock" in target for target in probe_run["descriptors"])  # the lock stays the launcher's
        log = (trial_dir / "trial.log").read_text()
        assert "to stdout" in log and "to stderr" in log
    failure = (tmp_path / "sweep" / records[2]["trial"] / "trial.log").read_text()
    assert "Traceback" in failure and "RuntimeError: the probe broke" in failure


SCRIPTS = {
    "sys.exit(2)": 2, "sys.exit()": 0, "sys.exit('a message')": 1, "raise ValueError('no good')": 1,
    "os.kill(os.getpid(), signal.SIGKILL)": -signal.SIGKILL, "raise KeyboardInterrupt": -signal.SIGINT,
    "import atexit; atexit.register(print, 'exit handler ran')": 0,
}


@pytest.mark.parametrize("unbuffered", ["", "1"], ids=["buffered", "PYTHONUNBUFFERED"])
@pytest.mark.parametrize(("line", "status"), SCRIPTS.items())
def test_a_forked_script_ends_and_writes_as_a_fresh_interpreter_does(line, status, unbuffered, tmp_path):
    script = tmp_path / "script.py"
    script.write_text(f"import os, signal, sys\nprint('to stdout')\nprint('to stderr', file=sys.stderr)\n{line}\n")
    env = {**{key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}, "PYTHONUNBUFFERED": unbuffered}
    with (tmp_path / "forked.log").open("a") as log:
        process = start_forked([sys.executable, str(script)], env, tmp_path, log, set())
    assert isinstance(process, ForkedProcess) and os.getsid(process.pid) == process.pid
    with (tmp_path / "fresh.log").open("a") as log:
        fresh = subprocess.run([sys.executable, str(script)], env=env, cwd=tmp_path, stdout=log, stderr=log)
    assert process.wait() == process.poll() == status == fresh.returncode
    # Output in the same order (stdout's buffer flushed at the exit), a traceback from the script's frames on.
    assert (tmp_path / "forked.log").read_text() == (tmp_path / "fresh.log").read_text()


def test_a_forked_trial_left_running_by_a_killed_launcher_is_recognised_by_its_log(tmp_path):
    script = tmp_path / "sleep.py"
    script.write_text("import time\ntime.sleep(60)\n")
    env = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}
    with (tmp_path / LOG_FILE).open("a") as log:
        process = start_forked([sys.executable, str(script)], env, tmp_path, log, set())
    try:
        # Its command line is the launcher's (here pytest's): the trial's own log is what names it.
        (tmp_path / "trial.json").write_text(json.dumps({"outcome": "running", "pid": process.pid}))
        with pytest.raises(SweepError, match=f"still running \\(pid {process.pid}\\)"):
            recorded_outcome(tmp_path)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert recorded_outcome(tmp_path) == INTERRUPTED
