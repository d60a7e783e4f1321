"""Nothing a file holds can make the project call code: every `_target_` is held to its group's
options before anything is built (checkpoints, saved configs, command-line and sweep overrides)."""

from __future__ import annotations

from pathlib import Path


import pytest
import torch
import yaml
from hypothesis import given
from hypothesis import strategies as st

from helpers import CONF, assert_one_line_error, compose_config, run_script
from mlplab.run.config_checks import check_config
from mlplab.errors import ConfigError, UserError
from mlplab.run.evaluation import load_checkpoint
from mlplab.run.targets import allowed_for, check_targets, group_targets

# Callables that read, write, run or import: what a hostile file would name.
HOSTILE_TARGETS = [
    "builtins.open", "builtins.exec", "builtins.eval", "builtins.__import__", "os.system", "os.remove",
    "subprocess.run", "subprocess.Popen", "shutil.copyfile", "shutil.rmtree", "pathlib.Path.write_text",
    "importlib.import_module", "torch.save", "torch.load", "hydra.utils.instantiate", "pickle.loads",
    "runpy.run_path", "webbrowser.open",
]
# The project's own classes, but in a group that does not name them: refused as well.
MISPLACED = [("activation", "pytorch_lightning.Trainer"), ("norm", "torch.nn.ReLU"),
             ("optimizer", "torch.nn.BatchNorm1d"), ("scheduler", "torch.optim.SGD"), ("model", "torch.nn.ReLU")]


def module_hyperparameters() -> dict:
    from mlplab.run.build import module_settings

    return module_settings(compose_config())


def craft_checkpoint(path: Path, hyper_parameters: dict, datamodule: dict | None = None) -> Path:
    torch.save({"state_dict": {}, "hyper_parameters": hyper_parameters,
                "datamodule_hyper_parameters": datamodule or {"batch_size": 100}}, path)
    return path


def test_every_target_of_conf_is_allowed_in_its_own_group():
    for group, targets in group_targets(CONF).items():
        for target in targets:
            assert target in allowed_for(f"{group}._target_", CONF)
    assert "torch.nn.ReLU" in allowed_for("activation._target_", CONF)
    assert "torch.nn.ReLU" not in allowed_for("norm._target_", CONF)
    assert "pytorch_lightning.loggers.CSVLogger" in allowed_for("logger.csv._target_", CONF)
    assert allowed_for("model._target_", CONF) == frozenset({"mlplab.core.model.MLP"})
    assert allowed_for("fastpath._target_", CONF) == frozenset({"mlplab.fastpath.FastPath"})


@pytest.mark.parametrize("target", HOSTILE_TARGETS)
@pytest.mark.parametrize("group", ["model", "activation", "norm", "optimizer", "scheduler"])
def test_a_checkpoint_naming_code_is_refused_before_anything_runs(tmp_path, group, target):
    victim = tmp_path / "created_by_the_checkpoint.txt"
    hyper_parameters = module_hyperparameters()
    hyper_parameters[group] = {"_target_": target, "file": str(victim), "mode": "w", "command": f"touch {victim}"}
    path = craft_checkpoint(tmp_path / "evil.ckpt", hyper_parameters)
    with pytest.raises(UserError) as refused:
        load_checkpoint(path)
    message = str(refused.value)
    assert "\n" not in message and str(path) in message and f"{group}._target_" in message and target in message
    assert not victim.exists()


@pytest.mark.parametrize("where", ["nested", "list", "model", "datamodule"])
def test_a_target_hidden_deeper_in_a_checkpoint_is_refused(tmp_path, where):
    hyper_parameters = module_hyperparameters()
    datamodule = None
    evil = {"_target_": "builtins.open", "file": str(tmp_path / "x"), "mode": "w"}
    if where == "nested":
        hyper_parameters["activation"]["inplace"] = evil
    elif where == "list":
        hyper_parameters["optimizer"]["betas"] = [0.9, evil]
    elif where == "model":
        hyper_parameters["model"]["init"] = evil
    else:
        datamodule = {"normalize": evil}
    with pytest.raises(UserError, match="builtins.open"):
        load_checkpoint(craft_checkpoint(tmp_path / "evil.ckpt", hyper_parameters, datamodule))
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("group, target", MISPLACED)
def test_a_project_class_in_the_wrong_group_is_refused(tmp_path, group, target):
    hyper_parameters = module_hyperparameters()
    hyper_parameters[group] = {"_target_": target}
    with pytest.raises(UserError, match=f"{group}._target_"):
        load_checkpoint(craft_checkpoint(tmp_path / "evil.ckpt", hyper_parameters))


