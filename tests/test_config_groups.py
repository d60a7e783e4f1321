"""The fastpath and callbacks groups, group overrides and eval.py's own settings, held as hostile
users tried them: each value is refused in one line before any work, or works and records the truth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import REPO, compose_config, run_script

from mlplab.errors import ConfigError, SweepError, UserError
from mlplab.run import records, resume
from mlplab.run.config_checks import check_config
from mlplab.run.config_files import check_group_overrides
from mlplab.run.evaluation import check_eval_config
from mlplab.tools.sweep.composition import check_trials_compose

CONF = REPO / "conf"


@pytest.mark.parametrize("override", [
    "fastpath=[1]", "fastpath=null", "model=null", "callbacks=[1]", "activation=[relu,1]", "norm=[null]",
    "+fastpath=7", "optimizer=[adam,3.5]",
])
def test_a_group_takes_only_option_names(override):
    with pytest.raises(ConfigError) as refused:
        check_group_overrides([override], CONF)
    group = override.lstrip("+").split("=")[0]
    message = str(refused.value)
    assert "\n" not in message and message.startswith(f"{override} is refused: the {group} group")


@pytest.mark.parametrize("override", [
    "fastpath=off", "activation=gelu", "callbacks=none", "~fastpath", "~callbacks", "fastpath.chunk=3",
    "++fastpath={chunk:2}", "++hydra={verbose:true}", "seed=[1,2]", "activation=relu,gelu",
])
def test_option_names_and_values_pass_the_group_check(override):
    check_group_overrides([override], CONF)


@pytest.mark.parametrize("group", ["model", "norm", "activation", "optimizer", "dropout", "l2", "augment"])
def test_a_group_every_run_builds_cannot_be_left_out(group):
    with pytest.raises(ConfigError, match=f"^{group} is missing .* e.g. {group}="):
        check_config(compose_config("+experiment=smoke", f"~{group}"))


@pytest.mark.parametrize("overrides", [["~fastpath"], ["~callbacks"], ["~scheduler"], ["~fastpath._target_"],
                                       ["fastpath.chunk=100000"], ["callbacks=none", "fastpath=off"]])
def test_optional_groups_and_settings_pass(overrides):
    check_config(compose_config("+experiment=smoke", *overrides))


@pytest.mark.parametrize("overrides, key", [
    (["++trainer.val_check_interval=1"], "trainer.val_check_interval=1 counts Lightning batches"),
    (["++trainer.val_check_interval=0.5"], "trainer.val_check_interval=0.5 counts"),
    (["++trainer.overfit_batches=abc"], "trainer.overfit_batches='abc'"),
    (["++trainer.overfit_batches=-1"], "trainer.overfit_batches=-1"),
    (["callbacks.weight_images.every_n_epochs=0"], "callbacks.weight_images:"),
    (["callbacks.weight_images.every_n_epochs=1.5"], "every_n_epochs=1.5 must be a whole number"),
    (["callbacks.activation_stats.num_images=-1"], "callbacks.activation_stats:"),
    (["+callbacks.gradient_norms.bogus=1"], "unexpected keyword argument 'bogus'"),
    (["+callbacks.weight_images._partial_=true"], "not a Lightning callback"),
    (["fastpath._target_=builtins.print"], "conf/fastpath/ names"),
    (["+callbacks.evil={_target_:builtins.print}"], "conf/callbacks/ names"),
    (["model._target_=torch.nn.Linear"], "conf/model/ names"),
])
def test_bad_fast_path_trainer_and_callback_values_are_refused_in_one_line(overrides, key):
    with pytest.raises(ConfigError) as refused:
        check_config(compose_config("+experiment=smoke", *overrides))
    assert key in str(refused.value) and "\n" not in str(refused.value)


def test_a_validation_interval_in_batches_is_fine_on_the_plain_path():
    check_config(compose_config("+experiment=smoke", "fastpath=off", "++trainer.val_check_interval=1"))


@pytest.mark.parametrize("overrides, refused", [
    (["+fastpath={_target_:builtins.open,file:/tmp/x,mode:w}"], "eval.py takes no fastpath"),
    (["+callbacks.evil=1"], "eval.py takes no callbacks"),
    (["+seed=3"], "eval.py takes no seed"),
    (["trainer._target_=builtins.open"], "trainer._target_='builtins.open' is refused"),
])
def test_eval_takes_only_its_own_settings_and_builds_only_conf_targets(overrides, refused):
    cfg = compose_config("ckpt_path=x.ckpt", *overrides, config_name="eval")
    with pytest.raises(UserError, match=refused.replace("(", r"\(").replace(")", r"\)")):
        check_eval_config(cfg)


@pytest.mark.slow
def test_eval_with_a_hostile_target_on_its_command_line_writes_nothing(tmp_path):
    victim = tmp_path / "created.txt"
    result = run_script("eval.py", f"ckpt_path={tmp_path / 'none.ckpt'}", f"hydra.run.dir={tmp_path / 'eval'}",
                        f"+fastpath={{_target_:builtins.open,file:{victim},mode:w}}")
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 1 and last.startswith("error: +fastpath=") and "is refused" in last
    assert not victim.exists()


def finished_run(folder: Path) -> Path:
    folder.mkdir(parents=True)
    records.write_status(folder, records.FINISHED, ended=records.now())
    records.write_json(folder / records.METRICS_FILE, {"test_acc": 0.9, "epochs": 1})
    return folder


def test_a_refused_resume_leaves_the_finished_run_it_names_as_it_was(tmp_path):
    run_dir = finished_run(tmp_path / "run")
    records.record_refusal(run_dir, ConfigError("fastpath.chunk=0 must be a whole number"))
    assert records.read_status(run_dir)["status"] == records.FINISHED
    assert not (run_dir / records.ERROR_LOG).exists()
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    records.record_refusal(fresh, ConfigError("optimizer.lr=0 is not allowed"))
    assert records.read_status(fresh)["status"] == records.FAILED


def test_only_the_fast_paths_speed_settings_may_change_on_resume(tmp_path):
    from omegaconf import OmegaConf

    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(compose_config(), run_dir / ".hydra" / "config.yaml")
    OmegaConf.save(OmegaConf.create([]), run_dir / ".hydra" / "overrides.yaml")
    resume.check_same_settings(compose_config("fastpath.chunk=2", "fastpath.cuda_graph=false"), run_dir)
    for changed in ("fastpath.compile=true", "+fastpathx=1", "+pathsx=1"):
        with pytest.raises(UserError, match=changed.lstrip("+").split("=")[0]):
            resume.check_same_settings(compose_config(changed), run_dir)


def test_a_sweep_trial_with_a_bad_group_value_stops_the_sweep_in_one_line(tmp_path):
    with pytest.raises(SweepError) as refused:
        check_trials_compose(CONF, "sweep.yaml", [["seed=1", "fastpath=[1]"]])
    assert "fastpath=[1] is refused" in str(refused.value) and "\n" not in str(refused.value)
    assert json.dumps(str(refused.value))


@pytest.mark.parametrize("overrides, smoke", [
    ([], None), (["++trainer.limit_test_batches=1.0"], None),
    (["++trainer.limit_test_batches=1"], "trainer.limit_test_batches=1"),
    (["++trainer.limit_test_batches=0.5"], "trainer.limit_test_batches=0.5"),
    (["++trainer.fast_dev_run=true"], "trainer.fast_dev_run=True"),
])
def test_an_eval_of_part_of_the_test_set_is_marked_a_smoke_check(overrides, smoke):
    from mlplab.run.evaluation import partial_test

    assert partial_test(compose_config("ckpt_path=x.ckpt", *overrides, config_name="eval")) == smoke


def test_a_key_that_builds_nothing_is_told_to_drop_its_target():
    with pytest.raises(ConfigError, match=r"seed builds nothing, so it names no class; remove the _target_"):
        check_config(compose_config("+experiment=smoke", "++seed={_target_:builtins.print}"))


@pytest.mark.parametrize("override, hint", [("+fastpth.chunk=1", "did you mean fastpath?"),
                                            ("+optimiser.lr=1", "did you mean optimizer?"), ("+foo=1", "")])
def test_a_key_train_py_never_reads_is_refused_with_the_nearest_one(override, hint):
    with pytest.raises(ConfigError) as refused:
        check_config(compose_config("+experiment=smoke", override))
    key = override.lstrip("+").split(".")[0].split("=")[0]
    assert str(refused.value).startswith(f"{key} is not a setting train.py reads: {hint}")
