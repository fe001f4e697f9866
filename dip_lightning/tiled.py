"""A tiled run (``tile=SIZE``): an image of any size, with memory set by the tile, not the image.

The observation is made once for the whole image (the same noise, mask or JPEG as a whole-image
run of that seed). The image is cut into overlapping tiles (``dip_lightning/tiles.py``; corners on
the task's ``tile_align``: the SR factor, JPEG's 8×8 blocks), and each tile is its own DIP fit of
its part of the observation with its own net and input: ``tile_batch`` tiles at a time as packed
fits (``dip_lightning/packing.py``), one group after another through the same Lightning loop as
any run. The restored tiles are blended with weights that sum to one (``tiles.weights``), and the
metrics are those of the assembled image. Tile t of ``n`` has seed ``seed · n + t``.

Each group keeps its files in ``tiles/groupNNN/`` (its checkpoints with ``ckpt_every``, snapshots,
and ``result.pt`` once done). A tiled job cut short resumes when relaunched with
``skip_completed=true``: finished groups are read back, the group that was running continues from
its last checkpoint, and the result equals an uninterrupted run's.
"""
from __future__ import annotations

import copy
import gc
import logging
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, open_dict

from dip_lightning import resume
from dip_lightning.config import computed_config
from dip_lightning import tiles as tiling
from dip_lightning.tiles import Tiling
from dip_lightning import tiled_outputs
from dip_lightning.instantiate import instantiate
from dip_lightning.io import crop, load_image
from dip_lightning.loggers import build_logger, finish_logger, log_summary
from dip_lightning.problem import Fit, Whole, alpha_of, load_reference, make_observation, net_input, new_net, pad_problem
from dip_lightning.seeds import stream_seed
from dip_lightning import stages

log = logging.getLogger(__name__)

RESULT = "result.pt"


def observe(cfg: DictConfig, image: torch.Tensor | None = None, make_task=None) -> Whole:
    """The task and the whole image's observation, made as a whole-image run of ``seed`` makes it."""
    task = instantiate(cfg.task) if make_task is None else make_task()
    if not task.local:
        raise ValueError(f"tile={cfg.tile}: {type(task).__name__} mixes the whole image (MRI, CT, compressed "
                         f"sensing), so it cannot be restored in tiles; use tile=null")
    if cfg.get("holdout"):
        raise ValueError(f"holdout={cfg.holdout} scores a whole-image fit on its held-out pixels; tiles are not "
                         f"supported yet: use tile=null")
    if str(cfg.fit_size) != "pad":
        raise ValueError(f"tile={cfg.tile} restores every pixel; use fit_size=pad (not {cfg.fit_size})")
    img = load_image(cfg.image if image is None else image, cfg.get("resize"))
    if task.needs_alpha:
        task.alpha = alpha_of(cfg.image, image, img)
    generator = torch.Generator().manual_seed(stream_seed(int(cfg.seed), "observation"))
    reference = load_reference(cfg)
    y, x_true = make_observation(task, img[None], bool(cfg.observed) or task.blind, generator,
                                 None if reference is None else reference[None])
    s = int(task.scale)
    return Whole(task, y, x_true, "array" if image is not None else str(cfg.image), y.shape[-2] * s, y.shape[-1] * s)


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


def plan(cfg: DictConfig, whole: Whole) -> Tiling:
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
    boxes = tiling.plan(whole.height, whole.width, size, overlap, align)
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
    return Tiling(boxes, tiling.weights(boxes, whole.height, whole.width, margin, scale), empty, size, overlap)


