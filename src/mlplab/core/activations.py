"""Activations that torch lacks. The rest are named directly in conf/activation/*.yaml."""

from __future__ import annotations

import torch
from torch import nn


class Swish(nn.Module):
    """x * sigmoid(beta * x) with a learnable beta (Ramachandran et al. 2017).

    SiLU is the special case beta = 1 held fixed; here beta is trained, one value per layer.
    """

    def __init__(self, beta: float = 1.0) -> None:
        super().__init__()
        self.beta = nn.Parameter(torch.tensor(float(beta)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.beta * x)

    def extra_repr(self) -> str:
        return f"beta={self.beta.item():.3g}"
