"""Image input/output: files and skimage samples to (C, H, W) float tensors in [0, 1], and back.

Also the pad-to-multiple / crop-back helpers that let any image size (odd, tiny, gray, RGB) run
through networks that halve the resolution several times.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from dip_lightning import formats

# skimage samples shipped inside the package (no download); name -> file in skimage/data.
SKIMAGE_SAMPLES = (
    "astronaut", "brick", "camera", "cat", "cell", "chelsea", "coffee", "coins", "colorwheel",
    "grass", "gravel", "horse", "logo", "moon", "page", "rocket", "text",
)


#: file suffixes of the images a folder of images (a benchmark set) is read for
IMAGE_EXT = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".npy", ".npz")


def _array_to_tensor(a: np.ndarray) -> torch.Tensor:
    """(H, W) or (H, W, C) integer/float/bool array -> (C, H, W) float32 tensor in [0, 1]."""
    if a.dtype == bool:
        a = a.astype(np.float32)
    elif np.issubdtype(a.dtype, np.integer):
        a = a.astype(np.float64) / float(np.iinfo(a.dtype).max)
    a = np.asarray(a, dtype=np.float32)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3:
        raise ValueError(f"image array has shape {a.shape}; expected (H, W) or (H, W, C)")
    if a.shape[2] == 4:  # drop alpha
        a = a[:, :, :3]
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).clamp_(0.0, 1.0)


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL image of any common mode -> (C, H, W) float32 in [0, 1] (1 channel for gray, else 3)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        a = np.asarray(img).astype(np.float64) / 65535.0
        return _array_to_tensor(a)
    if img.mode == "I":  # 32-bit int container; PNG 16-bit often decodes to it
        a = np.asarray(img).astype(np.float64)
        return _array_to_tensor(a / (65535.0 if a.max() > 255 else 255.0))
    if img.mode == "F":
        return _array_to_tensor(np.asarray(img, dtype=np.float32))
    if img.mode in ("1", "L"):
        return _array_to_tensor(np.asarray(img.convert("L")))
    if img.mode == "LA":
        return _array_to_tensor(np.asarray(img.convert("L")))
    return _array_to_tensor(np.asarray(img.convert("RGB")))


def open_image(path: Path) -> Image.Image:
    """Open and fully decode an image file; a clear ValueError for non-images and truncated files."""
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                warnings.warn(f"{path.name}: alpha channel dropped (use task=inpaint task.mask=alpha to use it as the mask)",
                              stacklevel=3)
            return img.copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"cannot read {str(path)!r} as an image ({exc}); give a PNG/JPEG/TIFF/BMP file") from None


def load_alpha(path: str | Path) -> torch.Tensor | None:
    """The alpha channel of an image file as a (1, H, W) tensor in [0, 1], or None if it has none."""
    img = open_image(Path(path))
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode not in ("RGBA", "LA", "PA"):
        return None
    return _array_to_tensor(np.asarray(img.getchannel("A")))


def load_image(source: str | Path | np.ndarray | torch.Tensor | Image.Image,
               resize: int | None = None) -> torch.Tensor:
    """Load an image as a (C, H, W) float32 tensor in [0, 1].

    ``source`` is a file path (PNG of 8 or 16 bits, JPEG, BMP, TIFF of any type, ``.npy``,
    ``.npz`` or ``.npz:key``: ``dip_lightning.formats``), the name of a bundled ``skimage.data``
    sample (e.g. ``astronaut``, ``camera``), a PIL image, an (H, W[, C]) array, or a (C, H, W) tensor.
    ``resize`` (optional) scales the image with a Lanczos filter so its longer side is ``resize``.
    """
    if isinstance(source, torch.Tensor):
        t = source.detach().float().cpu()
        if t.ndim == 2:
            t = t[None]
        if t.ndim != 3:
            raise ValueError(f"image tensor has shape {tuple(t.shape)}; expected (C, H, W) or (H, W)")
        t = t.clamp(0, 1)
    elif isinstance(source, np.ndarray):
        t = _array_to_tensor(source)
    elif isinstance(source, Image.Image):
        t = pil_to_tensor(source)
    else:
        name = str(source)
        path = Path(name).expanduser()
        if formats.handles(name):  # .npy / .npz[:key], TIFF of any type, 16-bit PNG
            a = formats.to_unit_range(formats.read_array(name), name)
            t = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))
        elif path.is_dir():
            raise IsADirectoryError(f"image={name!r} is a folder; give an image file or a skimage sample name")
        elif path.is_file():
            t = pil_to_tensor(open_image(path))
        elif name in SKIMAGE_SAMPLES:
            import skimage.data

            t = _array_to_tensor(np.asarray(getattr(skimage.data, name)()))
        else:
            raise FileNotFoundError(
                f"image {name!r} is neither an existing file nor a bundled skimage sample; "
                f"give a path or one of: {', '.join(SKIMAGE_SAMPLES)}")
    if resize is not None:
        t = resize_longer_side(t, int(resize))
    return t.contiguous()


def resize_longer_side(t: torch.Tensor, size: int) -> torch.Tensor:
    """Lanczos-resize a (C, H, W) image so that max(H, W) == size (aspect ratio kept)."""
    c, h, w = t.shape
    scale = size / max(h, w)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    if new == (w, h):
        return t
    return pil_resize(t, new[1], new[0])


def pil_resize(t: torch.Tensor, height: int, width: int, method: str = "lanczos") -> torch.Tensor:
    """Resize a (C, H, W) float image channel by channel with PIL in float mode (no quantisation)."""
    resample = {"lanczos": Image.LANCZOS, "bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR,
                "nearest": Image.NEAREST, "box": Image.BOX}[method]
    chans = [np.asarray(Image.fromarray(ch.numpy().astype(np.float32), mode="F")
                        .resize((width, height), resample=resample)) for ch in t.float().cpu()]
    return torch.from_numpy(np.stack(chans)).clamp_(0.0, 1.0)


def to_uint8(t: torch.Tensor) -> np.ndarray:
    """(C, H, W) or (1, C, H, W) float tensor in [0, 1] -> (H, W) or (H, W, 3) uint8 array."""
    t = t.detach().float().cpu()
    if t.ndim == 4:
        t = t[0]
    a = (t.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).numpy().transpose(1, 2, 0)
    return a[:, :, 0] if a.shape[2] == 1 else a


def save_image(t: torch.Tensor, path: str | Path) -> Path:
    """Save a (C, H, W) float image in [0, 1] as an 8-bit PNG (gray for one channel)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(t)).save(path)
    return path


