"""Every way a run stops leaves a true record: fault injection through the real entry points.

Signals at the moments a scheduler or a closed terminal sends them, a kill without warning, a
reused or finished run directory, a full disk and files that are not checkpoints. Each test asserts
the record a user relies on: the exit status, status.json, the checkpoints, the curves (each epoch
exactly once) and, after a resume, metrics and weights equal to an uninterrupted run.
"""

from __future__ import annotations

import csv
import json
import resource
import shlex
import signal
import subprocess
from pathlib import Path

import pytest
import torch

from helpers import (SHORT_RUN, assert_one_line_error, assert_same_weights, final_metrics, run_script, start_script,
                     wait_for)
from mlplab.run.records import read_status

pytestmark = pytest.mark.slow


def start(run_dir: Path, *extra: str) -> subprocess.Popen:
    return start_script("train.py", *SHORT_RUN, *extra, f"hydra.run.dir={run_dir}")


def status(run_dir: Path) -> dict:
    return json.loads((run_dir / "status.json").read_text())


def epoch_rows(run_dir: Path, column: str = "train/loss_epoch") -> list[int]:
    """The epochs that have a value of `column` in csv/metrics.csv, in file order."""
    with (run_dir / "csv" / "metrics.csv").open() as handle:
        return [int(float(row["epoch"])) for row in csv.DictReader(handle) if row.get(column)]


def printed_resume_command(stderr: str) -> list[str]:
    line = next(line.strip() for line in stderr.splitlines() if line.strip().startswith("python train.py"))
    return shlex.split(line)[2:]  # the overrides after `python train.py`


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_after_an_epoch_is_recorded_and_the_printed_command_resumes_exactly(reference_run, tmp_path,
                                                                                    signum):
    run_dir = tmp_path / "run"
    process = start(run_dir)
    wait_for(run_dir / "checkpoints" / "last.ckpt", process)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, stderr[-3000:]
    assert "Traceback" not in stderr
    recorded = status(run_dir)
    assert recorded["status"] == "interrupted" and recorded["signal"] == signal.Signals(signum).name
    assert (run_dir / "checkpoints" / "interrupted.ckpt").is_file() and not (run_dir / "metrics.json").exists()
    fit_before = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["callbacks"]["FitClock"]

    result = run_script("train.py", *printed_resume_command(stderr))
    assert result.returncode == 0, result.stderr[-3000:]
    assert status(run_dir)["status"] == "finished"
    assert not (run_dir / "checkpoints" / "interrupted.ckpt").exists()  # the stop's state is stale once finished
    assert final_metrics(run_dir) == final_metrics(reference_run)
    assert_same_weights(run_dir, reference_run)
    assert epoch_rows(run_dir) == [0, 1, 2] and epoch_rows(run_dir, "val/acc") == [0, 1, 2]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert fit_before["fit_seconds"] < metrics["fit_seconds"] < metrics["wall_seconds"]


def test_ctrl_c_before_the_first_epoch_ends_prints_a_command_that_works(reference_run, tmp_path):
    run_dir = tmp_path / "run"
    process = start(run_dir)
    wait_for(run_dir / "status.json", process)  # started: loading data or training its first epoch
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-3000:]
    assert status(run_dir)["status"] == "interrupted" and "from the start" in stderr and "Traceback" not in stderr
    assert not (run_dir / "checkpoints" / "last.ckpt").exists()
    result = run_script("train.py", *printed_resume_command(stderr))
    assert result.returncode == 0, result.stderr[-3000:]
    assert status(run_dir)["status"] == "finished" and epoch_rows(run_dir) == [0, 1, 2]
    assert final_metrics(run_dir) == final_metrics(reference_run)