@pytest.mark.parametrize("value", [None, 3, ["builtins.open"], {"a": 1}, "", "torch.nn.ReLU ", "TORCH.NN.RELU"])
def test_a_target_that_is_not_exactly_a_named_class_is_refused(value):
    with pytest.raises(ConfigError):
        check_targets({"activation": {"_target_": value}}, "test", CONF)


@given(group=st.sampled_from(sorted(group_targets(CONF)) + ["model", "paths", "seed", "unknown"]),
       target=st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
       | st.builds(".".join, st.lists(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True), min_size=1,
                                      max_size=4)))
def test_generated_targets_pass_only_when_their_group_names_them(group, target):
    allowed = allowed_for(group, CONF)
    config = {group: {"deeper": [{"_target_": target}]}}
    if target in allowed:
        check_targets(config, "generated", CONF)
    else:
        with pytest.raises(ConfigError, match="is refused"):
            check_targets(config, "generated", CONF)


@pytest.mark.parametrize("target", HOSTILE_TARGETS[:6])
def test_a_config_naming_code_is_refused_by_the_checks(target):
    with pytest.raises(ConfigError, match="activation._target_"):
        check_config(compose_config(f"activation._target_={target}"))


def test_the_module_refuses_what_its_hyperparameters_should_not_build(tmp_path):
    from mlplab.run.build import module_from_settings

    hyper_parameters = module_hyperparameters()
    hyper_parameters["norm"] = {"_target_": "builtins.open", "file": str(tmp_path / "x"), "mode": "w"}
    with pytest.raises(ConfigError, match="norm._target_"):
        module_from_settings(hyper_parameters)
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_eval_of_a_hostile_checkpoint_writes_nothing_and_says_why(tmp_path):
    victim = tmp_path / "written.txt"
    hyper_parameters = module_hyperparameters()
    hyper_parameters["activation"] = {"_target_": "builtins.open", "file": str(victim), "mode": "w"}
    path = craft_checkpoint(tmp_path / "evil.ckpt", hyper_parameters)
    result = run_script("eval.py", f"ckpt_path={path}", f"hydra.run.dir={tmp_path / 'eval'}")
    assert_one_line_error(result, str(path), "activation._target_", "builtins.open")
    assert not victim.exists()


def save_hostile_config(tmp_path: Path, section: str, hostile: dict) -> tuple[Path, Path]:
    """A run's saved config (smoke) with `section` set to `hostile`; "VICTIM" in it names the file
    the hostile class would write, which must never appear."""
    import json

    from omegaconf import OmegaConf

    saved, victim = tmp_path / "saved", tmp_path / "written.txt"
    saved.mkdir()
    config = OmegaConf.to_container(compose_config("+experiment=smoke"))
    config[section] = json.loads(json.dumps(hostile).replace("VICTIM", str(victim)))
    OmegaConf.save(OmegaConf.create(config), saved / "config.yaml")
    return saved, victim


@pytest.mark.slow
def test_a_saved_config_naming_code_is_refused_when_rerun(tmp_path):
    saved, victim = save_hostile_config(tmp_path, "norm", {"_target_": "builtins.open", "_partial_": False,
                                                            "file": "VICTIM", "mode": "w"})
    result = run_script("train.py", "--config-path", str(saved), "--config-name", "config",
                        f"hydra.run.dir={tmp_path / 'run'}", f"paths.output_root={tmp_path}")
    assert_one_line_error(result, "norm._target_", "builtins.open")
    assert not victim.exists()