# ---------------------------------------------------------------------------- pad / crop

def pad_amounts(size: int, multiple: int, minimum: int = 0) -> tuple[int, int]:
    """(before, after) padding that brings ``size`` up to the next multiple, and to at least
    ``minimum``, split evenly."""
    target = max(size + (-size) % multiple, minimum + (-minimum) % multiple)
    total = target - size
    return total // 2, total - total // 2


def pad_image(x: torch.Tensor, pads: Sequence[int], mode: str = "reflect") -> torch.Tensor:
    """Pad the last two dims of ``x`` by (top, bottom, left, right).

    Reflection is used where the image is large enough (pad < size); larger pads are done in
    repeated reflection passes, and a 1-pixel dimension falls back to replication.
    """
    top, bottom, left, right = (int(p) for p in pads)
    squeeze = x.ndim == 3
    y = x[None] if squeeze else x
    while top or bottom or left or right:
        h, w = y.shape[-2:]
        m = mode if (h > 1 and w > 1) else "replicate"
        lim_h, lim_w = (h - 1, w - 1) if m == "reflect" else (10**9, 10**9)
        t, b = min(top, lim_h), min(bottom, lim_h)
        l, r = min(left, lim_w), min(right, lim_w)
        y = F.pad(y, (l, r, t, b), mode=m)
        top, bottom, left, right = top - t, bottom - b, left - l, right - r
    return y[0] if squeeze else y


def crop(x: torch.Tensor, box: Sequence[int] | None) -> torch.Tensor:
    """Crop the last two dims to box = (top, left, height, width); None: x itself."""
    if box is None:
        return x
    t, l, h, w = box
    return x[..., t:t + h, l:l + w]


def center_crop_box(h: int, w: int, multiple: int, pil_round: bool = False) -> tuple[int, int, int, int]:
    """(top, left, H', W') of the original code's centre crop of an h×w image down to a multiple.

    The offset is ⌊(h − H')/2⌋, as its ``crop_image`` (``int()``); ``pil_round``: its SR loader's,
    which hands PIL the box ((w − W')/2, …) as floats and PIL rounds them (half to even), so an odd
    border gives round(k + ½)."""
    nh, nw = h - h % multiple, w - w % multiple
    if nh == 0 or nw == 0:
        raise ValueError(f"image of size {h}x{w} is smaller than the network multiple {multiple}; "
                         f"use fit_size=pad instead of fit_size=crop")
    if pil_round:
        return round((h - nh) / 2), round((w - nw) / 2), nh, nw
    return (h - nh) // 2, (w - nw) // 2, nh, nw


def center_crop_to_multiple(x: torch.Tensor, multiple: int, pil_round: bool = False) -> torch.Tensor:
    """The original code's behaviour: centre-crop H and W down to a multiple (loses borders); see
    ``center_crop_box``."""
    return crop(x, center_crop_box(*x.shape[-2:], multiple, pil_round))


def lcm(a: int, b: int) -> int:
    return a * b // math.gcd(a, b)