def test_sigkill_then_resume_keeps_each_epoch_of_the_curves_once(reference_run, tmp_path):
    run_dir = tmp_path / "run"
    process = start(run_dir)
    wait_for(run_dir / "checkpoints" / "last.ckpt", process)
    process.kill()
    process.wait()
    assert status(run_dir)["status"] == "running"  # a killed process writes nothing...
    assert read_status(run_dir)["status"] == "killed"  # ...and readers see that its process is gone
    result = run_script("train.py", *SHORT_RUN, f"resume={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert epoch_rows(run_dir) == [0, 1, 2] and epoch_rows(run_dir, "val/acc") == [0, 1, 2]
    assert final_metrics(run_dir) == final_metrics(reference_run)
    assert_same_weights(run_dir, reference_run)
    assert json.loads((run_dir / "run_info.json").read_text())["resumed"]


def test_resuming_a_finished_run_changes_nothing(reference_run):
    before = {path: path.read_bytes() for path in reference_run.rglob("*") if path.is_file()}
    result = run_script("train.py", *SHORT_RUN, f"resume={reference_run}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "nothing to resume" in result.stdout
    after = {path: path.read_bytes() for path in reference_run.rglob("*") if path.is_file()}
    assert after == before


def test_a_run_directory_that_holds_a_run_is_refused_before_anything_is_written(reference_run):
    before = (reference_run / ".hydra" / "config.yaml").read_bytes()
    result = run_script("train.py", "+experiment=smoke", "activation=tanh", f"hydra.run.dir={reference_run}")
    assert_one_line_error(result, str(reference_run), "already holds a run", f"resume={reference_run}")
    assert (reference_run / ".hydra" / "config.yaml").read_bytes() == before


def test_a_full_disk_is_one_line_naming_the_folder_and_status_says_failed(mnist, tmp_path):
    run_dir = tmp_path / "run"

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    process = start_script("train.py", "+experiment=smoke", "logger=csv", f"hydra.run.dir={run_dir}",
                           preexec_fn=small_files)
    _, stderr = process.communicate(timeout=300)
    result = subprocess.CompletedProcess(process.args, process.returncode, "", stderr)
    assert_one_line_error(result, "File too large", str(run_dir))
    assert status(run_dir)["status"] == "failed"
    for name in ("status.json", "run_info.json"):
        json.loads((run_dir / name).read_text())  # never half-written


@pytest.fixture(scope="module")
def bad_files(reference_run, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad")
    checkpoint = reference_run / "checkpoints" / "best.ckpt"
    truncated = folder / "truncated.ckpt"
    truncated.write_bytes(checkpoint.read_bytes()[:5000])
    text = folder / "notes.ckpt"
    text.write_text("hello\n")
    state_dict = folder / "state_dict.pt"
    torch.save(torch.load(checkpoint, weights_only=True)["state_dict"], state_dict)
    other = torch.load(checkpoint, weights_only=True)
    other["hyper_parameters"]["model"]["hidden_sizes"] = [64]
    architecture = folder / "architecture.ckpt"
    torch.save(other, architecture)
    return {"a truncated checkpoint": truncated, "a text file": text, "a metrics.json": reference_run / "metrics.json",
            "a plain state_dict": state_dict, "another architecture": architecture}


@pytest.mark.parametrize("kind", ["a truncated checkpoint", "a text file", "a metrics.json", "a plain state_dict",
                                  "another architecture"])
def test_eval_refuses_what_is_not_a_checkpoint_in_one_line(bad_files, tmp_path, kind):
    result = run_script("eval.py", f"ckpt_path={bad_files[kind]}", "trainer=cpu", f"hydra.run.dir={tmp_path}")
    line = assert_one_line_error(result, str(bad_files[kind]))
    assert "weights_only=False" not in result.stderr, line


def test_eval_names_its_own_data_key(reference_run, tmp_path):
    result = run_script("eval.py", f"ckpt_path={reference_run}/checkpoints/best.ckpt", f"data_root={tmp_path}",
                        "trainer=cpu", f"hydra.run.dir={tmp_path}/out")
    assert_one_line_error(result, "data_root=", str(tmp_path))


def test_a_requeued_slurm_job_resumes_its_own_run(reference_run, tmp_path):
    # What SLURM gives a requeued job: the same job id and command, a new process.
    slurm = {"SLURM_JOB_ID": "4242", "SLURM_RESTART_COUNT": "0"}
    process = start_script("train.py", *SHORT_RUN, f"paths.output_root={tmp_path}", env=slurm)
    run_dir = tmp_path / "slurm" / "4242_smoke"
    wait_for(run_dir / "checkpoints" / "last.ckpt", process)
    process.send_signal(signal.SIGTERM)  # preemption
    process.communicate(timeout=120)
    assert process.returncode == 143 and status(run_dir)["slurm_job"] == "4242"
    requeued = run_script("train.py", *SHORT_RUN, f"paths.output_root={tmp_path}",
                          env={**slurm, "SLURM_RESTART_COUNT": "1"})
    assert requeued.returncode == 0, requeued.stderr[-3000:]
    assert "requeued" in requeued.stderr and status(run_dir)["status"] == "finished"
    assert final_metrics(run_dir) == final_metrics(reference_run)
    assert epoch_rows(run_dir) == [0, 1, 2]
    assert [path.name for path in (tmp_path / "slurm").iterdir()] == ["4242_smoke"]
