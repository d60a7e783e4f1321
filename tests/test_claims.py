"""The textbook chapter's claims, computed with the project's own activations, norms, MLP and module.

Each activation and norm is built from its real file in conf/ (the factory the model receives), so
a changed yaml (another eps, another class) shows up here. Nothing is restated as a constant: the
numbers the chapter quotes are computed and compared at the precision the chapter gives them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from helpers import CONF, coloured_fraction, read_png
from mlplab import figures, plots
from mlplab.plots import chapter
from mlplab.model import MLP
from mlplab.train import build_module


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
    assert isinstance(relu, nn.ReLU)
    hidden = outputs[0]
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
    assert probabilities.shape == (500, 10)
    assert (probabilities >= 0).all() and (probabilities <= 1).all()
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(500), atol=1e-6)


def test_softmax_widens_the_ratio_of_scores_one_and_two():
    scores = torch.tensor([[1.0, 2.0]])
    probabilities = probabilities_of(logits_net(2), scores)[0]
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
    minus_log_p = -probabilities[torch.arange(32), labels].log()
    assert loss.item() == pytest.approx(minus_log_p.mean().item(), rel=1e-5)
    # With a one-hot target the sum over classes of -y log p keeps only the target's term.
    one_hot = F.one_hot(labels, 10).float()
    per_sample = F.cross_entropy(module(images), one_hot, reduction="none")
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
    data_loss = F.cross_entropy(module(batch[0]), batch[1])
    data_gradients = dict(zip(parameters, torch.autograd.grad(data_loss, list(parameters.values()))))

    optimizer.zero_grad()
    loss, penalty, _ = module.training_losses(batch)  # what training_step backpropagates
    (loss + penalty).backward()
    optimizer.step()

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


def test_pure_figures_are_written_and_show_their_curves(tmp_path):
    written = figures.draw_pure_figures(tmp_path)
    assert sorted(path.name for path in written) == ["activations.png", "norm_axes.png", "sigmoid_squashing.png"]
    for path in written:
        pixels = read_png(path)
        height, width, _ = pixels.shape
        assert width >= 800 and height >= 300, (path.name, pixels.shape)
        # Coloured curves or heat maps: a figure whose content was removed keeps only black text and axes.
        assert coloured_fraction(pixels) > 0.01, path.name


def test_a_figure_without_its_curves_fails_the_content_check(tmp_path):
    figure = chapter.activations_figure({"relu": nn.ReLU(), "tanh": nn.Tanh()})
    for axis in figure.axes:
        for line in list(axis.get_lines()):
            line.remove()
    assert coloured_fraction(read_png(plots.save(figure, tmp_path / "empty.png"))) < 0.002


def test_gradient_norms_are_read_from_the_sparse_epoch_rows_of_metrics_csv(tmp_path):
    # Lightning's CSVLogger layout: interval rows and per-epoch rows share one header, other cells empty.
    run = tmp_path / "run"
    (run / "csv").mkdir(parents=True)
    (run / "csv" / "metrics.csv").write_text(
        "epoch,grad_norm/linear0,grad_norm/linear1,step,train/loss,val/acc\n"
        ",,,49,2.3,\n"
        "0,0.002,0.2,99,,\n"
        "0,,,99,,0.9\n"
        ",,,149,1.1,\n"
        "1,0.001,0.25,199,,\n"
    )
    epochs, norms = figures.gradient_norms(run)
    assert epochs == [1, 2]
    assert norms == {0: [0.002, 0.001], 1: [0.2, 0.25]}
    assert figures.first_to_last_ratio(norms, 0) == pytest.approx(0.01)
    assert figures.first_to_last_ratio(norms) == pytest.approx(0.004)
    path = plots.save(chapter.gradient_norms_figure({"a": (epochs, norms), "b": (epochs, norms)}), tmp_path / "g.png")
    assert coloured_fraction(read_png(path)) > 0.002
