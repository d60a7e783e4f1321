"""A run directory's records in-process: atomic writes, status (killed when the process is gone),
the real error, run_info, resuming the curves, and the signal guard. Fast: no training."""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pytorch_lightning.loggers import CSVLogger

from mlplab.run import failures
from mlplab.run import records as runfiles
from mlplab.run import resume
from mlplab.run.stops import RunInterrupted, StopOnSignal
from mlplab.run.provenance import run_info


def test_json_is_written_whole_readable_and_read_back(tmp_path):
    path = runfiles.write_json(tmp_path / "metrics.json", {"test_acc": 0.9})
    assert runfiles.read_json(path) == {"test_acc": 0.9}
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~runfiles._UMASK)
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary file left behind
    (tmp_path / "half.json").write_text('{"test_acc": 0.')
    assert runfiles.read_json(tmp_path / "half.json") is None and runfiles.read_json(tmp_path / "none.json") is None


def test_a_write_into_a_missing_folder_is_one_line_naming_it(tmp_path):
    with pytest.raises(runfiles.RunFileError, match=str(tmp_path / "gone")):
        runfiles.write_json(tmp_path / "gone" / "status.json", {})


def test_status_keeps_its_fields_and_a_vanished_process_reads_as_killed(tmp_path):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    runfiles.write_status(tmp_path, runfiles.RUNNING, pid=int(finished.stdout), host=socket.gethostname())
    assert runfiles.read_status(tmp_path)["status"] == runfiles.KILLED
    runfiles.write_status(tmp_path, runfiles.RUNNING, pid=os.getpid())
    assert runfiles.read_status(tmp_path)["status"] == runfiles.RUNNING
    record = runfiles.write_status(tmp_path, runfiles.FINISHED, ended="now")
    assert record["pid"] == os.getpid() and record["status"] == "finished" and record["updated"].endswith("+00:00")


def test_the_real_error_is_the_last_line_of_error_log_then_of_the_trial_log(tmp_path):
    (tmp_path / "trial.log").write_text("starting\nerror: dropout.p=1.5 is not allowed\n\n")
    assert failures.error_line(tmp_path, "trial.log") == "error: dropout.p=1.5 is not allowed"
    (tmp_path / "error.log").write_text("Traceback (most recent call last):\n  ...\nValueError: boom\n")
    assert failures.error_line(tmp_path, "trial.log") == "ValueError: boom"


def test_a_refusal_is_recorded_unless_the_run_recorded_its_own_failure(tmp_path):
    runfiles.record_refusal(tmp_path, ValueError("seed='abc' is not allowed"))
    assert runfiles.read_status(tmp_path)["status"] == "failed"
    assert (tmp_path / "error.log").read_text() == "seed='abc' is not allowed\n"
    runfiles.write_status(tmp_path, runfiles.FAILED, pid=os.getpid())
    (tmp_path / "error.log").write_text("Traceback ...\nNonFiniteLossError: nan\n")
    runfiles.record_refusal(tmp_path, ValueError("the same failure, once more"))
    assert (tmp_path / "error.log").read_text().endswith("NonFiniteLossError: nan\n")


def test_run_info_describes_where_and_how(tmp_path):
    info = run_info(7, {"train-images-idx3-ubyte.gz": "f68b"})
    assert info["seed"] == 7 and info["command"][0] == sys.executable
    assert {"python", "torch", "pytorch-lightning", "hydra-core"} <= info["versions"].keys()
    assert info["hardware"]["cpu_count"] == os.cpu_count() and info["started"].endswith("+00:00")


