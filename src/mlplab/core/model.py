"""The MLP: hidden blocks of Linear -> norm -> activation -> dropout, then Linear to the logits.

The activation and norm arrive as factories (Hydra partials from conf/activation and conf/norm):
`activation()` builds one activation module, `norm(width)` one norm layer, once per block, so each
block owns its learnable parameters (PReLU's slope, Swish's beta, the norm's affine terms).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

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
    """A multilayer perceptron that maps flattened images to class logits (softmax lives in the loss)."""

    def __init__(
        self,
        input_size: int,
        hidden_sizes: Sequence[int],
        num_classes: int,
        activation: ActivationFactory,
        norm: NormFactory,
        dropout: float = 0.0,
        init: str = "default",
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        # Positions in `layers` of each hidden block's activation: only the model knows its layout.
        self._activation_positions: list[int] = []
        width = input_size
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, hidden), norm(hidden), activation()]
            self._activation_positions.append(len(layers) - 1)
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = hidden
        layers.append(nn.Linear(width, num_classes))
        self.layers = nn.Sequential(*layers)
        if INITS[init] is not None:
            for layer in self.linear_layers():
                INITS[init](layer)

    @staticmethod
    def parameter_count(input_size: int, hidden_sizes: Sequence[int], num_classes: int) -> int:
        """Weights and biases of the Linear layers: what the memory check weighs before building."""
        widths = [input_size, *hidden_sizes, num_classes]
        return sum((fan_in + 1) * fan_out for fan_in, fan_out in zip(widths, widths[1:]))

    def linear_layers(self) -> list[nn.Linear]:
        """Every Linear layer from the input side: one per hidden block, then the output layer."""
        return [m for m in self.layers if isinstance(m, nn.Linear)]

    def hidden_activations(self) -> list[nn.Module]:
        """The activation module of each hidden block, from the input side."""
        return [self.layers[position] for position in self._activation_positions]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
