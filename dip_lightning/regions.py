"""The regions a run restores and the groups it fits them in (``plan``), one group after another.

A whole image is one region, fitted as one group: its K packed fits (seeds or images, ``pack``),
built as a lone run builds them (``problem.build_fits``).

A tiled run (``tile=SIZE``) restores an image of any size with memory set by the tile. The
observation is made once for the whole image (``observe``: the same noise, mask or JPEG as a
whole-image run of that seed); the image is cut into overlapping tiles (``plan_tiles``; the
geometry in ``tiles.py``, corners on the task's ``tile_align``: the SR factor, JPEG's 8×8 blocks),
and each tile is its own fit of its part of the observation with its own net and input
(``tile_fit``; tile t of ``n`` has seed ``seed · n + t``), ``tile_batch`` of them to a group of
packed fits. ``tiled_outputs`` blends the restored tiles with weights that sum to one and scores
the assembled image. A tiled group keeps its files in ``tiles/groupNNN/`` (checkpoints, snapshots,
``result.pt`` once fitted), so a relaunch with ``skip_completed=true`` reads the fitted groups
back and resumes the one that was running.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, open_dict

from dip_lightning import resume, tiles
from dip_lightning.config import computed_config
from dip_lightning.instantiate import instantiate
from dip_lightning.io import crop, load_image
from dip_lightning.problem import (Fit, alpha_of, build_fits, holdout_mask, load_reference, make_observation,
                                   net_input, new_net, pad_problem)
from dip_lightning.results import RESULT
from dip_lightning.seeds import stream_seed
from dip_lightning.tiles import Box, Tiling, Whole

log = logging.getLogger(__name__)


@dataclass
class Plan:
    """A run's regions, grouped. ``tiling`` is None for a whole image (one group, in the run folder)."""

    cfg: DictConfig
    method: object | None
    make_input: object
    groups: int
    batch: int = 1
    image: torch.Tensor | None = None  # the API's image (a whole-image run)
    make_task: object | None = None
    whole: Whole | None = None  # a tiled run's observed image
    tiling: Tiling | None = None
    computed: dict | None = None  # a tiled run's config, recorded with each group
    whole_fits: list[Fit] | None = None  # a whole-image run's fits, once built (its files are theirs)

    @property
    def regions(self) -> int:
        return 1 if self.tiling is None else len(self.tiling.boxes)

    def fits(self, g: int) -> list[Fit]:
        """Group ``g``'s fits: the whole image's K, or tiles g·batch … of the tiling."""
        if self.tiling is None:
            self.whole_fits = build_fits(self.cfg, self.image, self.make_input, self.make_task, None, self.method)
            return self.whole_fits
        n, first = self.regions, g * self.batch
        return [tile_fit(self.cfg, self.whole, i, n, self.tiling.boxes[i], self.make_input, self.method)
                for i in range(first, min(n, first + self.batch))]

    def folder(self, out_dir: Path, g: int) -> Path:
        """Where group ``g`` keeps its files: the run folder, or ``tiles/groupNNN/``."""
        return out_dir if self.tiling is None else out_dir / "tiles" / f"group{g:03d}"

    def group_config(self, out_dir: Path, g: int) -> DictConfig:
        """The config group ``g`` is fitted with: the run's, resuming a tiled group from its own last
        checkpoint when relaunched with ``skip_completed=true``."""
        if self.tiling is None:
            return self.cfg
        gdir, again = self.folder(out_dir, g), bool(self.cfg.get("skip_completed"))
        ckpt = resume.prepare(gdir, self.computed, int(self.cfg.get("ckpt_every") or 0), resume=again)
        if ckpt is not None:
            log.info("resuming tile group %s from %s", gdir.name, ckpt.name)
        gcfg = copy.deepcopy(self.cfg)
        with open_dict(gcfg):
            gcfg.ckpt_path = None if ckpt is None else str(ckpt)
        return gcfg

    def done(self, out_dir: Path, g: int) -> dict | None:
        """A tiled group fitted before with this config (``skip_completed=true``), else None."""
        if self.tiling is None or not self.cfg.get("skip_completed"):
            return None
        path = self.folder(out_dir, g) / RESULT
        if not path.is_file():
            return None
        try:
            result = torch.load(path, map_location="cpu", weights_only=False)
        except Exception:  # cut short while written: fit the group again
            return None
        return result if (result.get("config") == self.computed and "fits" in result) else None

    def keep(self, out_dir: Path, g: int, group: dict) -> dict:
        """A tiled group's result, saved in its folder with the config (for a relaunch)."""
        if self.tiling is not None:
            group = {**group, "config": self.computed}
            torch.save(group, self.folder(out_dir, g) / RESULT)
        return group

    def progress(self, groups: list[dict]) -> dict:
        """metrics.json's keys for a run stopped before its outputs: a tiled run's groups done."""
        if self.tiling is None:
            return {}
        return {"iters_done": sum(g["timing"]["steps"] for g in groups), "tiles": self.regions,
                "tile_groups": self.groups, "tile_groups_done": len(groups)}