def tile_fit(cfg: DictConfig, whole: Whole, index: int, n: int, box: tiling.Box, make_input, method) -> Fit:
    """Tile ``index``'s fit: its operator, its part of the observation (padded to the net's
    multiple), a net from seed ``seed · n + index`` and its own input z."""
    seed = int(cfg.seed) * n + index
    obs_box = whole.task.observation_box(box)
    task = whole.task.tile(obs_box)
    net, channels, own_depth = new_net(cfg, task, int(whole.y.shape[1]), seed, make_input, method)
    x_true = None if whole.x_true is None else crop(whole.x_true, box)
    y = crop(whole.y, obs_box)
    prob = pad_problem(task, y, x_true, int(getattr(net, "multiple", 1)), getattr(net, "min_size", None),
                       inner_band_weight(y, obs_box, whole, -(-int(whole.task.tile_margin) // int(whole.task.scale))))
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


def fit_group(cfg: DictConfig, fits: list[Fit], method, gdir: Path, computed: dict, again: bool, guard=None) -> dict:
    """Fit one group of tiles as packed fits in ``gdir`` (resumed from its last checkpoint when
    ``again``), and return what the whole image needs of each tile. A SIGTERM that ``guard``
    records ends the fit at a step boundary (``stages.fit``)."""
    gcfg = copy.deepcopy(cfg)
    ckpt = resume.prepare(gdir, computed, int(cfg.get("ckpt_every") or 0), resume=again)
    with open_dict(gcfg):
        gcfg.ckpt_path = None if ckpt is None else str(ckpt)
    if ckpt is not None:
        log.info("resuming tile group %s from %s", gdir.name, ckpt.name)
    built = stages.assemble(gcfg, fits, method, gdir, logger=False)
    if "pruning" in built.callbacks:  # a search's pruner sees the whole image's curve only at the end
        built.callbacks["curves"].listeners.remove(built.callbacks.pop("pruning"))
    status, reason = stages.fit(gcfg, built, guard)
    m, es = built.module.cpu(), built.callbacks.get("es")
    out = []
    for i in range(len(fits)):
        def sl(x, i=i):
            return None if x is None else m.fit_slice(x, i)

        es_step = es.result(i)["es_step"] if es is not None else None
        out.append({"final": sl(m.final_image()), "ema": sl(m.ema_image()),
                    "best": sl(m.best_image) if m.has_gt else None,
                    "es": sl(es.image.cpu()) if (es is not None and es_step is not None) else None, "es_step": es_step,
                    "history": m.history_dict(i), "backtracks": int(m.backtracks[i]), "steps": int(m.global_step),
                    "it_per_s": built.callbacks["throughput"].it_per_s,
                    "method": getattr(m.method, "name", None)})
    result = {"status": status, "reason": reason, "config": computed, "tiles": out}
    torch.save(result, gdir / RESULT)
    return result


def done_group(gdir: Path, computed: dict) -> dict | None:
    """A finished group's result, when it was made with this config."""
    path = gdir / RESULT
    if not path.is_file():
        return None
    try:
        result = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # cut short while written: fit the group again
        return None
    return result if result.get("config") == computed else None


def run_tiled(cfg: DictConfig, guard, image: torch.Tensor | None = None, make_task=None) -> dict:
    """Restore ``cfg.image`` tile by tile (see the module docstring); the whole image's files and
    metrics.json in the run folder, as a whole-image run writes them, with the ``tile*`` keys.
    Ctrl-C or a SIGTERM (``guard``: ``signals.TermGuard``) at any moment leaves metrics.json with
    status ``interrupted`` and the groups done so far (``tile_groups_done``); a relaunch with
    ``skip_completed=true`` goes on from there."""
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    from dip_lightning.signals import SIGTERM_EXIT

    t0 = time.perf_counter()
    out_dir = stages.check(cfg)
    log.info("run folder: %s", out_dir)
    if cfg.get("ckpt_path"):
        raise ValueError("a tiled run resumes by being launched again into its folder with skip_completed=true "
                         "(each tile group keeps its own checkpoints); drop ckpt_path")
    with stages.stoppable(out_dir, guard):
        stages.set_up(cfg, out_dir)
        whole = observe(cfg, image, make_task)
        tiles = plan(cfg, whole)
        method = instantiate(cfg.method) if cfg.get("method") else None
        make_input, n = instantiate(cfg.input), len(tiles.boxes)
        k = max(1, min(int(cfg.get("tile_batch") or 1), n))
        computed, again = computed_config(cfg), bool(cfg.get("skip_completed"))
        log.info("%d tiles of %d px (overlap %d px), %d at a time", n, tiles.size, tiles.overlap, k)
        logger = build_logger(cfg)
    try:
        groups: list[dict] = []
        try:
            for g, first in enumerate(range(0, n, k)):
                gdir = out_dir / "tiles" / f"group{g:03d}"
                result = done_group(gdir, computed) if again else None
                if result is None:
                    fits = [tile_fit(cfg, whole, i, n, tiles.boxes[i], make_input, method)
                            for i in range(first, min(n, first + k))]
                    result = fit_group(cfg, fits, method, gdir, computed, again, guard)
                    del fits
                    gc.collect()  # the group's trainer and module hold each other: free them before the next group
                groups.append(result)
        except (KeyboardInterrupt, SystemExit) as exc:
            stages.interrupted(out_dir, exc, guard, iters_done=sum(t["steps"] for r in groups for t in r["tiles"][:1]),
                        tiles=n, tile_groups=len(range(0, n, k)), tile_groups_done=len(groups))
            if isinstance(exc, SIGTERMException) or guard.received:
                raise SystemExit(SIGTERM_EXIT) from exc
            raise
        guard.quiet = True
        results = tiled_outputs.write_tiled(cfg, whole, tiles, groups, out_dir, time.perf_counter() - t0, k, logger)
        if guard.received:  # asked to stop while the outputs were written: they are complete, now stop
            raise SystemExit(SIGTERM_EXIT)
        log_summary(logger, results["metrics"])
    finally:
        finish_logger(logger)
    log.info(stages.summary_line(results))
    return results

