"""Tiles of an image and their blend: where each tile lies, and weights that sum to one.

A tiled run (``tile=SIZE``, ``dip_lightning/regions.py``) restores each tile as its own DIP fit and
assembles the image as x(p) = Σ_t a_t(p) · x_t(p) with Σ_t a_t(p) = 1 at every pixel p. The raw
weight of a tile is separable, w_t(i, j) = r(i) · r(j): 1 inside, a raised-cosine ramp
c(u) = (1 − cos πu) / 2 across each overlap with a neighbour, and 0 in the ``margin`` next to an
inner tile border (pixels whose operator reaches beyond the tile, e.g. a blur kernel's half-width).
Where two tiles overlap over L pixels their ramps are mirror images, c(u) + c(1 − u) = 1, so the
sum is already one; the weights are still divided by their sum, which makes them exact for any
layout (the last tile of a row is shifted to end at the image's border and overlaps more).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

Box = tuple[int, int, int, int]  # (top, left, height, width) in image pixels


def spans(n: int, tile: int, overlap: int, align: int = 1) -> list[tuple[int, int]]:
    """(start, length) of the tiles along one side of ``n`` pixels: starts on multiples of
    ``align`` every ``tile − overlap`` pixels (rounded down to ``align``), the last one moved to end
    at ``n``; one span of ``n`` when the tile covers the side."""
    if tile >= n:
        return [(0, n)]
    stride = max(align, (tile - overlap) // align * align)
    starts = list(range(0, n - tile, stride))
    starts.append(n - tile)
    return [(s, tile) for s in starts]


def plan(height: int, width: int, tile: int, overlap: int, align: int = 1) -> list[Box]:
    """The tiles of a ``height``×``width`` image, row by row (see ``spans``)."""
    return [(t, left, h, w) for t, h in spans(height, tile, overlap, align) for left, w in spans(width, tile, overlap, align)]


def _ramp(n: int) -> torch.Tensor:
    """c(u) at the centres of ``n`` pixels rising from 0 to 1."""
    u = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    return 0.5 - 0.5 * torch.cos(math.pi * u)


def window_1d(start: int, length: int, others: list[tuple[int, int]], margin: int) -> torch.Tensor:
    """r over [start, start + length): ramps across the overlaps with the nearest of the ``others``
    (start, length) on each side (the one overlapping most)."""
    r = torch.ones(length, dtype=torch.float64)
    end = start + length
    zeros, ones = torch.zeros(margin, dtype=torch.float64), torch.ones(margin, dtype=torch.float64)
    before = max((s + n for s, n in others if s < start < s + n), default=None)
    after = min((s for s, n in others if start < s < end), default=None)
    if before is not None:  # ramp up over [start, before)
        r[:before - start] *= torch.cat([zeros, _ramp(before - start - 2 * margin), ones])
    if after is not None:  # ramp down over [after, end)
        r[after - start:] *= torch.cat([ones, _ramp(end - after - 2 * margin).flip(0), zeros])
    return r


def weights(boxes: list[Box], height: int, width: int, margin: int = 0,
            scale: list[float] | None = None) -> list[torch.Tensor]:
    """Each tile's blending weights a_t (h_t, w_t), float64, summing to one over the image.
    ``scale``: a factor per tile (a tile with no data gets a small one, so its neighbours win
    wherever they reach)."""
    rows = sorted({(b[0], b[2]) for b in boxes})
    cols = sorted({(b[1], b[3]) for b in boxes})
    raw = []
    for k, (t, left, h, w) in enumerate(boxes):
        wy = window_1d(t, h, [r for r in rows if r != (t, h)], margin)
        wx = window_1d(left, w, [c for c in cols if c != (left, w)], margin)
        raw.append(wy[:, None] * wx[None, :] * (1.0 if scale is None else scale[k]))
    total = torch.zeros(height, width, dtype=torch.float64)
    for (t, left, h, w), r in zip(boxes, raw):
        total[t:t + h, left:left + w] += r
    if bool((total <= 0).any()):
        raise ValueError("the tiles leave pixels without weight; give a larger tile_overlap (more than twice the "
                         "task's margin)")
    return [r / total[t:t + h, left:left + w] for (t, left, h, w), r in zip(boxes, raw)]


def blend(images: list[torch.Tensor], boxes: list[Box], alphas: list[torch.Tensor], height: int,
          width: int) -> torch.Tensor:
    """Σ_t a_t · x_t: tiles (1, C, h_t, w_t) assembled into (1, C, height, width)."""
    out = torch.zeros(1, images[0].shape[1], height, width, dtype=torch.float64)
    for img, (t, left, h, w), a in zip(images, boxes, alphas):
        out[..., t:t + h, left:left + w] += img.double() * a
    return out.to(images[0].dtype)


def border_band(boxes: list[Box], height: int, width: int, band: int = 8) -> torch.Tensor:
    """(height, width) bool: pixels within ``band`` of a tile border inside the image (where seams
    would show)."""
    mask = torch.zeros(height, width, dtype=torch.bool)
    for t, left, h, w in boxes:
        for edge in (t, t + h):
            if 0 < edge < height:
                mask[max(0, edge - band):edge + band, left:left + w] = True
        for edge in (left, left + w):
            if 0 < edge < width:
                mask[t:t + h, max(0, edge - band):edge + band] = True
    return mask


@dataclass
class Whole:
    """The whole image a tiled run restores: its task (the operator, a ``tasks.Task``), observation
    ``y`` and ground truth (or None), where the image came from, and its size in image pixels."""

    task: torch.nn.Module
    y: torch.Tensor
    x_true: torch.Tensor | None
    source: str
    height: int
    width: int
    holdout: torch.Tensor | None = None  # (1, 1, h, w) of y: 1 on the pixels held out of every tile's data term


@dataclass
class Tiling:
    """Where the tiles lie (image pixels), their blending weights, and which have no data."""

    boxes: list[Box]
    alphas: list[torch.Tensor]
    empty: list[bool]
    size: int
    overlap: int
