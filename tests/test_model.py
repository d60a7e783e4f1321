"""The MLP and every activation and norm option, built from their real yaml files."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from helpers import CONF, options
from mlplab.core.model import INITS, MLP

ACTIVATIONS = options("activation")
NORMS = options("norm")
LINEAR_PARAMS = (784 * 100 + 100) + (100 * 10 + 10)
ACTIVATION_PARAMS = {"prelu": 1, "swish": 1}  # one learnable slope / beta per hidden layer
NORM_PARAMS = {"none": 0, "batch": 200, "layer": 200, "rms": 100}  # affine weight (+ bias) per unit


def build(activation: str = "relu", norm: str = "none", **kwargs) -> MLP:
    act = instantiate(OmegaConf.load(CONF / "activation" / f"{activation}.yaml"))
    nrm = instantiate(OmegaConf.load(CONF / "norm" / f"{norm}.yaml"))
    return MLP(784, kwargs.pop("hidden_sizes", [100]), 10, act, nrm, **kwargs)


def test_every_activation_in_the_task_list_has_a_yaml():
    expected = {"relu", "leaky_relu", "prelu", "elu", "selu", "silu", "gelu", "swish", "sigmoid", "tanh"}
    assert expected <= set(ACTIVATIONS)
    assert {"none", "batch", "layer", "rms"} <= set(NORMS)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_builds_trains_and_counts_parameters(activation):
    net = build(activation)
    x = torch.randn(8, 784)
    logits = net(x)
    assert logits.shape == (8, 10)
    torch.nn.functional.cross_entropy(logits, torch.arange(8) % 10).backward()
    assert all(p.grad is not None for p in net.parameters())
    assert sum(p.numel() for p in net.parameters()) == LINEAR_PARAMS + ACTIVATION_PARAMS.get(activation, 0)


@pytest.mark.parametrize("norm", NORMS)
def test_norm_builds_trains_and_counts_parameters(norm):
    net = build("relu", norm)
    logits = net(torch.randn(8, 784))
    logits.sum().backward()
    assert sum(p.numel() for p in net.parameters()) == LINEAR_PARAMS + NORM_PARAMS[norm]


def test_learnable_activation_parameters_are_per_layer():
    net = build("swish", hidden_sizes=[50, 40, 30])
    betas = [m.beta for m in net.modules() if hasattr(m, "beta")]
    assert len(betas) == 3 and len({id(b) for b in betas}) == 3


def test_swish_differs_from_silu_once_beta_moves():
    swish = instantiate(OmegaConf.load(CONF / "activation" / "swish.yaml"))()
    x = torch.linspace(-4, 4, 9)
    assert torch.allclose(swish(x), torch.nn.functional.silu(x))
    with torch.no_grad():
        swish.beta.fill_(2.0)
    assert torch.allclose(swish(x), x * torch.sigmoid(2 * x))
    assert not torch.allclose(swish(x), torch.nn.functional.silu(x))


def test_block_order_is_linear_norm_activation_dropout():
    net = build("gelu", "layer", hidden_sizes=[64, 32], dropout=0.2)
    kinds = [type(m).__name__ for m in net.layers]
    assert kinds == ["Linear", "LayerNorm", "GELU", "Dropout"] * 2 + ["Linear"]


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_the_model_names_its_hidden_activations(dropout):
    net = build("gelu", "layer", hidden_sizes=[64, 32, 16], dropout=dropout)
    activations = net.hidden_activations()
    assert len(activations) == 3 and all(isinstance(module, torch.nn.GELU) for module in activations)
    assert len({id(module) for module in activations}) == 3  # one module per block


@pytest.mark.parametrize("init", [name for name in INITS if name != "default"])
def test_inits_zero_biases_and_scale_weights(init):
    torch.manual_seed(0)
    net = build(init=init, hidden_sizes=[400])
    first = net.linear_layers()[0]
    assert torch.count_nonzero(first.bias) == 0
    expected_std = {"kaiming": (2 / 784) ** 0.5, "xavier": (2 / (784 + 400)) ** 0.5, "lecun_normal": (1 / 784) ** 0.5}
    assert first.weight.std().item() == pytest.approx(expected_std[init], rel=0.05)


