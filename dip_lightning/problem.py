"""What is restored: the observation, its ground truth and the canvas the net paints on.

``build_fits(cfg)`` makes every fit of a run (K when packed): the task (operator), the image, the
network initialised from the fit's seed, the observation ``y = task.simulate(x)`` (or the user's
own observed image), its padding to the net's multiple, and the fixed input z. Seeds: the net's
weights come from ``torch.manual_seed(seed)``; the observation's noise / mask and z each from a
``torch.Generator`` of its own stream ("observation", "input": ``dip_lightning.seeds``), so an
observation made elsewhere and adopted (``observed=true``) gets the z its synthetic run got.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, ListConfig

from dip_lightning.instantiate import instantiate
from dip_lightning.seeds import stream_seed
from dip_lightning.io import center_crop_box, crop, lcm, load_alpha, load_image, pad_amounts, pad_image, pil_resize
from dip_lightning.tasks.base import Task


@dataclass
class Problem:
    """A prepared restoration: padded observation, ground truth (or None), crop box on the canvas."""

    y: torch.Tensor          # observation (1, C, h, w), unpadded
    y_padded: torch.Tensor   # observation padded to the network's multiple
    x_true: torch.Tensor | None
    box: tuple[int, int, int, int]  # (top, left, H, W) of the restored image on the canvas
    canvas: tuple[int, int]
    weight: torch.Tensor | None = None  # (1, 1, h, w) of y_padded: the data term's pixel weights (None: all 1)
    holdout: torch.Tensor | None = None  # (1, 1, h, w) of y_padded: 1 where a pixel is held out of the data term


def prepare_problem(image: torch.Tensor, task: Task, multiple: int, observed: bool, fit_size: str,
                    generator: torch.Generator, min_size: int | None = None,
                    reference: torch.Tensor | None = None, holdout: float | None = None,
                    holdout_generator: torch.Generator | None = None) -> Problem:
    """Make (or adopt) the observation and pad it so the restored canvas is a multiple of the net's.

    ``fit_size='pad'``: reflection-pad the observation (and operator state, e.g. the mask) and crop
    the result back, so every pixel is restored. ``'crop'``: the original code's centre crop to a
    multiple (borders are lost; the restored image is smaller than the input). The canvas is at
    least ``min_size`` (default two multiples: BatchNorm at the deepest level needs > 1 value per
    channel, reflection padding needs more pixels than it pads). ``reference`` (C, H, W): the
    clean image an observed ``image`` is scored against (``make_observation``). ``holdout``: the
    fraction of observation pixels held out of the data term (``holdout_mask``).
    """
    if fit_size not in ("pad", "crop"):
        raise ValueError(f"fit_size={fit_size!r}; choose pad (keep every pixel) or crop (the original's centre crop)")
    s = int(task.scale)
    obs_multiple = lcm(multiple, s) // s  # observation pixels per canvas multiple
    x = image[None]
    adopt = observed or task.blind
    if fit_size == "crop":  # first, as the original: its SR loader crops the HR image to the multiple
        if adopt and not task.image_observation:
            raise ValueError(f"fit_size=crop cannot crop a {type(task).__name__} observation (it is not an image); "
                             f"use fit_size=pad")
        box = center_crop_box(*x.shape[-2:], obs_multiple if adopt else lcm(multiple, s), pil_round=s > 1 and not adopt)
        task.crop_like(box, tuple(x.shape[-2:]))  # operator state of the image's size (mask, flash) alike
        if reference is not None and tuple(reference.shape[-2:]) == tuple(v * s for v in x.shape[-2:]):
            reference = crop(reference[None], tuple(v * s for v in box))[0]  # the same part, in its pixels
        x = crop(x, box)
    y, x_true = make_observation(task, x, adopt, generator, None if reference is None else reference[None])
    held = None if not holdout else holdout_mask(task, y, float(holdout), holdout_generator)
    return pad_problem(task, y, x_true, multiple, min_size, holdout=held)


def make_observation(task: Task, x: torch.Tensor, adopt: bool, generator: torch.Generator,
                     reference: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(y, ground truth): the image ``x`` (1, C, H, W) adopted as the observation (its ground
    truth the ``reference`` (1, C, H·s, W·s) when one is given, s the task's scale, else none),
    or made valid for the task and degraded by it."""
    if adopt:
        y = task.adopt(x)
        return y, None if reference is None else checked_reference(task, y, reference)
    x_true = task.crop_ground_truth(x)
    return task.simulate(x_true, generator), x_true