@pytest.mark.slow
def test_a_saved_config_whose_hydra_section_names_code_is_refused_before_hydra_builds_it(tmp_path):
    saved, victim = save_hostile_config(tmp_path, "hydra", {"callbacks": {"evil": {
        "_target_": "builtins.open", "file": "VICTIM", "mode": "w"}}})
    result = run_script("train.py", f"--config-path={saved}", "--config-name", "config",
                        f"paths.output_root={tmp_path}")
    assert_one_line_error(result, str(saved / "config.yaml"), "hydra.callbacks.evil._target_", "builtins.open")
    assert not victim.exists()


@pytest.mark.parametrize("hydra_section, named", [
    ({"job_logging": {"handlers": {"console": {"class": "logging.FileHandler", "filename": "/tmp/x"}}}}, "job_logging"),
    ({"hydra_logging": {"root": {"handlers": []}}}, "hydra_logging"),
    ({"job": {"env_set": {"LD_PRELOAD": "/tmp/evil.so"}}}, "env_set"),
    ({"launcher": {"_target_": "subprocess.Popen"}}, "hydra.launcher._target_"),
    ({"callbacks": {"evil": {"_target_": "logging.FileHandler", "filename": "/tmp/x"}}}, "hydra.callbacks.evil"),
    ({"callbacks": {"evil": "${oc.create:{_target_:logging.FileHandler,filename:/tmp/x}}"}}, "oc.create"),
    ({"callbacks": {"run_directory_guard": None}}, "run_directory_guard"),
])
def test_a_config_folders_hydra_settings_may_not_build_what_hydra_and_conf_do_not_ship(tmp_path, hydra_section, named):
    from mlplab.run.config_files import check_foreign_configs

    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"defaults": ["_self_"], "seed": 1, "hydra": hydra_section}))
    with pytest.raises(UserError, match=named):
        check_foreign_configs(["--config-path", str(tmp_path), "--config-name", "config"], CONF.parent / "train.py")


def layout_trick(tmp_path: Path, trick: str) -> Path:
    """A config folder that hides a hostile logging handler the way a hostile user would."""
    evil = {"_target_": "logging.FileHandler", "filename": str(tmp_path / "PWN")}
    folder = tmp_path / "cfg"
    folder.mkdir()
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "evilgrp").mkdir(parents=True)
    (elsewhere / "evilgrp" / "x.yaml").write_text("# @package _global_\n" + yaml.safe_dump(
        {"hydra": {"callbacks": {"evil": evil}}}))
    primary = {"seed": 1}
    if trick == "searchpath":
        primary |= {"defaults": ["_self_", {"evilgrp": "x"}], "hydra": {"searchpath": [f"file://{elsewhere}"]}}
    elif trick == "symlinked group":
        (folder / "evilgrp").symlink_to(elsewhere / "evilgrp")
        primary |= {"defaults": ["_self_", {"evilgrp": "x"}]}
    elif trick == "package header":
        (folder / "h.yaml").write_text("# @package hydra\n" + yaml.safe_dump(
            {"job_logging": {"handlers": {"evil": {"class": "logging.FileHandler", "filename": str(tmp_path / "P")}}}}))
        primary |= {"defaults": ["_self_", "h"]}
    elif trick == "hydra group":
        (folder / "hydra" / "job_logging").mkdir(parents=True)
        (folder / "hydra" / "job_logging" / "evil.yaml").write_text(yaml.safe_dump(
            {"version": 1, "handlers": {"evil": {"class": "logging.FileHandler", "filename": str(tmp_path / "P")}},
             "root": {"handlers": ["evil"]}}))
        primary |= {"defaults": ["_self_", {"override hydra/job_logging": "evil"}]}
    (folder / "config.yaml").write_text(yaml.safe_dump(primary))
    return folder


@pytest.mark.parametrize("trick", ["searchpath", "symlinked group", "package header", "hydra group"])
def test_no_layout_of_a_config_folder_hides_a_hostile_setting(tmp_path, trick):
    from mlplab.run.config_files import check_foreign_configs

    folder = layout_trick(tmp_path, trick)
    with pytest.raises(UserError, match="is refused"):
        check_foreign_configs(["--config-path", str(folder), "--config-name", "config"], CONF.parent / "train.py")
    assert not (tmp_path / "PWN").exists() and not (tmp_path / "P").exists()


