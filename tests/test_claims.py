"""The textbook chapter's claims, computed with the project's own activations, norms, MLP and module.

Each activation and norm is built from its real file in conf/ (the factory the model receives), so
a changed yaml (another eps, another class) shows up here. Nothing is restated as a constant: the
numbers the chapter quotes are computed and compared at the precision the chapter gives them.
"""

from __future__ import annotations

import json
import math
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image
from torch import nn

from helpers import CONF, coloured_fraction, read_png
from mlplab import plots
from mlplab.tools import docs_figures as figures, figure_runs, gradient_findings as findings
from mlplab.errors import UserError
from mlplab.plots import chapter_figures as chapter
from mlplab.tools.gradient_rms import GradientRMS, first_to_last_ratio, gradient_rms, rising_until
from mlplab.core.model import MLP
from mlplab.core.pack import Pointwise
from mlplab.run.build import build_module


def option(group: str, name: str) -> Callable[..., nn.Module]:
    """The factory conf/<group>/<name>.yaml builds, as MLP receives it."""
    return instantiate(OmegaConf.load(CONF / group / f"{name}.yaml"))


def configured_eps(name: str) -> float:
    return float(OmegaConf.load(CONF / "norm" / f"{name}.yaml").eps)


def derivative(function: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    x = x.detach().clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(function(x).sum(), x)  # elementwise: d(sum)/dx_i = f'(x_i)
    return gradient


# ---------------------------------------------------------------- sigmoid


@pytest.fixture
def sigmoid() -> nn.Module:
    return option("activation", "sigmoid")()


def test_sigmoid_squashes_two_to_the_chapters_values(sigmoid):
    x = torch.tensor(2.0, dtype=torch.float64)
    once, twice, thrice = sigmoid(x), sigmoid(sigmoid(x)), sigmoid(sigmoid(sigmoid(x)))
    assert round(once.item(), 3) == 0.881
    assert round(twice.item(), 2) == 0.71
    assert round(thrice.item(), 2) == 0.67
    assert once > twice > thrice  # each application squashes further toward the fixed point


def test_repeated_sigmoid_forgets_its_input_and_converges_to_the_fixed_point(sigmoid):
    starts = torch.linspace(-10, 10, 21, dtype=torch.float64)
    values = starts
    for _ in range(30):
        values = sigmoid(values)
    # Every start ends at the same value, and that value solves x = sigmoid(x).
    assert values.max() - values.min() < 1e-9
    limit = values[0]
    assert sigmoid(limit).item() == pytest.approx(limit.item(), abs=1e-9)
    assert round(limit.item(), 4) == 0.6590
    assert round(limit.item(), 2) == 0.66


def test_sigmoid_derivative_is_at_most_a_quarter_attained_at_zero(sigmoid):
    x = torch.arange(-1000, 1001, dtype=torch.float64) / 100  # steps of 0.01 from -10 to 10, with 0 exactly
    slope = derivative(sigmoid, x)
    assert slope.max().item() == pytest.approx(0.25, abs=1e-12)
    assert x[slope.argmax()].item() == 0.0
    assert (slope <= 0.25).all()


# ---------------------------------------------------------------- ReLU


@pytest.fixture
def relu() -> nn.Module:
    return option("activation", "relu")()


def test_relu_is_idempotent(relu):
    x = torch.randn(10_000, generator=torch.Generator().manual_seed(0))
    once = relu(x)
    assert torch.equal(relu(once), once)
    assert (once == 0).any() and (once > 0).any()  # both branches were exercised


def test_relu_derivative_is_zero_or_one_away_from_zero(relu):
    x = torch.randn(10_000, generator=torch.Generator().manual_seed(1))
    x = x[x.abs() > 1e-6]
    slope = derivative(relu, x)
    assert set(slope.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(slope, (x > 0).to(slope.dtype))


def test_about_half_of_hidden_relus_are_zero_with_normal_weights_and_inputs():
    torch.manual_seed(0)
    net = MLP(input_size=784, hidden_sizes=[512], num_classes=10, activation=option("activation", "relu"),
              norm=option("norm", "none"), init="kaiming")
    inputs = torch.randn(2000, 784)
    (relu,) = net.hidden_activations()
    outputs: list[torch.Tensor] = []
    relu.register_forward_hook(lambda module, args, output: outputs.append(output))
    with torch.no_grad():
        net(inputs)
    assert isinstance(relu, Pointwise) and isinstance(relu.layer, nn.ReLU)
    hidden = outputs[0]
    assert hidden.shape == (1, 2000, 512)  # [members, batch, units]
    zero_fraction = (hidden == 0).float().mean().item()
    assert 0.45 < zero_fraction < 0.55


# ---------------------------------------------------------------- softmax and cross-entropy


def logits_net(num_classes: int) -> MLP:
    """An MLP without hidden layers whose last Linear is the identity: its logits are its input."""
    net = MLP(input_size=num_classes, hidden_sizes=[], num_classes=num_classes,
              activation=option("activation", "relu"), norm=option("norm", "none"))
    with torch.no_grad():
        net.layers[0].weight.copy_(torch.eye(num_classes))
        net.layers[0].bias.zero_()
    return net


def probabilities_of(net: MLP, inputs: torch.Tensor) -> torch.Tensor:
    """Softmax of the logits: what the cross-entropy loss turns the outputs into."""
    with torch.no_grad():
        return torch.softmax(net(inputs), dim=-1)


def test_softmax_gives_probabilities_in_zero_one_that_sum_to_one():
    torch.manual_seed(0)
    net = MLP(input_size=784, hidden_sizes=[100], num_classes=10, activation=option("activation", "relu"),
              norm=option("norm", "batch")).eval()
    probabilities = probabilities_of(net, torch.randn(500, 784) * 5)
    assert probabilities.shape == (1, 500, 10)  # [members, batch, classes]
    assert (probabilities >= 0).all() and (probabilities <= 1).all()
    assert torch.allclose(probabilities.sum(dim=-1), torch.ones(1, 500), atol=1e-6)


def test_softmax_widens_the_ratio_of_scores_one_and_two():
    scores = torch.tensor([[1.0, 2.0]])
    probabilities = probabilities_of(logits_net(2), scores)[0, 0]  # the only member's only sample
    ratio = (probabilities[0] / probabilities[1]).item()
    raw_ratio = (scores[0, 0] / scores[0, 1]).item()
    assert round(ratio, 2) == 0.37
    assert ratio == pytest.approx(math.exp(1) / math.exp(2), rel=1e-6)
    assert raw_ratio == 0.5 and ratio < raw_ratio


def test_cross_entropy_of_the_module_is_minus_log_probability_of_the_target(compose_cfg):
    module = build_module(compose_cfg("l2=none", "dropout=none"))
    torch.manual_seed(0)
    images, labels = torch.rand(32, 784), torch.arange(32) % 10
    module.train()
    loss, _, _ = module.training_losses((images, labels))  # F.cross_entropy(logits, labels)
    probabilities = probabilities_of(module.net, images)  # the same batch statistics: still in training mode
    assert loss.shape == (1,) and probabilities.shape == (1, 32, 10)  # per member
    minus_log_p = -probabilities[0, torch.arange(32), labels].log()
    assert loss.item() == pytest.approx(minus_log_p.mean().item(), rel=1e-5)
    # With a one-hot target the sum over classes of -y log p keeps only the target's term.
    one_hot = F.one_hot(labels, 10).float()
    per_sample = F.cross_entropy(module(images)[0], one_hot, reduction="none")
    assert torch.allclose(per_sample, minus_log_p, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- batch, layer and RMS norm


def offset_and_scaled(batch: int = 256, units: int = 64, seed: int = 0) -> torch.Tensor:
    """Inputs with a different offset per unit and scale per sample: both axes carry something to remove."""
    generator = torch.Generator().manual_seed(seed)
    unit_offsets = torch.linspace(-2, 6, units)
    sample_scales = torch.linspace(0.5, 4, batch)[:, None]
    return torch.randn(batch, units, generator=generator) * sample_scales + unit_offsets


def tiny_variance_columns(x: torch.Tensor) -> torch.Tensor:
    """x with some units (columns) and samples (rows) of variance ~1e-6, where the configured eps matters."""
    x = x.clone()
    x[:, :4] = x[:, :4] * 1e-3
    x[:4, :] = x[:4, :] * 1e-3
    return x


def test_batch_norm_normalizes_each_unit_over_the_batch():
    eps = configured_eps("batch")
    layer = option("norm", "batch")(64).train()
    x = offset_and_scaled()
    y = layer(x).detach()
    assert torch.allclose(y.mean(dim=0), torch.zeros(64), atol=1e-5)
    assert torch.allclose(y.std(dim=0, unbiased=False), torch.ones(64), atol=1e-3)
    row_stds = y.std(dim=1, unbiased=False)
    assert row_stds.max() / row_stds.min() > 3  # each sample keeps its own scale: not normalized along rows
    tiny = tiny_variance_columns(x)
    expected = (tiny - tiny.mean(dim=0)) / torch.sqrt(tiny.var(dim=0, unbiased=False) + eps)
    assert torch.allclose(layer(tiny), expected, atol=1e-5)
    without_eps = (tiny - tiny.mean(dim=0)) / tiny.std(dim=0, unbiased=False)
    assert not torch.allclose(layer(tiny), without_eps, atol=1e-2)  # eps visibly takes part


def test_layer_norm_normalizes_each_sample_over_its_units():
    eps = configured_eps("layer")
    layer = option("norm", "layer")(64)
    x = offset_and_scaled()
    y = layer(x).detach()
    assert torch.allclose(y.mean(dim=1), torch.zeros(256), atol=1e-5)
    assert torch.allclose(y.std(dim=1, unbiased=False), torch.ones(256), atol=1e-3)
    assert y.mean(dim=0).abs().max() > 0.5  # the units are not centred: the wrong axis
    tiny = tiny_variance_columns(x)
    mean = tiny.mean(dim=1, keepdim=True)
    expected = (tiny - mean) / torch.sqrt(tiny.var(dim=1, unbiased=False, keepdim=True) + eps)
    assert torch.allclose(layer(tiny), expected, atol=1e-5)
    without_eps = (tiny - mean) / tiny.std(dim=1, unbiased=False, keepdim=True)
    assert not torch.allclose(layer(tiny), without_eps, atol=1e-2)


def test_rms_norm_rescales_each_sample_without_centring_it():
    eps = configured_eps("rms")
    layer = option("norm", "rms")(64)
    x = offset_and_scaled()
    y = layer(x).detach()
    assert torch.allclose(y.pow(2).mean(dim=1).sqrt(), torch.ones(256), atol=1e-4)
    # The offsets average +2, so every row keeps a positive mean (layer norm would leave < 1e-5).
    assert y.mean(dim=1).min() > 0.1
    tiny = tiny_variance_columns(x)
    expected = tiny / torch.sqrt(tiny.pow(2).mean(dim=1, keepdim=True) + eps)
    assert torch.allclose(layer(tiny), expected, atol=1e-5)
    # Same direction as the input per row: a positive rescaling, unlike layer norm.
    assert torch.allclose(y / x, (y / x)[:, :1].expand_as(y), rtol=1e-4)


# ---------------------------------------------------------------- L2 penalty


def test_l2_penalty_is_lambda_sum_of_squares_with_gradient_two_lambda_w(compose_cfg):
    """`l2=penalty` adds lambda * sum(w^2) over Linear weights, so its gradient is 2 * lambda * w.

    The textbook writes the penalty gradient as lambda * w because it uses J + lambda/2 * ||w||^2;
    the project has no 1/2, so the same `l2.weight` decays twice as fast as the textbook's lambda.
    """
    strength = 0.05
    module = build_module(compose_cfg("l2=penalty", f"l2.weight={strength}"))
    weights = module.decayed_weights()
    assert len(weights) == len(module.net.linear_layers())
    assert module.l2_penalty().item() == pytest.approx(strength * sum(w.pow(2).sum().item() for w in weights), rel=1e-5)
    gradients = torch.autograd.grad(module.l2_penalty(), weights)
    for weight, gradient in zip(weights, gradients):
        assert torch.allclose(gradient, 2 * strength * weight, rtol=1e-6, atol=1e-9)


def test_one_sgd_step_with_the_penalty_is_theta_minus_eta_times_gradient_plus_two_lambda_theta(compose_cfg):
    """One step of the module's own SGD (momentum 0) on `loss + lambda * sum(w^2)`:

    weights: theta <- theta - eta * (dJ/dtheta + 2 * lambda * theta)
    biases and norm parameters: theta <- theta - eta * dJ/dtheta (the penalty leaves them alone).

    The textbook's update theta - eta * (dJ/dtheta + lambda * theta) is for J + lambda/2 * ||w||^2; with
    the project's lambda * ||w||^2 the factor is 2, and the textbook's form is checked to be wrong here.
    """
    learning_rate, strength = 0.1, 0.05
    module = build_module(compose_cfg("optimizer=sgd", "optimizer.momentum=0", f"optimizer.lr={learning_rate}",
                                      "l2=penalty", f"l2.weight={strength}"))
    optimizer = module.configure_optimizers()
    assert isinstance(optimizer, torch.optim.SGD)
    assert all(group["momentum"] == 0 and group["weight_decay"] == 0 for group in optimizer.param_groups)
    torch.manual_seed(0)
    batch = (torch.rand(64, 784), torch.arange(64) % 10)
    module.train()
    parameters = dict(module.named_parameters())
    before = {name: p.detach().clone() for name, p in parameters.items()}
    # dJ/dtheta of the data loss alone (same training-mode forward pass as the step below).
    data_loss = F.cross_entropy(module(batch[0])[0], batch[1])  # the only member's logits
    data_gradients = dict(zip(parameters, torch.autograd.grad(data_loss, list(parameters.values()))))

    # What training_step runs: loss + penalty backpropagated, each member's gradients to its views, one step.
    module.optimizer_step_on(*batch, optimizer, lambda total: total.backward())

    decayed = {id(w) for w in module.decayed_weights()}
    assert len(decayed) == 2  # 784->100 and 100->10
    checked_plain = 0
    for name, parameter in parameters.items():
        theta, gradient = before[name], data_gradients[name]
        if id(parameter) in decayed:
            expected = theta - learning_rate * (gradient + 2 * strength * theta)
            textbook_lambda = theta - learning_rate * (gradient + strength * theta)
            assert torch.allclose(parameter, expected, rtol=1e-5, atol=1e-7), name
            assert not torch.allclose(parameter, textbook_lambda, rtol=1e-5, atol=1e-7), name
        else:
            checked_plain += 1
            assert torch.allclose(parameter, theta - learning_rate * gradient, rtol=1e-5, atol=1e-7), name
    assert checked_plain == 4  # two Linear biases, the batch norm's weight and bias


# ---------------------------------------------------------------- figures without training


def test_pure_figures_are_drawn_and_show_their_curves(tmp_path):
    drawn = figures.pure_figures()
    assert sorted(drawn) == ["activations.png", "norm_axes.png", "sigmoid_squashing.png"]
    for name, figure in drawn.items():
        pixels = read_png(plots.save(figure, tmp_path / name))
        height, width, _ = pixels.shape
        assert width >= 800 and height >= 300, (name, pixels.shape)
        # Coloured curves or heat maps: a figure whose content was removed keeps only black text and axes.
        assert coloured_fraction(pixels) > 0.01, name


def test_a_figure_without_its_curves_fails_the_content_check(tmp_path):
    figure = chapter.activations_figure({"relu": nn.ReLU(), "tanh": nn.Tanh()})
    for axis in figure.axes:
        for line in list(axis.get_lines()):
            line.remove()
    assert coloured_fraction(read_png(plots.save(figure, tmp_path / "empty.png"))) < 0.002


# ---------------------------------------------------------------- the gradient figure's runs and records


def test_deep_sigmoid_and_deep_relu_differ_only_in_the_activation(compose_cfg):
    """The gradient figure compares activations: one net, one init, one optimizer (issue: He init for ReLU only)."""
    sigmoid, relu = (OmegaConf.to_container(compose_cfg(f"+experiment=deep_{name}")) for name in ("sigmoid", "relu"))
    assert sigmoid.pop("activation") != relu.pop("activation")
    assert (sigmoid.pop("name"), relu.pop("name")) == ("deep_sigmoid", "deep_relu")
    assert sigmoid == relu
    assert len(sigmoid["model"]["hidden_sizes"]) == 6 and sigmoid["norm"]["_target_"] == "torch.nn.Identity"


def write_run_info(run: Path, *overrides: str) -> None:
    """The command and commit train.py records in run_info.json."""
    info = {"command": ["python", "/somewhere/train.py", *overrides], "git": {"commit": "c0ffee", "dirty": False}}
    (run / "run_info.json").write_text(json.dumps(info))


def write_gradient_run(run: Path, layers: int = 3, init: str = "default", epochs: int = 2, interval: int = 10,
                       steps_per_epoch: int = 20) -> Path:
    """A run directory as train.py +experiment=deep_* logger=csv writes it, with made-up gradients:
    layer i's RMS is 10^(i - layers) * (1 + step / 100), in Lightning's sparse csv rows."""
    (run / "csv").mkdir(parents=True)
    (run / ".hydra").mkdir()
    (run / ".hydra" / "config.yaml").write_text(
        f"seed: 42\nmodel:\n  hidden_sizes: [100, 100]\n  init: {init}\nnorm:\n  _target_: torch.nn.Identity\n"
        "data:\n  batch_size: 100\n")
    write_run_info(run, "+experiment=deep_sigmoid", f"hydra.run.dir={run}")
    (run / "metrics.json").write_text(json.dumps({"test_acc": 0.5}))
    names = [f"grad_rms_interval/linear{i}" for i in range(layers)] + [f"grad_rms/linear{i}" for i in range(layers)]
    lines = [",".join(["epoch", *names, "step", "train/loss"])]
    for epoch in range(epochs):
        for step in range((epoch * steps_per_epoch) + interval, (epoch + 1) * steps_per_epoch + 1, interval):
            values = [f"{10.0 ** (i - layers) * (1 + step / 100):.6g}" for i in range(layers)]
            lines += [",".join(["", *[""] * (2 * layers), str(step), "2.0"]),  # the module's own interval row
                      ",".join([str(epoch), *values, *[""] * layers, str(step), ""])]
        # Lightning's epoch row: its step column counts batches (8 steps each with fastpath.chunk=8).
        lines.append(",".join([str(epoch), *[""] * layers, *[f"{10.0 ** (i - layers):.6g}" for i in range(layers)],
                               str((epoch + 1) * steps_per_epoch // 8), ""]))
    (run / "csv" / "metrics.csv").write_text("\n".join(lines) + "\n")
    return run


def test_gradient_rms_is_read_from_the_sparse_rows_of_metrics_csv(tmp_path):
    gradients = gradient_rms(write_gradient_run(tmp_path / "run"))
    assert gradients.steps == [10, 20, 30, 40]
    assert gradients.by_interval[0] == pytest.approx([0.0011, 0.0012, 0.0013, 0.0014])
    assert gradients.by_interval[2] == pytest.approx([0.11, 0.12, 0.13, 0.14])
    assert (gradients.epochs, gradients.epoch_ends) == ([1, 2], [20, 40])  # optimizer steps, not the batch count
    assert gradients.by_epoch == {0: [0.001, 0.001], 1: [0.01, 0.01], 2: [0.1, 0.1]}
    assert first_to_last_ratio(gradients.by_interval, 0) == pytest.approx(0.01)
    assert rising_until(gradients) == 40  # every interval rises from input to output
    summary = figures.gradient_summary("deep_test", gradients, 0.5)
    assert "linear0 / linear2 RMS 0.01 in steps 1-10" in summary and "0.01, 0.01" in summary
    assert "in every interval" in summary and "50.00%" in summary
    figure = chapter.gradient_rms_figure({"a": (gradients.steps, gradients.by_interval),
                                          "b": (gradients.steps, gradients.by_interval)}, gradients.epoch_ends)
    assert coloured_fraction(read_png(plots.save(figure, tmp_path / "g.png"))) > 0.005


def made_up_gradients(by_step: Callable[[int], list[float]], by_epoch: list[list[float]], steps: int = 300,
                      interval: int = 10) -> GradientRMS:
    """A run's gradient RMS with `by_step(step)` the layers' RMS (input side first) at each interval's step,
    and `by_epoch` each epoch's means (one list per epoch)."""
    logged = list(range(interval, steps + 1, interval))
    layers = range(len(by_epoch[0]))
    epochs = len(by_epoch)
    return GradientRMS(logged, {layer: [by_step(step)[layer] for step in logged] for layer in layers},
                       list(range(1, epochs + 1)), [steps * (epoch + 1) // epochs for epoch in range(epochs)],
                       {layer: [means[layer] for means in by_epoch] for layer in layers})


def vanishing(step: int) -> list[float]:
    return [10.0 ** (layer - 3) for layer in range(4)]  # 10x less per layer towards the input


def vanishing_until_100(step: int) -> list[float]:
    return vanishing(step) if step <= 100 else [5.0, 0.01, 0.1, 1.0]


def relu_like(step: int) -> list[float]:
    return [0.5, 1.0, 1.5, 3.0]


def test_the_gradient_findings_are_written_from_the_runs_numbers():
    """PROVENANCE.md's paragraph under gradient_norms.png states the measures of the runs it was made from."""
    adam = made_up_gradients(vanishing_until_100, [[0.02, 0.01, 0.1, 1.0], [0.5, 0.1, 0.1, 1.0], [0.9, 0.1, 0.1, 1.0]])
    sgd = made_up_gradients(vanishing, [[0.001, 0.01, 0.1, 1.0]] * 3)
    relu = made_up_gradients(relu_like, [[0.3, 1.0, 1.5, 3.0], [0.6, 1.0, 1.5, 3.0], [0.8, 1.0, 1.5, 1.0]])
    text = " ".join(findings.gradient_findings(adam, sgd, relu, 0.1135).split())
    assert ("At the start (steps 1-10), with either optimizer, each sigmoid layer's gradient RMS is at least 10x "
            "below the next layer's (sigmoid' <= 1/4): the input layer gets 0.001 of the output layer's or less.") in text
    assert "Each ReLU layer below the output one is within 2x of the next." in text
    assert ("With SGD the sigmoid's profile lasts through every interval of its 3 epochs, and the net reaches "
            "11.35% test accuracy (chance: 10%).") in text
    assert ("With Adam it lasts through step 100: in the 100 steps after, the input layer's RMS grows 5,000x; by step "
            "300 the input layer's RMS is no longer the smallest, and in epoch 3 the input / output ratio of the epoch "
            "means is 0.9 (ReLU's: 0.8).") in text
    assert "Epoch means hide the vanishing phase: with Adam the sigmoid's ratio is 0.02 in epoch 1, against 0.001" in text
    assert "the likely cause, seen here only as the contrast with SGD" in text
    assert "part of why it sits below the hidden layers' in the ReLU net's first epoch too" in text
    assert all(len(line) <= findings.LINE_WIDTH for line in findings.gradient_findings(adam, sgd, relu, 0.5).splitlines())

    # Other numbers, other words: Adam's profile lasting as SGD's does, a ReLU input layer above the hidden ones.
    text = " ".join(findings.gradient_findings(sgd, sgd, made_up_gradients(relu_like, [[2.0, 1.0, 1.5, 3.0]] * 3),
                                               None).split())
    assert "With Adam it lasts through every interval of its 3 epochs; by step 300 the input layer's RMS is still" in text
    assert "With SGD the sigmoid's profile lasts through every interval of its 3 epochs." in text  # no accuracy known
    assert "Epoch means hide" not in text and "likely cause" not in text and "background pixels" not in text


def test_gradient_runs_of_different_inits_are_refused(tmp_path):
    runs = {"sigmoid": write_gradient_run(tmp_path / "sigmoid"),
            "relu": write_gradient_run(tmp_path / "relu", init="kaiming")}
    with pytest.raises(UserError, match="differ in model.init: 'default' in sigmoid.*'kaiming' in relu"):
        figures.check_comparable(runs)
    figures.check_comparable({"sigmoid": runs["sigmoid"], "again": runs["sigmoid"]})


def write_reference_run(run: Path) -> Path:
    """A run directory of +experiment=seed_pytorch, as far as weights_reference.png reads it."""
    (run / "checkpoints").mkdir(parents=True)
    hyperparameters = {"model": {"input_size": 784, "hidden_sizes": [100], "num_classes": 10},
                       "norm": {"_target_": "torch.nn.BatchNorm1d"}, "activation": {"_target_": "torch.nn.ReLU"}}
    weight = torch.randn(100, 784, generator=torch.Generator().manual_seed(0))
    torch.save({"state_dict": {"net.layers.0.weight": weight}, "epoch": 4, "hyper_parameters": hyperparameters},
               run / "checkpoints" / "last.ckpt")
    (run / "metrics.json").write_text(json.dumps({"test_acc": 0.9746}))
    write_run_info(run, "+experiment=seed_pytorch")
    return run


def test_the_figures_command_trains_on_one_thread_and_records_command_and_commit(tmp_path, monkeypatch, capsys):
    """`python -m mlplab.tools.docs_figures` end to end, with train.py replaced by made-up runs: what it starts,
    PROVENANCE.md, the PNGs' metadata and what it prints."""
    started = []

    def fake_train_py(command, env, **kwargs):
        started.append((command, env))
        run_dir = Path(next(argument for argument in command if argument.startswith("hydra.run.dir=")).split("=", 1)[1])
        write_reference_run(run_dir) if "+experiment=seed_pytorch" in command else write_gradient_run(run_dir)
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(figure_runs.subprocess, "run", fake_train_py)
    # One small figure for the three without training, which the test above draws in full.
    monkeypatch.setattr(figures, "pure_figures",
                        lambda: {"activations.png": chapter.activations_figure({"relu": nn.ReLU()})})
    monkeypatch.setattr(figures, "git_state", lambda: {"commit": "abc123", "dirty": False})
    out = tmp_path / "out"
    assert figures.main(["--out", str(out), "--epochs", "2"]) == 0

    assert len(started) == 4  # reference, deep_sigmoid with Adam and with SGD, deep_relu
    for command, env in started:
        assert env["OMP_NUM_THREADS"] == "1" and "trainer.max_epochs=2" in command and "logger=csv" in command
    assert sum("optimizer=sgd" in command for command, _ in started) == 1
    made_by = "python -m mlplab.tools.docs_figures --out " + str(out) + " --epochs 2 at commit abc123 (clean)"
    provenance = (out / "PROVENANCE.md").read_text()
    assert made_by.replace(" at", "` at") in provenance
    reference = "`OMP_NUM_THREADS=1 train.py +experiment=seed_pytorch` at commit c0ffee (clean)"
    assert f"| `weights_reference.png` | {reference} |" in provenance
    assert "- deep_sigmoid, SGD: linear0 / linear2 RMS 0.01 in steps 1-10" in provenance
    # The paragraph under the numbers is written from these runs' numbers (every interval rises here).
    assert "With SGD the sigmoid's profile lasts through every interval of its 2 epochs, and the net reaches " \
           "50.00% test accuracy" in " ".join(provenance.split())
    names = ["activations.png", "weights_reference.png", "gradient_norms.png"]
    for name in names:
        assert f"`{name}`" in provenance
        with Image.open(out / name) as image:
            assert image.text["Source"] == made_by, name
    printed = capsys.readouterr().out
    assert made_by in printed and all(str(out / name) in printed for name in names)


def test_a_failed_training_run_leaves_the_figures_alone(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(figure_runs.subprocess, "run",
                        lambda command, **kwargs: subprocess.CompletedProcess(command, 1, "", "CUDA out of memory"))
    assert figures.main(["--out", str(tmp_path / "out")]) == 1
    assert "training reference failed (exit 1)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # no figure half-updated
