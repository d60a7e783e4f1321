"""A training step replayed as one CUDA graph: forward, loss, backward, the optimizer step and the
on-device metric sums are launched by one call instead of a few hundred small kernels.

For a model this small the GPU finishes each kernel long before Python launches the next one, so an
eager step leaves the GPU idle most of the time; a replayed graph does not. The step is captured
once, after a few eager warm-up steps (which create the optimizer state and let cuBLAS pick its
kernels), and captured again whenever something baked into it changes: the learning rates (a
scheduler's step), the batch's shape (a short last batch runs eagerly), or an eager step in between.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

import torch

Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class GraphedStep:
    """Runs `step(x, y) -> loss` eagerly `warmup` times, then from a captured CUDA graph.

    `step` must do all its work on the GPU without reading results on the host, set gradients to
    None before its backward pass, and keep every tensor it updates in place (parameters, optimizer
    state, metric buffers). Inputs are copied into static buffers before each replay; the returned
    loss is a copy, valid after later replays.
    """

    def __init__(self, step: Step, warmup: int = 3, generators: Sequence[torch.Generator] = ()) -> None:
        self.step, self.warmup, self.generators = step, warmup, list(generators)
        self.eager_steps = self.replays = self.captures = 0
        self._graph: torch.cuda.CUDAGraph | None = None
        self._key: Hashable = None
        self._inputs: tuple[torch.Tensor, torch.Tensor] | None = None
        self._loss: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor, y: torch.Tensor, key: Hashable = None) -> torch.Tensor:
        """One training step on (x, y); `key` names what the graph bakes in (e.g. the learning rates)."""
        if self.eager_steps < self.warmup or (self._graph is not None and self._inputs[0].shape != x.shape):
            return self._eager(x, y)
        if self._graph is None or key != self._key:
            self._capture(x, y, key)
        self._inputs[0].copy_(x)
        self._inputs[1].copy_(y)
        self._graph.replay()
        self.replays += 1
        return self._loss.clone()

    def _eager(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # New gradient tensors replace the ones the graph writes: it must be captured again.
        self._graph = None
        self.eager_steps += 1
        # On a side stream, as torch's capture recipe asks of warm-up work before a capture.
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            loss = self.step(x, y)
        torch.cuda.current_stream().wait_stream(stream)
        return loss

    def _capture(self, x: torch.Tensor, y: torch.Tensor, key: Hashable) -> None:
        self._graph = None  # free the old graph's memory first
        self._inputs = (x.clone(), y.clone())
        graph = torch.cuda.CUDAGraph()
        for generator in self.generators:  # each replay then draws the next numbers, as an eager step would
            graph.register_generator_state(generator)
        with torch.cuda.graph(graph):
            self._loss = self.step(*self._inputs)
        self._graph, self._key = graph, key
        self.captures += 1