@pytest.mark.slow
def test_a_finished_run_reruns_from_its_saved_config_with_its_directory_guarded(tmp_path):
    run = tmp_path / "run"
    assert run_script("train.py", "+experiment=smoke", f"hydra.run.dir={run}").returncode == 0
    rerun = run_script("train.py", "--config-path", str(run / ".hydra"), "--config-name", "config",
                       f"hydra.run.dir={tmp_path / 'rerun'}")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert (tmp_path / "rerun" / ".owner").is_file()
    again = run_script("train.py", "--config-path", str(run / ".hydra"), "--config-name", "config",
                       f"hydra.run.dir={run}")
    assert_one_line_error(again, "already holds a run")


def test_an_option_of_a_foreign_folder_picked_on_the_command_line_is_checked_too(tmp_path):
    from mlplab.run.config_files import check_foreign_configs

    (tmp_path / "evilgrp").mkdir()
    (tmp_path / "evilgrp" / "x.yaml").write_text("# @package _global_\n" + yaml.safe_dump(
        {"hydra": {"callbacks": {"evil": {"_target_": "logging.FileHandler", "filename": str(tmp_path / "PWN")}}}}))
    with pytest.raises(UserError, match="hydra.callbacks.evil"):
        check_foreign_configs(["--config-dir", str(tmp_path), "+evilgrp=x"], CONF.parent / "train.py")
    assert check_foreign_configs(["--config-dir", str(tmp_path)], CONF.parent / "train.py") == ["--config-dir",
                                                                                                str(tmp_path)]


@pytest.mark.parametrize("overrides", [
    ["+hydra.callbacks.evil._target_=logging.FileHandler", "+hydra.callbacks.evil.filename=/tmp/x"],
    ["+hydra.job_logging.handlers.evil.class=logging.FileHandler", "+hydra.job_logging.handlers.evil.filename=/tmp/x"],
    ["~hydra.callbacks.run_directory_guard"],
    ["+hydra.job.env_set.LD_PRELOAD=/tmp/evil.so"],
])
def test_command_line_overrides_of_hydras_machinery_are_held_to_the_same_rules(overrides):
    from mlplab.run.config_files import check_foreign_configs

    with pytest.raises(UserError, match="is refused"):
        check_foreign_configs(["+experiment=smoke", *overrides], CONF.parent / "train.py")
    assert check_foreign_configs(["hydra/job_logging=stdout", "hydra.job.chdir=false"], CONF.parent / "train.py")


@pytest.mark.parametrize("argv, named", [
    (["--experimental-rerun", "/tmp/x.pickle"], "--experimental-rerun"),
    (["--experimental-r=/tmp/x.pickle"], "--experimental-r"),
    (["++hydra={callbacks:{evil:{_target_:logging.FileHandler,filename:/tmp/x}}}"], "hydra.callbacks.evil"),
    (["++hydra={job:{env_set:{A:1}}}"], "env_set"),
    (["+hydra.job={env_set:{A:1}}"], "env_set"),
    (["++hydra={callbacks:{run_directory_guard:null}}"], "run_directory_guard"),
    (["++hydra={job_logging:{handlers:{file:{filename:/tmp/x}}}}"], "job_logging"),
])
def test_every_spelling_of_hydras_settings_on_the_command_line_is_checked(argv, named):
    from mlplab.run.config_files import check_foreign_configs

    with pytest.raises(UserError, match=named):
        check_foreign_configs(["+experiment=smoke", *argv], CONF.parent / "train.py")


def test_a_shortened_folder_flag_is_checked_like_the_whole_one(tmp_path):
    from mlplab.run.config_files import check_foreign_configs

    (tmp_path / "config.yaml").write_text(yaml.safe_dump(
        {"seed": 1, "hydra": {"callbacks": {"evil": {"_target_": "logging.FileHandler", "filename": "/tmp/x"}}}}))
    for flag in ("--config-p", "--config-pa", "--config-path"):
        with pytest.raises(UserError, match="hydra.callbacks.evil"):
            check_foreign_configs([f"{flag}={tmp_path}"], CONF.parent / "train.py")