def plan(cfg: DictConfig, image: torch.Tensor | None = None, make_task=None) -> Plan:
    """The run's plan: the whole image, or (``tile=SIZE``) the observed image and its tiles."""
    method = instantiate(cfg.method) if cfg.get("method") else None
    make_input = instantiate(cfg.input)
    if not cfg.get("tile"):
        return Plan(cfg, method, make_input, groups=1, image=image, make_task=make_task)
    if cfg.get("ckpt_path"):
        raise ValueError("a tiled run resumes by being launched again into its folder with skip_completed=true "
                         "(each tile group keeps its own checkpoints); drop ckpt_path")
    whole = observe(cfg, image, make_task)
    tiling = plan_tiles(cfg, whole)
    n = len(tiling.boxes)
    k = max(1, min(int(cfg.get("tile_batch") or 1), n))
    log.info("%d tiles of %d px (overlap %d px), %d at a time", n, tiling.size, tiling.overlap, k)
    return Plan(cfg, method, make_input, groups=len(range(0, n, k)), batch=k, whole=whole, tiling=tiling,
                computed=computed_config(cfg))


def observe(cfg: DictConfig, image: torch.Tensor | None = None, make_task=None) -> Whole:
    """The task and the whole image's observation (and ``holdout``'s held-out pixels), made as a
    whole-image run of ``seed`` makes them."""
    task = instantiate(cfg.task) if make_task is None else make_task()
    if not task.local:
        raise ValueError(f"tile={cfg.tile}: {type(task).__name__} mixes the whole image (MRI, CT, compressed "
                         f"sensing), so it cannot be restored in tiles; use tile=null")
    if str(cfg.fit_size) != "pad":
        raise ValueError(f"tile={cfg.tile} restores every pixel; use fit_size=pad (not {cfg.fit_size})")
    img = load_image(cfg.image if image is None else image, cfg.get("resize"))
    if task.needs_alpha:
        task.alpha = alpha_of(cfg.image, image, img)
    generator = torch.Generator().manual_seed(stream_seed(int(cfg.seed), "observation"))
    reference = load_reference(cfg)
    y, x_true = make_observation(task, img[None], bool(cfg.observed) or task.blind, generator,
                                 None if reference is None else reference[None])
    held = None if not cfg.get("holdout") else holdout_mask(
        task, y, float(cfg.holdout), torch.Generator().manual_seed(stream_seed(int(cfg.seed), "holdout")))
    s = int(task.scale)
    return Whole(task, y, x_true, "array" if image is not None else str(cfg.image), y.shape[-2] * s, y.shape[-1] * s,
                 held)


