"""Packs: the seeds of one configuration trained as one batched model, each member exactly the run
its seed would be alone (bit for bit on this CPU), with its own record.

In-process tests train a pack and single runs built as train.py builds them and compare every
tensor of a member's state with the single run's; the slow tests run train.py itself and compare
the records (metrics.json, checkpoints, curves), through a stop and a resume, and with one member
whose weights were made non-finite.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch

from helpers import (SHORT_RUN, final_metrics, fit_in_process, options, run_script, start_script, wait_for)

SEEDS = [3, 1, 4]
FEW_STEPS = ("trainer.max_epochs=2", "++trainer.limit_train_batches=6", "++trainer.limit_val_batches=1",
             "callbacks=none", "fastpath.chunk=4")
# Every option of every group the module and the data read; a pack must train each exactly.
GROUP_OPTIONS = [f"{group}={option}" for group in ("activation", "norm", "dropout", "l2", "optimizer", "scheduler",
                                                   "augment") for option in options(group)]
GROUP_OPTIONS += [f"model.init={init}" for init in ("kaiming", "xavier", "lecun_normal")]
GROUP_OPTIONS += ["fastpath=off", "data/normalize=zscore", "model.hidden_sizes=[32,16]"]
REFUSED_TOGETHER = {"l2=decoupled": "optimizer=adam"}  # sgd has no decoupled decay


def member_state(module, index: int) -> dict[str, torch.Tensor]:
    return {key: value[index : index + 1] for key, value in module.state_dict().items()}


def assert_member_is_single(pack, single, index: int) -> None:
    expected, got = single.state_dict(), member_state(pack, index)
    assert expected.keys() == got.keys()
    different = [key for key in expected if not torch.equal(expected[key], got[key])]
    assert not different, f"member {index} differs from its single run in {different}"


def train(tmp_path: Path, seed, *overrides: str):
    name = str(seed).strip("[]").replace(",", "-")
    _, module = fit_in_process(tmp_path / f"run-{name}", f"seed={seed}", *FEW_STEPS, *overrides)
    return module


@pytest.mark.parametrize("option", GROUP_OPTIONS)
def test_every_option_trains_as_a_pack_whose_member_is_the_single_run(mnist, tmp_path, option):
    extra = (option, REFUSED_TOGETHER[option]) if option in REFUSED_TOGETHER else (option,)
    pack = train(tmp_path, f"[{','.join(map(str, SEEDS))}]", *extra)
    assert pack.net.members == len(SEEDS)
    single = train(tmp_path, SEEDS[1], *extra)
    assert_member_is_single(pack, single, 1)
    assert pack.member_values["val/acc"][1] == single.member_values["val/acc"][0]
    assert pack.member_values["train/loss_epoch"][1] == single.member_values["train/loss_epoch"][0]


def test_members_are_independent_of_who_shares_the_pack(mnist, tmp_path):
    """Seed 4 trained beside 3 and 1 equals seed 4 beside 9 alone, and the members differ."""
    first = train(tmp_path / "a", f"[{','.join(map(str, SEEDS))}]", "dropout=p02", "augment=affine")
    second = train(tmp_path / "b", "[9,4]", "dropout=p02", "augment=affine")
    assert all(torch.equal(first.state_dict()[k][2], second.state_dict()[k][1]) for k in first.state_dict())
    weights = first.net.linear_layers()[0].weight
    assert not torch.equal(weights[0], weights[1])


def test_a_non_finite_member_fails_alone_and_the_others_train_on(mnist, tmp_path):
    import pytorch_lightning as pl

    class PoisonMember(pl.Callback):
        """Makes member 1's first-layer weights inf before the 5th optimizer step."""

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if trainer.global_step == 4 * 1:
                with torch.no_grad():
                    module.net.linear_layers()[0].weight[1].fill_(float("inf"))

    seeds = f"[{','.join(map(str, SEEDS))}]"
    overrides = (*FEW_STEPS, "fastpath.chunk=1")
    _, poisoned = fit_in_process(tmp_path / "poisoned", f"seed={seeds}", *overrides, callbacks=[PoisonMember()])
    _, clean = fit_in_process(tmp_path / "clean", f"seed={seeds}", *overrides)
    assert list(poisoned.failed_members) == [1]
    assert "step 5" in poisoned.failed_members[1] and "training loss became" in poisoned.failed_members[1]
    for index in (0, 2):
        assert all(torch.equal(poisoned.state_dict()[k][index], clean.state_dict()[k][index])
                   for k in clean.state_dict())
    # The pack's means leave the failed member out.
    values = poisoned.member_values["val/acc"]
    assert poisoned.pack_values({"val/acc": torch.tensor(values)})["val/acc"] == pytest.approx((values[0] + values[2]) / 2)


