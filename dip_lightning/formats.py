"""Numeric image files: the formats benchmarks made elsewhere come in, read to (C, H, W) in [0, 1].

- ``.npy``; ``.npz`` (its first array, or ``PATH:key``);
- PNG of 8 or 16 bits (16-bit RGB and gray read exactly, with pypng; Pillow keeps only 8 bits of
  16-bit RGB);
- TIFF of any integer or float type, any number of channels (tifffile);
- every other format Pillow reads (JPEG, BMP, 8-bit PNG) stays with ``dip_lightning.io``.

Integer data are scaled by their type's range (uint8 by 255, uint16 by 65535); floats must already
lie in [0, 1], else one line says so. Arrays are (H, W), (H, W, C) or (C, H, W) with C in 1, 3, 4
(a 4th channel is alpha and is dropped, as for PNG files).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

#: suffixes read here rather than by Pillow
ARRAY_EXT = (".npy", ".npz")
TIFF_EXT = (".tif", ".tiff")


def split_key(name: str) -> tuple[Path, str | None]:
    """``'a.npz:noisy'`` -> (Path('a.npz'), 'noisy'); any other name -> (Path(name), None)."""
    head, sep, key = name.rpartition(":")
    if sep and head.lower().endswith(".npz") and key and "/" not in key:
        return Path(head).expanduser(), key
    return Path(name).expanduser(), None


def handles(name: str) -> bool:
    """Whether ``name`` is a file this module reads (an array file, a TIFF, a 16-bit PNG)."""
    path, key = split_key(name)
    if not path.is_file():
        return False
    suffix = path.suffix.lower()
    return key is not None or suffix in ARRAY_EXT + TIFF_EXT or (suffix == ".png" and png_bit_depth(path) > 8)


def png_bit_depth(path: Path) -> int:
    """The bit depth of a PNG's samples, from its header (0 if it is not a readable PNG)."""
    with open(path, "rb") as f:
        head = f.read(26)
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return 0
    return head[24]


def read_array(name: str) -> np.ndarray:
    """The raw array of an array file, TIFF or 16-bit PNG (see the module docstring)."""
    path, key = split_key(name)
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as arrays:
                names = list(arrays.keys())
                if not names:
                    raise ValueError(f"{str(path)!r} holds no array")
                if key is not None and key not in names:
                    raise ValueError(f"{str(path)!r} has no array {key!r}; it has {', '.join(names)} "
                                     f"(give {path.name}:NAME)")
                return arrays[key if key is not None else names[0]]
        if suffix in TIFF_EXT:
            import tifffile

            return tifffile.imread(path)
        return _read_png16(path)
    except ValueError:
        raise
    except Exception as exc:  # a damaged or foreign file: one line
        raise ValueError(f"cannot read {str(path)!r} ({type(exc).__name__}: {exc})") from None


def _read_png16(path: Path) -> np.ndarray:
    import png

    width, height, rows, info = png.Reader(filename=str(path)).asDirect()
    planes = int(info["planes"])
    a = np.vstack([np.asarray(r, dtype=np.uint16) for r in rows]).reshape(height, width, planes)
    if planes in (2, 4):  # gray + alpha, RGB + alpha: the alpha is dropped
        a = a[:, :, :planes - 1]
    return a[:, :, 0] if a.shape[2] == 1 else a


def write_png16(path: Path, a: np.ndarray) -> None:
    """Write a uint16 (H, W) or (H, W, C) array (C = 1, 3 or 4) as a 16-bit PNG."""
    import png

    a = np.asarray(a, dtype=np.uint16)
    planes = 1 if a.ndim == 2 else a.shape[2]
    mode = {1: "L;16", 3: "RGB;16", 4: "RGBA;16"}[planes]
    png.from_array(a.reshape(a.shape[0], -1), mode=mode).save(str(path))


def to_unit_range(a: np.ndarray, name: str) -> np.ndarray:
    """``a`` as float32 HWC in [0, 1]: integers scaled by their type's range, floats checked."""
    if a.dtype == bool:
        a = a.astype(np.float32)
    elif np.issubdtype(a.dtype, np.integer):
        a = a.astype(np.float64) / float(np.iinfo(a.dtype).max)
    elif np.issubdtype(a.dtype, np.floating):
        finite = np.isfinite(a)
        lo, hi = (float(a[finite].min()), float(a[finite].max())) if finite.any() else (np.nan, np.nan)
        if not finite.all() or lo < 0.0 or hi > 1.0:
            what = "non-finite values" if not finite.all() else f"values in [{lo:.4g}, {hi:.4g}]"
            raise ValueError(f"image {name!r} is float with {what}; float images must lie in [0, 1] "
                             f"(divide by the peak, e.g. 255 or 65535, and clip)")
    else:
        raise ValueError(f"image {name!r} has data type {a.dtype}; give integers, or floats in [0, 1]")
    a = np.asarray(a, dtype=np.float32)
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[2] not in (1, 3, 4):  # (C, H, W)
        a = a.transpose(1, 2, 0)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise ValueError(f"image {name!r} has shape {a.shape}; expected (H, W), (H, W, C) or (C, H, W) "
                         f"with C = 1, 3 or 4")
    return a[:, :, :3] if a.shape[2] == 4 else a
