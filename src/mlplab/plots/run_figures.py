"""A run's figures: the first layer's weights, the test confusion matrix, augmented digits."""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib
import torch
from matplotlib.figure import Figure
from torchvision.utils import make_grid

from mlplab.plots import new_figure

TILE_PADDING = 2  # pixels between weight tiles
# Padding and empty grid slots are drawn grey, so they cannot be mistaken for zero weights (white).
WEIGHT_COLORMAP = matplotlib.colormaps["RdBu_r"].with_extremes(bad="0.55")


def square_side(pixels: int) -> int:
    side = math.isqrt(pixels)
    if side * side != pixels:
        raise ValueError(f"{pixels} inputs per image cannot be shown as a square image")
    return side


def weight_grid_figure(weight: torch.Tensor, title: str | None = None) -> Figure:
    """Each row of `weight` [units, pixels] as a square tile, row-major, ceil(sqrt(units)) columns.

    Each tile is divided by its own max |w|, so every unit uses the full diverging colour range
    (red positive, blue negative, white zero) whatever its scale.
    """
    if weight.dim() != 2:
        raise ValueError(f"weight must be [units, pixels], got shape {list(weight.shape)}")
    units, pixels = weight.shape
    side = square_side(pixels)
    tiles = weight.detach().float().cpu()
    tiles = tiles / tiles.abs().amax(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
    columns = math.ceil(math.sqrt(units))
    rows = math.ceil(units / columns)
    # make_grid repeats a single channel to three; the first one is the grid.
    grid = make_grid(tiles.view(units, 1, side, side), nrow=columns, padding=TILE_PADDING, pad_value=math.nan)[0]

    height = min(14.0, max(3.0, 0.6 * rows + 0.6))
    width = min(16.0, max(4.0, height * (columns / rows) + 1.4))
    # Fixed margins rather than a layout engine: this is drawn during training, and constrained
    # layout doubles the time.
    figure = new_figure(width, height, layout=None)
    figure.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.9 if title and "\n" in title else 0.93)
    axes = figure.add_subplot()
    image = axes.imshow(grid.numpy(), cmap=WEIGHT_COLORMAP, vmin=-1.0, vmax=1.0, interpolation="nearest")
    axes.set_axis_off()
    axes.set_title(title or f"first-layer weights, {units} units")
    figure.colorbar(image, ax=axes, shrink=0.8, pad=0.02, label="w / max |w| of the unit")
    return figure


def confusion_matrix_figure(matrix: torch.Tensor) -> Figure:
    """Counts of a [classes, classes] confusion matrix (rows: true class, columns: predicted), annotated."""
    counts = matrix.detach().cpu().long()
    classes = len(counts)
    total = int(counts.sum())
    accuracy = counts.diagonal().sum().item() / max(total, 1)
    figure = new_figure(6.5, 5.5)
    axes = figure.add_subplot()
    image = axes.imshow(counts.numpy(), cmap="Blues")
    threshold = counts.max().item() / 2
    for true_class in range(classes):
        for predicted in range(classes):
            count = counts[true_class, predicted].item()
            axes.text(predicted, true_class, str(count), ha="center", va="center", fontsize=7,
                      color="white" if count > threshold else "black")
    axes.set_xticks(range(classes))
    axes.set_yticks(range(classes))
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(f"test confusion matrix: {total} images, accuracy {accuracy:.2%}")
    figure.colorbar(image, ax=axes, shrink=0.8)
    return figure


def augmentation_figure(originals: torch.Tensor, copies: Sequence[torch.Tensor]) -> Figure:
    """Each row one original image [pixels, in 0..1] followed by its augmented copies."""
    side = square_side(originals.shape[1])
    columns = [originals, *copies]
    figure = new_figure(1.2 * len(columns), 1.2 * len(originals))
    axes = figure.subplots(len(originals), len(columns), squeeze=False)
    for row in range(len(originals)):
        for column, batch in enumerate(columns):
            axis = axes[row, column]
            axis.imshow(batch[row].view(side, side).cpu(), cmap="gray", vmin=0, vmax=1)
            axis.set_xticks([]), axis.set_yticks([])
        axes[row, 0].set_ylabel(str(row))
    axes[0, 0].set_title("original", fontsize=8)
    for column in range(1, len(columns)):
        axes[0, column].set_title(f"augmented {column}", fontsize=8)
    return figure