def test_slurm_runs_are_named_after_their_job(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert runfiles.run_dir(None, "outputs/x/12-00-00_smoke", "outputs", "smoke") == "outputs/slurm/4242_3_smoke"
    assert runfiles.run_dir("outputs/other", "outputs/x/12-00-00_smoke", "outputs", "smoke") == "outputs/other"


def write_curves(path: Path, rows: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["epoch", "step", "train/loss", "val/acc"])
        writer.writeheader()
        writer.writerows(rows)


def test_resuming_drops_exactly_the_rows_logged_after_the_checkpoint(tmp_path):
    rows = [{"epoch": "", "step": "49", "train/loss": "2.0", "val/acc": ""},
            {"epoch": "0", "step": "99", "train/loss": "", "val/acc": "0.9"},
            {"epoch": "", "step": "149", "train/loss": "1.0", "val/acc": ""},
            {"epoch": "1", "step": "199", "train/loss": "", "val/acc": "0.95"},
            {"epoch": "", "step": "249", "train/loss": "0.5", "val/acc": ""}]  # after the checkpoint
    write_curves(tmp_path / runfiles.METRICS_CSV, rows)
    logger = CSVLogger(tmp_path, name="csv", version="")
    assert resume.continue_curves(logger, tmp_path, epoch=1, step=199) == 4
    with (tmp_path / runfiles.METRICS_CSV).open() as handle:
        assert [row["step"] for row in csv.DictReader(handle)] == ["49", "99", "149", "199"]


def test_the_signal_guard_waits_for_a_safe_point_and_gives_way_to_a_second_signal():
    stop = StopOnSignal()
    stop.install()
    try:
        os.kill(os.getpid(), signal.SIGTERM)  # handled at once: noted, nothing raised here
        assert stop.signum == signal.SIGTERM
        with pytest.raises(RunInterrupted) as first:
            stop.raise_if_asked()
        assert first.value.signum == signal.SIGTERM
        with pytest.raises(RunInterrupted):
            os.kill(os.getpid(), signal.SIGHUP)  # asked twice: stop now
    finally:
        stop.uninstall()
    assert signal.getsignal(signal.SIGTERM) is not stop._on_signal


def test_a_run_is_named_after_what_was_overridden_leaving_out_where_it_is():
    overrides = ["+experiment=smoke", "activation=gelu", "model.hidden_sizes=[10,20]", "paths.output_root=/x y",
                 "resume=/y", "hydra.run.dir=z", "data.root=/d", "++optimizer.lr=1e-3", "logger=csv", "name=n"]
    assert runfiles.run_name("smoke", overrides) == "smoke+activation-gelu+model.hidden_sizes-10.20+optimizer.lr-1e-3"
    assert runfiles.run_name("default", []) == "default"


@given(st.lists(st.text(min_size=1, max_size=60), max_size=12))
def test_generated_overrides_give_a_short_name_that_needs_no_quoting(overrides):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    name = runfiles.run_name("default", overrides)
    assert len(name.encode()) <= runfiles.NAME_BYTES and "/" not in name
    assert OverridesParser.create().parse_override(f"resume=outputs/12-00-00_{name}").value() == f"outputs/12-00-00_{name}"


def test_names_too_long_to_spell_out_stay_apart_by_a_hash():
    first = [f"model.hidden_sizes=[{','.join(['100'] * 40)}]", "seed=1"]
    second = [first[0], "seed=2"]
    assert runfiles.run_name("default", first) != runfiles.run_name("default", second)
    assert len(runfiles.run_name("default", first).encode()) <= runfiles.NAME_BYTES


@pytest.mark.parametrize("name", ['x,y=ü', "it's", "a b", "[x]", "~x", "a\nb", "ü"])
def test_a_run_name_of_any_characters_needs_no_quoting(name):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    folder = f"outputs/12-00-00_{runfiles.run_name(name, ['activation=gelu'])}"
    assert OverridesParser.create().parse_override(f"resume={folder}").value() == folder


def saved_run(tmp_path: Path, config) -> Path:
    from omegaconf import OmegaConf

    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(config, run_dir / ".hydra" / "config.yaml")
    OmegaConf.save(OmegaConf.create([]), run_dir / ".hydra" / "overrides.yaml")
    return run_dir


def earlier_layout(cfg):
    """cfg as conf/ laid it out before the fast path and callbacks had groups of their own."""
    from omegaconf import OmegaConf

    old = OmegaConf.to_container(cfg)
    old["data"]["chunk"] = old["fastpath"]["chunk"]
    old["model"] |= {"cuda_graph": old["fastpath"]["cuda_graph"], "compile": old["fastpath"]["compile"]}
    del old["model"]["_target_"], old["fastpath"], old["callbacks"]
    return OmegaConf.create(old)


def test_a_run_of_the_earlier_layout_resumes_and_a_changed_setting_is_still_refused(tmp_path):
    from helpers import compose_config

    cfg = compose_config()
    run_dir = saved_run(tmp_path, earlier_layout(cfg))
    resume.check_same_settings(cfg, run_dir)
    resume.check_same_settings(compose_config("fastpath=off", "callbacks=none"), run_dir)
    for changed in ("model.hidden_sizes=[7]", "model.init=kaiming", "data.batch_size=50", "seed=3"):
        with pytest.raises(runfiles.UserError, match=changed.split("=")[0]):
            resume.check_same_settings(compose_config(changed), run_dir)


def test_callbacks_and_the_models_class_are_held_once_a_run_saved_them(tmp_path):
    from helpers import compose_config

    run_dir = saved_run(tmp_path, compose_config())
    for changed in ("callbacks=none", "callbacks.weight_images.every_n_epochs=1"):
        with pytest.raises(runfiles.UserError, match="callbacks"):
            resume.check_same_settings(compose_config(changed), run_dir)
    resume.check_same_settings(compose_config("fastpath=off"), run_dir)