def holdout_mask(task: Task, y: torch.Tensor, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """(1, 1, h, w): 1 on a random ``fraction`` of the observation's pixels (all their channels),
    which the data term leaves out and ``psnr_holdout`` scores the output on (self-validation,
    Li et al. BMVC 2021; J-invariance, Batson & Royer ICML 2019: for pixel-wise independent noise
    its expectation ranks outputs as the PSNR against the clean image does)."""
    if not task.image_observation or not task.local:
        raise ValueError(f"holdout={fraction} holds out pixels of an image observation, and {type(task).__name__}'s "
                         f"is not one; leave holdout out")
    h, w = task.observation_hw(y)
    return (torch.rand((1, 1, h, w), generator=generator) < fraction).to(y.dtype)


def checked_reference(task: Task, y: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``reference`` if it fits the observation ``y``: an image observation, the same channels,
    and ``task.scale`` times y's size (SR: factor × larger); else one line naming both sizes."""
    if not task.image_observation:
        raise ValueError(f"reference= scores an image observation, and {type(task).__name__}'s is not one; "
                         f"leave reference out")
    s = int(task.scale)
    want = (int(y.shape[1]), int(y.shape[-2]) * s, int(y.shape[-1]) * s)
    got = tuple(int(v) for v in reference.shape[1:])
    if got != want:
        times = f" ({s} × the observation's {y.shape[-2]}×{y.shape[-1]})" if s > 1 else ""
        raise ValueError(f"reference is {got[0]}×{got[1]}×{got[2]} (C×H×W) but the observation needs "
                         f"{want[0]}×{want[1]}×{want[2]}{times}; give the reference of this observation")
    return reference


def pad_problem(task: Task, y: torch.Tensor, x_true: torch.Tensor | None, multiple: int,
                min_size: int | None = None, weight: torch.Tensor | None = None,
                holdout: torch.Tensor | None = None) -> Problem:
    """The observation ``y`` reflection-padded (with the operator's state, and the data term's
    pixel ``weight`` of y's size) so the canvas is a multiple of the net's and at least
    ``min_size`` (``prepare_problem``)."""
    s = int(task.scale)
    obs_multiple = lcm(multiple, s) // s
    h, w = task.observation_hw(y)
    min_obs = -(-int(min_size or 2 * multiple) // s)
    (pt, pb), (pl_, pr) = pad_amounts(h, obs_multiple, min_obs), pad_amounts(w, obs_multiple, min_obs)
    pads = (pt, pb, pl_, pr)
    y_padded = task.pad_observation(y, pads)
    task.pad(pads)
    canvas = ((h + pt + pb) * s, (w + pl_ + pr) * s)
    box = (pt * s, pl_ * s, h * s, w * s)
    weight = None if weight is None else pad_image(weight, pads, mode="reflect")
    holdout = None if holdout is None else pad_image(holdout, pads, mode="reflect")  # (reflections held out too)
    return Problem(y=y, y_padded=y_padded, x_true=x_true, box=box, canvas=canvas, weight=weight, holdout=holdout)


@dataclass
class Fit:
    """One restoration problem of a (possibly packed) run."""

    seed: int
    source: str  # the image: a path, a sample name, or 'array' (the API's tensor)
    task: Task
    net: torch.nn.Module
    prob: Problem
    z: torch.Tensor
    channels: int = 0  # the net's output channels (the image's; 2 for complex data)


def build_fit(cfg: DictConfig, seed: int, source, image: torch.Tensor | None, make_input,
              task: Task | None = None, observation: torch.Tensor | None = None, method=None,
              pack_index: int | None = None) -> Fit:
    """Task, net (initialised from ``seed``), observation and input z of one fit, as a lone run makes them.
    ``task`` replaces ``cfg.task``; ``observation`` (1, …) is y as given, of any shape the task
    takes (no ground truth: e.g. the deepinv reconstructor's measurements). A ``method`` that
    shapes its own input (``Method.input_depth``; Self-Guided DIP) sets the net's input channels,
    and z is then zeros of that depth (the method trains its own). ``pack_index``: the fit's place
    in ``pack_images``, whose reference is the same place in a list ``reference``."""
    task = instantiate(cfg.task) if task is None else task
    if observation is not None:
        img = observation[0]
        task.adopt(observation)  # a physics task learns its image shape from y
    else:
        img = load_image(source if image is None else image, cfg.get("resize"))
    if task.needs_alpha:
        task.alpha = alpha_of(source, image, img)
    net, channels, own_depth = new_net(cfg, task, int(img.shape[0]), seed, make_input, method)
    generator = torch.Generator().manual_seed(stream_seed(seed, "observation"))  # the noise / mask
    prob = prepare_problem(img, task, int(getattr(net, "multiple", 1)), observation is not None or bool(cfg.observed),
                           str(cfg.fit_size), generator, getattr(net, "min_size", None),
                           None if observation is not None else load_reference(cfg, pack_index), cfg.get("holdout"),
                           torch.Generator().manual_seed(stream_seed(seed, "holdout")))
    z = net_input(prob, task, own_depth, make_input, torch.Generator().manual_seed(stream_seed(seed, "input")))
    return Fit(seed, str(source), task, net, prob, z, channels)


def load_reference(cfg: DictConfig, index: int | None = None) -> torch.Tensor | None:
    """The config's ``reference`` image (C, H, W), for an ``observed=true`` run (else a one-line
    error); with ``pack_images``, ``reference`` is a list and ``index`` the packed fit's."""
    ref = cfg.get("reference")
    if ref is None:
        return None
    if isinstance(ref, (list, ListConfig)) != (index is not None):
        images = len(cfg.get("pack_images") or [])
        raise ValueError(f"reference={ref} for {images or 'one'} observation{'s' if images else ''}: give one reference "
                         f"per observation, a list in pack_images' order when packed, else one file")
    if index is not None:
        if len(ref) != len(cfg.pack_images):
            raise ValueError(f"reference has {len(ref)} images but pack_images has {len(cfg.pack_images)}; give one "
                             f"reference per packed observation, in order")
        ref = ref[index]
    if not cfg.get("observed"):
        raise ValueError(f"reference={ref} scores an observation given as image=; add observed=true (without it "
                         f"the run degrades image= itself and scores against it)")
    if cfg.get("resize") is not None:
        raise ValueError(f"resize={cfg.resize} would rescale the observation and not its reference={ref}; "
                         f"leave resize out and give the pair at the size to restore")
    return load_image(ref)


def new_net(cfg: DictConfig, task: Task, image_channels: int, seed: int, make_input, method=None):
    """(net, its output channels, the method's own input depth or None): the net initialised from
    ``seed`` alone."""
    torch.manual_seed(seed)  # network initialisation depends on the seed only
    channels = task.net_channels(image_channels)
    own_depth = method.input_depth(channels) if method is not None else None
    in_channels = own_depth or task.input_channels or make_input.depth
    linear = {"need_sigmoid": False} if task.linear_output and "need_sigmoid" in cfg.net else {}
    return instantiate(cfg.net, in_channels=in_channels, out_channels=channels, **linear), channels, own_depth


def net_input(prob: Problem, task: Task, own_depth: int | None, make_input, generator: torch.Generator) -> torch.Tensor:
    """The fixed input z on the problem's canvas: the method's zeros, the task's own, or drawn."""
    z = torch.zeros(1, own_depth, *prob.canvas) if own_depth else task.network_input()
    return make_input(*prob.canvas, generator) if z is None else z


def build_fits(cfg: DictConfig, image: torch.Tensor | None, make_input, make_task=None,
               observations: torch.Tensor | None = None, method=None) -> list[Fit]:
    """K = ``pack`` fits: ``pack_images`` (one image per fit; ``pack`` defaults to their number), each
    fitted with ``seed`` exactly as its lone run would be; or ``image`` K times with seeds
    seed·K … seed·K + K − 1 (the seed's own block of K, so a sweep over ``seed`` never repeats a
    fit's seed). ``observations`` (B, …): one fit per measurement, each with ``seed`` and its own
    ``make_task()`` (the deepinv reconstructor). ``method``: the run's DIP variant (``build_fit``)."""
    if observations is not None:
        fits = [build_fit(cfg, int(cfg.seed), "observation", None, make_input, make_task(), observations[b:b + 1], method)
                for b in range(observations.shape[0])]
        return _same_size(fits)
    k = int(cfg.get("pack") or 1)
    images = list(cfg.get("pack_images") or [])
    if images and k == 1:  # pack_images alone: one fit per image
        k = len(images)
    if k < 1:
        raise ValueError(f"pack={k} must be a positive number of fits")
    if images and len(images) != k:
        raise ValueError(f"pack_images has {len(images)} images but pack={k}; give one image per fit")
    seed = int(cfg.seed)
    fits = [build_fit(cfg, seed if images else seed * k + i, images[i] if images else cfg.image, image, make_input,
                      None if make_task is None else make_task(), method=method, pack_index=i if images else None)
            for i in range(k)]
    return _same_size(fits)


def _same_size(fits: list[Fit]) -> list[Fit]:
    """The fits, checked to share one canvas, box and observation shape (packing needs it)."""
    first = fits[0].prob
    for f in fits[1:]:
        if (f.prob.canvas, f.prob.box) != (first.canvas, first.box) or f.prob.y.shape != first.y.shape:
            raise ValueError(f"packed fits need images of one size and channel count: got {tuple(first.y.shape[1:])} "
                             f"and {tuple(f.prob.y.shape[1:])} (C, H, W); {_one_size_hint(fits)}")
    return fits


def _one_size_hint(fits: list[Fit]) -> str:
    """How to pack these images: the ``resize`` that makes them one size when there is one (checked
    by loading them so), else fitting each alone."""
    n = max(fits[0].prob.box[2:])
    try:
        shapes = {tuple(load_image(f.source, n).shape) for f in fits}
    except (OSError, ValueError):  # not files or samples (the API's observations)
        shapes = set()
    if len(shapes) == 1:
        return f"e.g. resize={n} makes them one size"
    return "they differ in aspect ratio or channels: fit each alone (pack_images=null image=PATH)"


def alpha_of(source, image: torch.Tensor | None, img: torch.Tensor) -> torch.Tensor:
    """The image file's alpha channel (for task.mask=alpha), resized like the image."""
    alpha = load_alpha(source) if image is None and Path(str(source)).is_file() else None
    if alpha is None:
        raise ValueError(f"task.mask=alpha but image={str(source)!r} has no alpha channel; give an RGBA/LA PNG "
                         f"or another task.mask")
    if alpha.shape[-2:] != img.shape[-2:]:
        alpha = pil_resize(alpha, img.shape[-2], img.shape[-1], "nearest")
    return alpha
