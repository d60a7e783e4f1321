"""Batched data augmentation on the batch's own device: random affine maps and elastic distortions.

One sampling grid per image combines a random affine map (rotation, shear, scale, translation) with
an optional elastic displacement field (Simard et al. 2003: uniform random displacements smoothed by
a Gaussian of width `elastic_sigma`, scaled by `elastic_alpha` pixels); one `grid_sample` call then
resamples the whole batch. Randomness comes only from the generator passed in, so a seeded
generator draws the same augmentations on a rerun. Images arrive flattened and square; the side
is read off the batch, so nothing here knows the data set. The ranges are checked with every other
user value in `mlplab.run.config_checks`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F


def _uniform(count: int, low: float, high: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(count, generator=generator, device=device) * (high - low) + low


def _gaussian_kernel(sigma: float, device: torch.device) -> torch.Tensor:
    radius = max(1, int(math.ceil(3 * sigma)))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32, device=device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return kernel / kernel.sum()


class BatchAugment:
    """Random affine + elastic distortion of flattened square images.

    Works on any intensity scale whose background is 0 (pixels 0..255 or [0, 1]): resampling is
    linear and pads with zeros.
    """

    def __init__(
        self,
        rotation: float = 0.0,
        shear: float = 0.0,
        scale: Sequence[float] = (1.0, 1.0),
        translate: float = 0.0,
        elastic_alpha: float = 0.0,
        elastic_sigma: float = 4.0,
    ) -> None:
        low, high = scale
        self.rotation, self.shear, self.scale, self.translate = rotation, shear, (low, high), translate
        self.elastic_alpha, self.elastic_sigma = elastic_alpha, elastic_sigma

    @property
    def is_identity(self) -> bool:
        return (
            self.rotation == 0 and self.shear == 0 and self.scale == (1.0, 1.0)
            and self.translate == 0 and self.elastic_alpha == 0
        )

    def affine_matrices(self, count: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        """Random [count, 2, 3] affine maps drawn from the configured ranges."""
        return affine_matrices(
            _uniform(count, -self.rotation, self.rotation, generator, device),
            _uniform(count, -self.shear, self.shear, generator, device),
            _uniform(count, *self.scale, generator, device),
            _uniform(2 * count, -self.translate, self.translate, generator, device).view(count, 2),
        )

    def displacement(self, count: int, side: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        """[count, side, side, 2] elastic offsets in grid units: smoothed uniform noise times alpha pixels."""
        noise = torch.rand(count * 2, 1, side, side, generator=generator, device=device) * 2 - 1
        kernel = _gaussian_kernel(self.elastic_sigma, device)
        pad = len(kernel) // 2
        noise = F.conv2d(F.pad(noise, (pad, pad, 0, 0), mode="reflect" if pad < side else "replicate"),
                         kernel.view(1, 1, 1, -1))
        noise = F.conv2d(F.pad(noise, (0, 0, pad, pad), mode="reflect" if pad < side else "replicate"),
                         kernel.view(1, 1, -1, 1))
        # As in Simard et al.: no renormalization after smoothing, so alpha=34, sigma=4 mean what they did there.
        field = noise * self.elastic_alpha * (2.0 / side)
        return field.view(count, 2, side, side).permute(0, 2, 3, 1)

    def __call__(self, images: torch.Tensor, generator: torch.Generator, batch_size: int | None = None) -> torch.Tensor:
        """Augment flattened float images [N, 784]; returns the same shape and dtype.

        With `batch_size`, the images are consecutive batches of that size (gathered at once) and each batch
        draws its random maps in turn, exactly as it would alone; one resampling then warps them all.
        """
        if self.is_identity:
            return images
        return warp(images, *self.draws(images, generator, batch_size))

    def members(self, images: torch.Tensor, generators: Sequence[torch.Generator],
                batch_size: int | None = None) -> torch.Tensor:
        """Augment each member's images [members, N, pixels] with its own generator, in one resampling."""
        if self.is_identity:
            return images
        draws = [self.draws(member_images, generator, batch_size) for member_images, generator in zip(images, generators)]
        field = torch.cat([field for _, field in draws]) if self.elastic_alpha > 0 else None
        return warp(images.flatten(0, 1), torch.cat([matrices for matrices, _ in draws]), field).view(images.shape)

    def draws(self, images: torch.Tensor, generator: torch.Generator,
              batch_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The affine maps and displacement fields of `images` [N, pixels], batch by batch."""
        device, side = images.device, image_side(images)
        matrices, fields = [], []
        for count in [len(part) for part in images.split(batch_size or len(images))]:
            fields.append(self.displacement(count, side, generator, device) if self.elastic_alpha > 0 else None)
            matrices.append(self.affine_matrices(count, generator, device))
        return torch.cat(matrices), torch.cat(fields) if self.elastic_alpha > 0 else None


def affine_matrices(
    rotation: torch.Tensor, shear: torch.Tensor, scale: torch.Tensor, translate: torch.Tensor
) -> torch.Tensor:
    """[N, 2, 3] sampling maps for grid_sample from per-image parameters.

    rotation and shear in degrees (positive rotation turns the digit counterclockwise), scale > 1
    enlarges the digit, translate [N, 2] in fractions of the image side.
    """
    angle, shear = torch.deg2rad(rotation), torch.deg2rad(shear)
    cos, sin, tan = torch.cos(angle), torch.sin(angle), torch.tan(shear)
    # grid_sample asks, for each output pixel, where to read in the input, so these are inverse
    # maps; with y pointing down this is torchvision's rotate/affine convention.
    rows = [torch.stack([cos, cos * tan - sin], -1), torch.stack([sin, sin * tan + cos], -1)]
    matrix = torch.stack(rows, dim=1) / scale.view(-1, 1, 1)
    return torch.cat([matrix, (-2 * translate).unsqueeze(-1)], dim=2)


def image_side(images: torch.Tensor) -> int:
    """The side of the square images in a flattened batch [N, side * side]."""
    side = math.isqrt(images.shape[1])
    if side * side != images.shape[1]:
        raise ValueError(f"augmentation needs square images; a batch of {images.shape[1]} pixels each is not")
    return side


def warp(images: torch.Tensor, matrices: torch.Tensor, displacement: torch.Tensor | None = None) -> torch.Tensor:
    """Resample flattened square images through affine maps plus an optional displacement field."""
    count, side = len(images), image_side(images)
    grid = F.affine_grid(matrices, [count, 1, side, side], align_corners=False)
    if displacement is not None:
        grid = grid + displacement
    warped = F.grid_sample(images.view(count, 1, side, side), grid, mode="bilinear", padding_mode="zeros",
                           align_corners=False)
    return warped.view(count, -1)
