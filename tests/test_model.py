"""The MLP and every activation and norm option, built from their real yaml files."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from helpers import CONF, options
from mlplab.core.model import INITS, MLP
from mlplab.core.pack import MemberWise, PackedDropout, PackedLayerNorm, PackedLinear, Pointwise

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


def per_member_count(net: MLP) -> int:
    """Parameters of one member: every parameter has the member axis first."""
    assert all(p.shape[0] == net.members for p in net.parameters())
    return sum(p[0].numel() for p in net.parameters())


@pytest.mark.parametrize("seeds", [[0], [0, 1, 2]])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_builds_trains_and_counts_parameters(activation, seeds):
    net = build(activation, seeds=seeds)
    x = torch.randn(8, 784)
    logits = net(x)
    assert logits.shape == (len(seeds), 8, 10)  # [members, batch, classes]
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), (torch.arange(8) % 10).repeat(len(seeds))).backward()
    assert all(p.grad is not None for p in net.parameters())
    expected = LINEAR_PARAMS + ACTIVATION_PARAMS.get(activation, 0)
    assert per_member_count(net) == expected
    assert sum(p.numel() for p in net.parameters()) == len(seeds) * expected


@pytest.mark.parametrize("seeds", [[0], [0, 1]])
@pytest.mark.parametrize("norm", NORMS)
def test_norm_builds_trains_and_counts_parameters(norm, seeds):
    net = build("relu", norm, seeds=seeds)
    logits = net(torch.randn(8, 784))
    assert logits.shape == (len(seeds), 8, 10)
    logits.sum().backward()
    assert per_member_count(net) == LINEAR_PARAMS + NORM_PARAMS[norm]
    assert sum(p.numel() for p in net.parameters()) == len(seeds) * (LINEAR_PARAMS + NORM_PARAMS[norm])


def test_learnable_activation_parameters_are_per_layer():
    net = build("swish", hidden_sizes=[50, 40, 30])
    betas = [m.beta for m in net.modules() if hasattr(m, "beta")]
    assert len(betas) == 3 and len({id(b) for b in betas}) == 3
    assert all(isinstance(m, MemberWise) for m in net.hidden_activations())
    assert all(b.shape[0] == net.members == 1 for b in betas)  # one beta per member and layer


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
    kinds = [type(m) for m in net.layers]
    assert kinds == [PackedLinear, PackedLayerNorm, Pointwise, PackedDropout] * 2 + [PackedLinear]
    assert all(isinstance(net.layers[i].layer, torch.nn.GELU) for i in (2, 6))  # what each Pointwise applies
    assert [net.layers[i].p for i in (3, 7)] == [0.2, 0.2]


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_the_model_names_its_hidden_activations(dropout):
    net = build("gelu", "layer", hidden_sizes=[64, 32, 16], dropout=dropout)
    activations = net.hidden_activations()
    assert len(activations) == 3 and all(isinstance(module, Pointwise) and isinstance(module.layer, torch.nn.GELU)
                                         for module in activations)
    assert len({id(module) for module in activations}) == 3  # one module per block


@pytest.mark.parametrize("init", [name for name in INITS if name != "default"])
def test_inits_zero_biases_and_scale_weights(init):
    torch.manual_seed(0)
    net = build(init=init, hidden_sizes=[400])
    first = net.linear_layers()[0]
    assert torch.count_nonzero(first.bias) == 0
    expected_std = {"kaiming": (2 / 784) ** 0.5, "xavier": (2 / (784 + 400)) ** 0.5, "lecun_normal": (1 / 784) ** 0.5}
    assert first.weight.std().item() == pytest.approx(expected_std[init], rel=0.05)


