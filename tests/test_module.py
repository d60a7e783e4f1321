"""The LightningModule's loss terms and optimizer set-up."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from helpers import fit_in_process
from mlplab.core.classifier import MLPClassifier
from mlplab.run.build import build_module


def make_module(compose_cfg, *overrides: str, input_size: int = 784, num_classes: int = 10) -> MLPClassifier:
    return build_module(compose_cfg(*overrides), SimpleNamespace(input_size=input_size, num_classes=num_classes))


def test_l2_penalty_matches_hand_computation_and_skips_biases_and_norms(compose_cfg):
    module = make_module(compose_cfg, "model.hidden_sizes=[3]", "norm=batch", "activation=prelu", "l2=penalty", "l2.weight=0.5",
                         input_size=4, num_classes=2)
    with torch.no_grad():
        for p in module.parameters():
            p.fill_(2.0)
    # Only the two weight matrices count: (4*3 + 3*2) entries of 2.0 squared, times lambda.
    penalty = module.l2_penalty()
    assert penalty.shape == (1,) and penalty.item() == pytest.approx(0.5 * (4 * 3 + 3 * 2) * 4.0)
    assert [tuple(w.shape) for w in module.decayed_weights()] == [(1, 3, 4), (1, 2, 3)]  # [members, out, in]


def test_l2_penalty_is_each_members_own(compose_cfg):
    module = make_module(compose_cfg, "seed=[1,2]", "model.hidden_sizes=[3]", "norm=batch", "activation=prelu",
                         "l2=penalty", "l2.weight=0.5", input_size=4, num_classes=2)
    with torch.no_grad():
        for p in module.parameters():
            p[0].fill_(2.0)
            p[1].fill_(1.0)
    # Per member: (4*3 + 3*2) entries of its own value squared, times lambda.
    assert module.l2_penalty().tolist() == pytest.approx([0.5 * 18 * 4.0, 0.5 * 18 * 1.0])


def test_penalty_is_added_to_the_training_loss(compose_cfg):
    plain = make_module(compose_cfg, "l2=none")
    penalized = make_module(compose_cfg, "l2=penalty", "l2.weight=1e-2")
    penalized.load_state_dict(plain.state_dict())
    batch = (torch.rand(16, 784), torch.arange(16) % 10)
    plain.train(), penalized.train()
    plain_loss, plain_penalty, _ = plain.training_losses(batch)
    loss, penalty, _ = penalized.training_losses(batch)
    assert plain_penalty.item() == 0.0 and loss.item() == pytest.approx(plain_loss.item(), rel=1e-6)
    assert penalty.item() == pytest.approx(penalized.l2_penalty().item(), rel=1e-6) and penalty.item() > 0


@pytest.mark.parametrize(
    "overrides, optimizer_type, decoupled",
    [
        (["optimizer=adam", "l2=none"], torch.optim.Adam, False),
        (["optimizer=adam", "l2=decoupled"], torch.optim.Adam, True),
        (["optimizer=adamw", "l2=decoupled"], torch.optim.AdamW, True),
        (["optimizer=sgd", "l2=penalty"], torch.optim.SGD, False),
    ],
)
def test_optimizer_groups_decay_only_weights(compose_cfg, overrides, optimizer_type, decoupled):
    module = make_module(compose_cfg, *overrides)
    optimizer = module.configure_optimizers()
    assert type(optimizer) is optimizer_type
    decay_group, other_group = optimizer.param_groups
    weight = module.hparams.l2["weight"]
    assert decay_group["weight_decay"] == (weight if decoupled else 0.0)
    assert other_group["weight_decay"] == 0.0
    # Each member's slice of each weight matrix: views into the packed weights, not the weights themselves.
    assert len(decay_group["params"]) == 2 and all(p.dim() == 2 for p in decay_group["params"])
    assert [p.data_ptr() for p in decay_group["params"]] == [w.data_ptr() for w in module.decayed_weights()]
    if optimizer_type is torch.optim.Adam:
        assert decay_group["decoupled_weight_decay"] is decoupled


def test_decoupled_decay_shrinks_weights_without_gradient(compose_cfg):
    module = make_module(compose_cfg, "optimizer=adam", "l2=decoupled", "l2.weight=0.1", "optimizer.lr=0.5")
    optimizer = module.configure_optimizers()
    weight = module.decayed_weights()[0]
    before = weight.detach().clone()
    for p in module.parameters():
        p.grad = torch.zeros_like(p)
    module.member_views.load_grads()  # the optimizer steps each member's views, as optimizer_step_on does
    optimizer.step()
    assert torch.allclose(weight, before * (1 - 0.5 * 0.1))


def test_cosine_scheduler_decays_the_learning_rate_to_zero_over_the_epochs(compose_cfg):
    module = make_module(compose_cfg, "scheduler=cosine", "trainer.max_epochs=4")
    configured = module.configure_optimizers()
    optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    rates = []
    for _ in range(4):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0] == pytest.approx(1e-3) and rates == sorted(rates, reverse=True)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_without_a_scheduler_the_optimizer_is_returned_alone(compose_cfg):
    assert isinstance(make_module(compose_cfg).configure_optimizers(), torch.optim.Optimizer)


def sweep_values(name: str, key: str) -> list:
    import yaml

    from helpers import REPO

    return yaml.safe_load((REPO / "sweeps" / f"{name}.yaml").read_text())["parameters"][key]["values"]


@pytest.mark.parametrize("sweep", ["l2_penalty", "l2_decoupled"])
def test_every_l2_strength_in_the_sweeps_changes_training(mnist, tmp_path, sweep):
    """A value that rounds away (decoupled 1e-5 with lr 1e-3: 1 - 1e-8 is 1.0 in float32) would
    repeat the no-L2 row; the smallest value of each sweep must move the weights off it."""
    quick = ("trainer.max_epochs=1", "++trainer.limit_train_batches=30", "++trainer.limit_val_batches=1")
    _, plain = fit_in_process(tmp_path / "none", *quick)
    mode = sweep_values(sweep, "l2")[0]
    _, smallest = fit_in_process(tmp_path / "l2", *quick, f"l2={mode}", f"l2.weight={min(sweep_values(sweep, 'l2.weight'))}")
    assert not torch.equal(plain.net.linear_layers()[0].weight, smallest.net.linear_layers()[0].weight)
    if mode == "decoupled":  # the value the sweep no longer holds: exactly no L2
        _, no_op = fit_in_process(tmp_path / "no_op", *quick, "l2=decoupled", "l2.weight=1e-5")
        assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), no_op.state_dict().values()))
