"""The MLP: hidden blocks of Linear -> norm -> activation -> dropout, then Linear to the logits.

The activation and norm arrive as factories (Hydra partials from conf/activation and conf/norm):
`activation()` builds one activation module, `norm(width)` one norm layer, once per block, so each
block owns its learnable parameters (PReLU's slope, Swish's beta, the norm's affine terms).

An MLP is a pack of members, one per seed (`mlplab.core.pack`): each member's layers are built
with torch's global generator seeded by the member's seed, exactly as one network alone would be,
then stacked along a leading member axis. One seed is a pack of one. Inputs are [batch, features]
(shared by all members: validation and test) or [members, batch, features] (each member's own
training batch); outputs are always [members, batch, classes].
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from mlplab.core.pack import MemberGenerators, PackedDropout, PackedLinear, pack_layers

DROPOUT_STREAM = 5_381  # which of a member's random streams its dropout masks come from
ActivationFactory = Callable[[], nn.Module]
NormFactory = Callable[[int], nn.Module]


def _zero_bias(layer: nn.Linear) -> None:
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


def _kaiming(layer: nn.Linear) -> None:
    nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
    _zero_bias(layer)


def _xavier(layer: nn.Linear) -> None:
    # Keras's glorot_uniform kernels with zero biases.
    nn.init.xavier_uniform_(layer.weight)
    _zero_bias(layer)


def _lecun_normal(layer: nn.Linear) -> None:
    # N(0, 1/fan_in): the init SELU's self-normalization assumes.
    nn.init.normal_(layer.weight, std=1.0 / math.sqrt(layer.in_features))
    _zero_bias(layer)


INITS: dict[str, Callable[[nn.Linear], None] | None] = {
    "default": None,  # torch's own: kaiming_uniform(a=sqrt(5)) weights, uniform biases
    "kaiming": _kaiming,
    "xavier": _xavier,
    "lecun_normal": _lecun_normal,
}


class MLP(nn.Module):
    """A pack of multilayer perceptrons that map flattened images to class logits (softmax lives in the loss)."""

    def __init__(
        self,
        input_size: int,
        hidden_sizes: Sequence[int],
        num_classes: int,
        activation: ActivationFactory,
        norm: NormFactory,
        dropout: float = 0.0,
        init: str = "default",
        seeds: Sequence[int] = (0,),
    ) -> None:
        super().__init__()
        self.seeds = [int(seed) for seed in seeds]
        widths = [input_size, *hidden_sizes]
        members = [self._member_layers(seed, widths, num_classes, activation, norm, dropout, init)
                   for seed in self.seeds]
        self.generators = MemberGenerators(self.seeds, DROPOUT_STREAM)
        layers = [PackedDropout(column[0].p, self.generators) if isinstance(column[0], nn.Dropout)
                  else pack_layers(column) for column in zip(*members)]
        # Positions in `layers` of each hidden block's activation: only the model knows its layout.
        stride = 4 if dropout > 0 else 3
        self._activation_positions = [stride * block + 2 for block in range(len(hidden_sizes))]
        self.layers = nn.Sequential(*layers)
        self._register_load_state_dict_pre_hook(self._add_member_axis)

    @staticmethod
    def _member_layers(seed: int, widths: Sequence[int], num_classes: int, activation: ActivationFactory,
                       norm: NormFactory, dropout: float, init: str) -> list[nn.Module]:
        """One member's layers, drawn from torch's global generator seeded with its seed."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            layers: list[nn.Module] = []
            for width, hidden in zip(widths, widths[1:]):
                layers += [nn.Linear(width, hidden), norm(hidden), activation()]
                if dropout > 0:
                    layers.append(nn.Dropout(dropout))
            layers.append(nn.Linear(widths[-1], num_classes))
            if INITS[init] is not None:
                for layer in layers:
                    if isinstance(layer, nn.Linear):
                        INITS[init](layer)
        return layers

    @property
    def members(self) -> int:
        return len(self.seeds)

    @staticmethod
    def parameter_count(input_size: int, hidden_sizes: Sequence[int], num_classes: int) -> int:
        """Weights and biases of one member's Linear layers: what the memory check weighs before building."""
        widths = [input_size, *hidden_sizes, num_classes]
        return sum((fan_in + 1) * fan_out for fan_in, fan_out in zip(widths, widths[1:]))

    def linear_layers(self) -> list[PackedLinear]:
        """Every Linear layer from the input side: one per hidden block, then the output layer."""
        return [m for m in self.layers if isinstance(m, PackedLinear)]

    def hidden_activations(self) -> list[nn.Module]:
        """The activation module of each hidden block, from the input side (outputs [members, batch, units])."""
        return [self.layers[position] for position in self._activation_positions]

    def _add_member_axis(self, state_dict: dict, prefix: str, *args: object) -> None:
        """A checkpoint saved before the member axis holds one network: its tensors gain an axis of one."""
        if self.members != 1:
            return
        for name, tensor in self.state_dict().items():
            value = state_dict.get(prefix + name)
            if isinstance(value, torch.Tensor) and value.shape == tensor.shape[1:]:
                state_dict[prefix + name] = value.unsqueeze(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:  # one batch for every member: a real copy each, so each member's matmul is its own
            x = x.unsqueeze(0).repeat(self.members, 1, 1)
        return self.layers(x)