def auto_overlap(size: int, align: int = 1, margin: int = 0) -> int | None:
    """The overlap ``tile_overlap=null`` gives ``size`` px tiles: min(32, size / 4 on the alignment),
    raised above twice the task's margin (on the alignment); None when that leaves the tiles no room
    to move on (an overlap must stay at most ``size − align``)."""
    overlap = min(32, max(align, size // 4 // align * align))
    if margin and overlap <= 2 * margin:
        overlap = (2 * margin // align + 1) * align
    return overlap if overlap <= size - align else None


def smallest_tile(align: int = 1, margin: int = 0) -> int:
    """The smallest tile side (>= 16 px, on the alignment) whose automatic overlap is at most half of it."""
    need = 2 * margin + 1 if margin else 1
    size = max(16, 2 * need)
    size += (-size) % align
    while auto_overlap(size, align, margin) is None:  # not reached for the built-in tasks; a guard
        size += align
    return size


def _fix(size: int, align: int, margin: int) -> str:
    """Overrides that make ``size`` px tiles work: an overlap, or a larger tile with its overlap."""
    overlap = auto_overlap(size, align, margin)
    if overlap is not None:
        return f"tile_overlap={overlap}"
    bigger = max(size + align, smallest_tile(align, margin))
    return f"tile={bigger} tile_overlap={auto_overlap(bigger, align, margin)}"


def plan_tiles(cfg: DictConfig, whole: Whole) -> Tiling:
    """The tiles of ``whole`` for ``tile`` / ``tile_overlap`` (checked: a clear line when they cannot
    work, with overrides that do). ``tile_overlap=null``: ``auto_overlap`` of the tile."""
    task = whole.task
    align, margin = int(task.tile_align), int(task.tile_margin)
    size = int(cfg.tile)
    size = max(align, size // align * align)
    name = type(task).__name__
    given = cfg.get("tile_overlap")
    if given is None:
        auto = auto_overlap(size, align, margin)
        overlap = max(0, size - align) if auto is None else auto
    else:
        overlap = int(given)
        if not 0 <= overlap < size:
            raise ValueError(f"tile_overlap={overlap} must be at least 0 and below the tile ({size} px); "
                             f"e.g. {_fix(size, align, margin)}")
    boxes = tiles.plan(whole.height, whole.width, size, overlap, align)
    if len(boxes) > 1 and margin and overlap <= 2 * margin:
        if given is None:
            raise ValueError(f"tile={cfg.tile}: neighbouring tiles must share more than twice {name}'s margin of "
                             f"{margin} px (pixels whose operator reaches beyond the tile), which leaves a {size} px "
                             f"tile no room to move on; e.g. tile={smallest_tile(align, margin)}")
        raise ValueError(f"tile_overlap={overlap} must exceed twice {name}'s margin of {margin} px "
                         f"(pixels whose operator reaches beyond the tile); e.g. {_fix(size, align, margin)}")
    empty = [task.tile(task.observation_box(b)).known_fraction == 0 if hasattr(task, "known_fraction") else False
             for b in boxes]
    if any(empty):
        log.warning("%d of %d tiles have no known pixel: their fits have nothing to fit, and the neighbouring "
                    "tiles paint them wherever they overlap", sum(empty), len(boxes))
    scale = [1e-3 if e else 1.0 for e in empty]
    return Tiling(boxes, tiles.weights(boxes, whole.height, whole.width, margin, scale), empty, size, overlap)


def tile_fit(cfg: DictConfig, whole: Whole, index: int, n: int, box: Box, make_input, method) -> Fit:
    """Tile ``index``'s fit: its operator, its part of the observation (padded to the net's
    multiple) and of the held-out pixels, a net from seed ``seed · n + index`` and its own input z."""
    seed = int(cfg.seed) * n + index
    obs_box = whole.task.observation_box(box)
    task = whole.task.tile(obs_box)
    net, channels, own_depth = new_net(cfg, task, int(whole.y.shape[1]), seed, make_input, method)
    x_true = None if whole.x_true is None else crop(whole.x_true, box)
    y = crop(whole.y, obs_box)
    prob = pad_problem(task, y, x_true, int(getattr(net, "multiple", 1)), getattr(net, "min_size", None),
                       inner_band_weight(y, obs_box, whole, -(-int(whole.task.tile_margin) // int(whole.task.scale))),
                       None if whole.holdout is None else crop(whole.holdout, obs_box))
    generator = torch.Generator().manual_seed(stream_seed(seed, "tile_input"))
    return Fit(seed, whole.source, task, net, prob, net_input(prob, task, own_depth, make_input, generator), channels)


def inner_band_weight(y: torch.Tensor, obs_box, whole: Whole, band: int) -> torch.Tensor | None:
    """The data term's weights of a tile's observation ``y`` at ``obs_box``: 0 on the ``band``
    observation pixels along each border the tile shares with a neighbour (there y was made from
    pixels beyond the tile, which the tile's A(x) cannot see: fitting them bends the tile's edge),
    1 elsewhere; None when nothing is left out."""
    top, left, h, w = (int(v) for v in obs_box)
    height, width = whole.y.shape[-2:]
    cut = (top > 0, top + h < height, left > 0, left + w < width)
    if band <= 0 or not any(cut) or not whole.task.image_observation:
        return None
    weight = torch.ones(1, 1, *y.shape[-2:], dtype=y.dtype)
    if cut[0]:
        weight[..., :band, :] = 0
    if cut[1]:
        weight[..., -band:, :] = 0
    if cut[2]:
        weight[..., :, :band] = 0
    if cut[3]:
        weight[..., :, -band:] = 0
    return weight
