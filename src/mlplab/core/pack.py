"""Layers with a leading member axis: the members of a pack computed as one batched model.

A pack trains the seeds of one configuration together. Every weight gains a leading member axis
([members, ...]) and every activation is [members, batch, units], so one batched matmul, one norm
and one optimizer update serve all members. Member m's slice of each tensor is exactly the layer
its seed would train alone: each member is built as an ordinary torch layer (`pack_layers` stacks
them), and every operation here computes a member's slice the same way for any number of members
(a batched matmul per member, reductions within the member's own rows), so a pack of one is the
single run and member m of a pack of five equals it bit for bit on the CPU.

`PACKERS` maps a torch layer type to its packed form. A parameter-free layer of the activation
group is pointwise and is applied member by member (`Pointwise`); any other layer (PReLU, Swish, a norm torch adds
later) falls back to `MemberWise`: each member's slice through the layer with its own parameters,
one call per member. (A learned scalar per member, as PReLU's slope or Swish's beta, would need a
gradient summed over a member's whole [batch, units] block; that sum is taken in another order
when the block is part of a larger tensor, so such layers stay member-wise to stay exact.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call


def _stacked(layers: Sequence[nn.Module], name: str) -> torch.Tensor:
    return torch.stack([getattr(layer, name).detach() for layer in layers])


class PackedLinear(nn.Module):
    """y[m] = x[m] @ weight[m].T + bias[m]; weight [members, out, in] (each slice an nn.Linear's)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.weight, self.bias = nn.Parameter(weight.clone()), nn.Parameter(bias.clone())
        self.out_features, self.in_features = weight.shape[1:]

    @classmethod
    def from_members(cls, layers: Sequence[nn.Linear]) -> PackedLinear:
        return cls(_stacked(layers, "weight"), _stacked(layers, "bias"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))

    def extra_repr(self) -> str:
        return f"members={len(self.weight)}, in_features={self.in_features}, out_features={self.out_features}"


class _Affine(nn.Module):
    """Per-member elementwise scale and shift of the last axis (a norm's affine terms), if it has them."""

    def _take_affine(self, layers: Sequence[nn.Module], weight: str = "weight", bias: str | None = "bias") -> None:
        first = layers[0]
        self.weight = nn.Parameter(_stacked(layers, weight)) if getattr(first, weight, None) is not None else None
        has_bias = bias is not None and getattr(first, bias, None) is not None
        self.bias = nn.Parameter(_stacked(layers, bias)) if has_bias else None

    def _affine(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight is not None:
            x = x * self.weight.unsqueeze(1)
        if self.bias is not None:
            x = x + self.bias.unsqueeze(1)
        return x


class PackedBatchNorm(_Affine):
    """BatchNorm1d per member: statistics over each member's own batch, running statistics per member."""

    def __init__(self, layers: Sequence[nn.BatchNorm1d]) -> None:
        super().__init__()
        first = layers[0]
        self.eps, self.momentum, self.track_running_stats = first.eps, first.momentum, first.track_running_stats
        self._take_affine(layers)
        if self.track_running_stats:
            self.register_buffer("running_mean", _stacked(layers, "running_mean"))
            self.register_buffer("running_var", _stacked(layers, "running_var"))
            self.register_buffer("num_batches_tracked", _stacked(layers, "num_batches_tracked"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or not self.track_running_stats:
            mean = x.mean(dim=1, keepdim=True)
            var = x.var(dim=1, unbiased=False, keepdim=True)
            if self.training and self.track_running_stats:
                self._track(mean, var, x.shape[1])
        else:
            mean, var = self.running_mean.unsqueeze(1), self.running_var.unsqueeze(1)
        return self._affine((x - mean) * torch.rsqrt(var + self.eps))

    @torch.no_grad()
    def _track(self, mean: torch.Tensor, var: torch.Tensor, count: int) -> None:
        self.num_batches_tracked += 1
        # momentum=None is torch's cumulative average
        momentum = self.momentum if self.momentum is not None else 1.0 / self.num_batches_tracked.unsqueeze(1)
        unbiased = var.squeeze(1) * (count / max(count - 1, 1))
        self.running_mean.mul_(1 - momentum).add_(mean.squeeze(1) * momentum)
        self.running_var.mul_(1 - momentum).add_(unbiased * momentum)


class PackedLayerNorm(_Affine):
    """LayerNorm (over each sample's units) with per-member affine terms."""

    def __init__(self, layers: Sequence[nn.LayerNorm]) -> None:
        super().__init__()
        self.normalized_shape, self.eps = tuple(layers[0].normalized_shape), layers[0].eps
        self._take_affine(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._affine(F.layer_norm(x, self.normalized_shape, eps=self.eps))


class PackedRMSNorm(_Affine):
    """RMSNorm (over each sample's units) with a per-member scale."""

    def __init__(self, layers: Sequence[nn.RMSNorm]) -> None:
        super().__init__()
        self.normalized_shape, self.eps = tuple(layers[0].normalized_shape), layers[0].eps
        self._take_affine(layers, bias=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._affine(F.rms_norm(x, self.normalized_shape, eps=self.eps))


class Pointwise(nn.Module):
    """A parameter-free activation (ReLU, GELU, tanh...), applied to each member's [batch, units] block
    as a tensor of its own.

    Pointwise kernels run a vector loop over whole blocks of a tensor and finish the rest element by
    element; for exp-based functions (ELU, SELU, SiLU, sigmoid) the two round differently, and a
    member's elements inside a larger tensor would fall elsewhere in that split than a single run's.
    """

    def __init__(self, layers: Sequence[nn.Module]) -> None:
        super().__init__()
        self.layer = layers[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(x) == 1:
            return self.layer(x[0]).unsqueeze(0)
        return torch.stack([self.layer(member) for member in x])


class MemberWise(nn.Module):
    """Any other layer: each member's slice through the layer with that member's parameters and
    buffers (held stacked, so they too have the member axis). Exact for every layer; one call per member."""

    def __init__(self, layers: Sequence[nn.Module]) -> None:
        super().__init__()
        self.template = [layers[0]]  # a list: its own tensors are not this module's state
        for name, _ in layers[0].named_parameters():
            self.register_parameter(name.replace(".", "__"), nn.Parameter(torch.stack(
                [layer.get_parameter(name).detach() for layer in layers])))
        for name, _ in layers[0].named_buffers():
            self.register_buffer(name.replace(".", "__"), torch.stack([layer.get_buffer(name) for layer in layers]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        template = self.template[0]
        template.train(self.training)
        state = dict(self.named_parameters(recurse=False)) | dict(self.named_buffers(recurse=False))
        return torch.stack([
            functional_call(template, {name.replace("__", "."): tensor[member] for name, tensor in state.items()},
                            (x[member],))
            for member in range(len(x))
        ])


def _has_state(layer: nn.Module) -> bool:
    return any(True for _ in layer.parameters()) or any(True for _ in layer.buffers())


PACKERS: dict[type[nn.Module], Callable[[Sequence[nn.Module]], nn.Module]] = {
    nn.Linear: PackedLinear.from_members,
    nn.BatchNorm1d: PackedBatchNorm,
    nn.LayerNorm: PackedLayerNorm,
    nn.RMSNorm: PackedRMSNorm,
}


def pack_layers(layers: Sequence[nn.Module]) -> nn.Module:
    """One packed layer from the members' own layers (same type and settings, each member's weights)."""
    kind = type(layers[0])
    if kind in PACKERS:
        return PACKERS[kind](layers)
    if not _has_state(layers[0]):
        return Pointwise(layers)
    return MemberWise(layers)


class MemberGenerators:
    """One random generator per member and device, seeded from the member's seed and a stream.

    A member draws its dropout masks from its own generator, so what it draws does not depend on
    which other members share its pack. States are saved per device type (CPU and CUDA generators
    hold different states).
    """

    def __init__(self, seeds: Sequence[int], stream: int) -> None:
        self.seeds, self.stream = list(seeds), stream
        self._generators: dict[str, list[torch.Generator]] = {}

    def on(self, device: torch.device) -> list[torch.Generator]:
        key = str(device)
        if key not in self._generators:
            self._generators[key] = [torch.Generator(device=device).manual_seed(seed * 1_000_003 + self.stream)
                                     for seed in self.seeds]
        return self._generators[key]

    def state(self) -> dict[str, list[torch.Tensor]]:
        return {key: [g.get_state() for g in generators] for key, generators in self._generators.items()}

    def load_state(self, states: dict[str, list[torch.Tensor]]) -> None:
        for key, member_states in states.items():
            device = torch.device(key)
            if device.type == "cuda" and not torch.cuda.is_available():
                continue
            for generator, state in zip(self.on(device), member_states):
                generator.set_state(state)


class PackedDropout(nn.Module):
    """Dropout whose masks each member draws from its own generator."""

    def __init__(self, p: float, generators: MemberGenerators) -> None:
        super().__init__()
        self.p, self.generators = p, generators

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = 1.0 - self.p
        masks = torch.stack([torch.empty(x.shape[1:], device=x.device).bernoulli_(keep, generator=generator)
                             for generator in self.generators.on(x.device)])
        return x * masks / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class MemberViews:
    """Each member's slice of each packed parameter, as the tensors an optimizer updates.

    An elementwise kernel (a fused Adam step) runs its vector loop over the first whole vectors of
    a tensor and finishes the rest element by element, and the two may round differently. Updating
    the stacked [members, ...] tensor would put a member's elements at other places in that split
    than a single run's; updating each member's slice as its own tensor puts them where the single
    run has them. The slices share the parameters' memory (the update lands in the pack); their
    gradients are the matching slices of the parameters' gradients (`load_grads`). One fused update
    still serves all members: they are just more tensors of one call.
    """

    def __init__(self, params: Sequence[nn.Parameter], members: int) -> None:
        self.members = members
        self._views = {id(p): [p.detach()[member] for member in range(members)] for p in params}
        self._params = list(params)

    def of(self, params: Sequence[nn.Parameter]) -> list[torch.Tensor]:
        """The views of `params`, parameter by parameter, each parameter's members in order."""
        return [view for p in params for view in self._views[id(p)]]

    def load_grads(self) -> None:
        for p in self._params:
            for member, view in enumerate(self._views[id(p)]):
                view.grad = None if p.grad is None else p.grad[member]