def test_a_pack_whose_every_member_fails_stops_as_a_single_run_does(mnist, tmp_path):
    from mlplab.run.stops import NonFiniteLossError

    with pytest.raises(NonFiniteLossError, match="training loss became"):
        fit_in_process(tmp_path / "run", "seed=[1,2]", *FEW_STEPS, "optimizer=sgd", "optimizer.lr=1e30", "norm=none")


# ---------------------------------------------------------------------------------------------
# train.py: the records

@pytest.fixture(scope="module")
def reference_pack(mnist, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("pack") / "run"
    result = run_script("train.py", *SHORT_RUN, "seed=[1,2,3]", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def member_metrics(member_dir: Path) -> dict:
    return {k: v for k, v in final_metrics(member_dir).items() if k != "pack"}


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


def same(first: dict, second: dict) -> bool:
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


@pytest.mark.slow
def test_a_member_records_exactly_what_its_seed_alone_records(reference_pack, tmp_path):
    single = tmp_path / "single"
    result = run_script("train.py", *SHORT_RUN, "seed=2", f"hydra.run.dir={single}")
    assert result.returncode == 0, result.stderr[-3000:]
    member = reference_pack / "seed-2"
    assert member_metrics(member) == final_metrics(single)
    for name in ("best.ckpt", "last.ckpt"):
        assert same(weights(member / "checkpoints" / name), weights(single / "checkpoints" / name)), name
        # The member's optimizer state is its own, numbered as a single run's (resumable as one).
        mine, alone = (torch.load(folder / "checkpoints" / name, weights_only=True)["optimizer_states"][0]
                       for folder in (member, single))
        assert [g["params"] for g in mine["param_groups"]] == [g["params"] for g in alone["param_groups"]]
        assert all(torch.equal(mine["state"][k][n], alone["state"][k][n]) for k in alone["state"] for n in alone["state"][k])
    assert (member / "csv" / "metrics.csv").read_text() == (single / "csv" / "metrics.csv").read_text()
    assert json.loads((member / "status.json").read_text())["status"] == "finished"
    config = (member / ".hydra" / "config.yaml").read_text()
    assert "\nseed: 2\n" in config
    for path in ("figures/weights.png", "figures/confusion_matrix.png", "confusion_matrix.json", "run_info.json"):
        assert (member / path).is_file(), path
    # eval.py tests a member's checkpoint as it tests a single run's (on the whole test set).
    tested = []
    for name, folder in (("member", member), ("single", single)):
        evaluated = run_script("eval.py", f"ckpt_path={folder / 'checkpoints' / 'best.ckpt'}",
                               f"hydra.run.dir={tmp_path / (name + '-eval')}")
        assert evaluated.returncode == 0, evaluated.stderr[-3000:]
        tested.append(json.loads((tmp_path / (name + "-eval") / "metrics.json").read_text())["test_acc"])
    assert tested[0] == tested[1]


@pytest.mark.slow
def test_the_pack_directory_holds_its_members_and_their_summary(reference_pack):
    from scipy import stats

    pack = json.loads((reference_pack / "pack.json").read_text())
    assert pack["members"] == ["seed-1", "seed-2", "seed-3"] and pack["seeds"] == [1, 2, 3]
    summary = json.loads((reference_pack / "summary.json").read_text())
    accuracies = [json.loads((reference_pack / m / "metrics.json").read_text())["test_acc"] for m in pack["members"]]
    assert summary["test_acc"]["values"] == accuracies
    mean = sum(accuracies) / 3
    interval = stats.t.interval(0.95, 2, loc=mean, scale=stats.sem(accuracies))
    assert summary["test_acc"]["mean"] == pytest.approx(mean)
    assert summary["test_acc"]["ci95"] == pytest.approx(list(interval))
    assert json.loads((reference_pack / "status.json").read_text())["status"] == "finished"
    assert (reference_pack / "checkpoints" / "last.ckpt").is_file() and not (reference_pack / "metrics.json").exists()


@pytest.mark.slow
def test_a_stopped_pack_resumed_equals_the_uninterrupted_pack(reference_pack, tmp_path):
    run_dir = tmp_path / "run"
    process = start_script("train.py", *SHORT_RUN, "seed=[1,2,3]", f"hydra.run.dir={run_dir}")
    wait_for(run_dir / "checkpoints" / "last.ckpt", process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    for folder in (run_dir, *(run_dir / f"seed-{s}" for s in (1, 2, 3))):
        assert json.loads((folder / "status.json").read_text())["status"] == "interrupted", folder
    result = run_script("train.py", *SHORT_RUN, "seed=[1,2,3]", f"resume={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    for seed in (1, 2, 3):
        member, reference = run_dir / f"seed-{seed}", reference_pack / f"seed-{seed}"
        assert json.loads((member / "status.json").read_text())["status"] == "finished"
        assert member_metrics(member) == member_metrics(reference)
        assert same(weights(member / "checkpoints" / "last.ckpt"), weights(reference / "checkpoints" / "last.ckpt"))


@pytest.mark.slow
def test_a_member_that_diverges_is_recorded_failed_and_the_others_finish_as_without_it(reference_pack, tmp_path):
    """Member seed-2's weights are made inf in the pack's checkpoint after the first epoch; the
    resumed pack records seed-2 failed at its step and ends seeds 1 and 3 as the clean pack does."""
    run_dir = tmp_path / "run"
    first = run_script("train.py", *SHORT_RUN, "seed=[1,2,3]", "trainer.max_epochs=1", f"hydra.run.dir={run_dir}")
    assert first.returncode == 0, first.stderr[-3000:]
    checkpoint_file = run_dir / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(checkpoint_file, weights_only=True)
    checkpoint["state_dict"]["net.layers.0.weight"][1] = float("inf")
    torch.save(checkpoint, checkpoint_file)
    result = run_script("train.py", *SHORT_RUN, "seed=[1,2,3]", "trainer.max_epochs=3", f"resume={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    failed = json.loads((run_dir / "seed-2" / "status.json").read_text())
    assert failed["status"] == "failed" and "training loss became" in failed["error"] and "epoch 1" in failed["error"]
    assert not (run_dir / "seed-2" / "metrics.json").exists()
    for seed in (1, 3):
        member, reference = run_dir / f"seed-{seed}", reference_pack / f"seed-{seed}"
        assert member_metrics(member) == member_metrics(reference)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["finished"] == 2 and summary["test_acc"]["n"] == 2


@pytest.mark.parametrize("value", ["[1,1]", "[]", "[1,-2]", "[1,abc]", "[1,2.5]", f"[{','.join(['1'] * 2)}]"])
def test_a_bad_seed_list_is_one_line_before_any_work(value, tmp_path):
    from helpers import assert_one_line_error

    result = run_script("train.py", f"seed={value}", f"hydra.run.dir={tmp_path / 'run'}")
    assert_one_line_error(result, "seed=")


def test_under_a_sweep_agent_the_pack_reports_its_means_to_the_agents_run(mnist, tmp_path):
    """A wandb sweep's run that trains a pack (seed=[...] fixed in its command) is the pack's: the
    agent's run id is used once, by the pack, and the members keep their records on disk."""
    run_dir = tmp_path / "run"
    result = run_script("train.py", "+experiment=smoke", "logger=default", "seed=[1,2]", f"hydra.run.dir={run_dir}",
                        env={"WANDB_SWEEP_ID": "sweep1", "WANDB_RUN_ID": "agentrun1", "WANDB_MODE": "offline"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert list((run_dir / "wandb").glob("offline-run-*-agentrun1"))
    for seed in (1, 2):
        member = run_dir / f"seed-{seed}"
        assert (member / "metrics.json").is_file() and not (member / "wandb").exists()


@pytest.mark.parametrize("overrides, key", [
    (("seed=[1,2]", "++trainer.precision=bf16-mixed"), "trainer.precision"),
    (("seed=[1,2]", "fastpath.compile=true"), "fastpath.compile"),
    (("seed=[1,2]", "++data.seed=5"), "data.seed"),
    (("seed=1", "data.seed=[3,4]"), "data.seed"),
    (("seed=[1,2]", "trainer=ddp"), "trainer.devices"),
])
def test_what_a_pack_cannot_carry_exactly_is_refused_in_one_line(overrides, key, tmp_path):
    from helpers import assert_one_line_error

    result = run_script("train.py", *overrides, f"hydra.run.dir={tmp_path / 'run'}")
    assert_one_line_error(result, key)
    assert not (tmp_path / "run" / "seed-1").exists()


@pytest.mark.slow
def test_a_list_of_one_seed_is_a_pack_of_one_and_a_finished_pack_resumes_to_nothing(mnist, tmp_path):
    run_dir = tmp_path / "run"
    tiny = ("+experiment=smoke", "callbacks=none", "logger=csv")
    result = run_script("train.py", *tiny, "seed=[7]", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((run_dir / "pack.json").read_text())["members"] == ["seed-7"]
    assert json.loads((run_dir / "seed-7" / "metrics.json").read_text())["seed"] == 7
    before = {path: path.stat().st_mtime_ns for path in run_dir.rglob("*") if path.is_file()}
    again = run_script("train.py", *tiny, "seed=[7]", f"resume={run_dir}")
    assert again.returncode == 0 and "nothing to resume" in again.stdout + again.stderr
    assert {path: path.stat().st_mtime_ns for path in run_dir.rglob("*") if path.is_file()
            and path.name not in ("train.log", ".owner")} == {p: t for p, t in before.items()
                                                            if p.name not in ("train.log", ".owner")}
