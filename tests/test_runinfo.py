"""run_info.json's git state: dirty whenever the commit alone cannot rebuild the run."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mlplab.run.provenance import git_state


@pytest.fixture
def checkout(tmp_path):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "config.yaml").write_text("seed: 1\n")
    (tmp_path / "train.py").write_text("print()\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init")
    return tmp_path


def test_a_clean_checkout_is_not_dirty_and_files_outside_the_sources_do_not_count(checkout):
    (checkout / "notes.txt").write_text("scratch")
    (checkout / "outputs").mkdir()
    (checkout / "outputs" / "run.json").write_text("{}")
    state = git_state(checkout)
    assert len(state["commit"]) == 40 and state["dirty"] is False and state["changed"] == []


@pytest.mark.parametrize("change", ["untracked experiment", "edited config", "untracked module"])
def test_a_config_or_code_the_commit_lacks_makes_the_run_dirty(checkout, change):
    if change == "untracked experiment":
        (checkout / "conf" / "experiment").mkdir()
        path = checkout / "conf" / "experiment" / "mine.yaml"
        path.write_text("seed: 2\n")
    elif change == "edited config":
        path = checkout / "conf" / "config.yaml"
        path.write_text("seed: 3\n")
    else:
        (checkout / "src").mkdir()
        path = checkout / "src" / "new module.py"
        path.write_text("")
    state = git_state(checkout)
    assert state["dirty"] is True and any(str(path.relative_to(checkout)) in line for line in state["changed"])


def test_outside_a_checkout_the_state_is_unknown(tmp_path):
    assert git_state(tmp_path) == {"commit": None, "dirty": None, "changed": []}


def test_run_info_records_what_decides_the_last_bits(monkeypatch):
    import torch

    from mlplab.run.provenance import run_info

    threads = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    try:
        torch.set_num_threads(1)
        numerics = run_info(0, {})["numerics"]
    finally:
        torch.set_num_threads(threads)
    assert numerics["torch_threads"] == 1 and numerics["env"]["OMP_NUM_THREADS"] == "1"
    assert numerics["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert numerics["deterministic_algorithms"] is torch.are_deterministic_algorithms_enabled()
    # The BLAS and oneDNN builds this torch was built with, as torch reports them.
    config = torch.__config__.show()
    assert numerics["builds"] and all(line in config for line in numerics["builds"])
    assert set(numerics["cpu_flags"]) <= set(Path("/proc/cpuinfo").read_text().split())
