"""Inpainting masks (1 = known pixel, 0 = missing), shape (1, 1, H, W)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

DEFAULT_TEXT = "Deep Image Prior restores what the mask hides"


def text_mask(height: int, width: int, text: str = DEFAULT_TEXT, font_size: int | None = None) -> torch.Tensor:
    """Lines of text drawn over the image (the paper's 'kate' style): text pixels are missing."""
    size = font_size or max(8, min(height, width) // 8)
    canvas = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=size)
    words = text.split() or ["DIP"]
    y, i = size // 4, 0
    while y < height:
        line, x = [], 0
        while x < width:  # fill the line with words, wrapping the text around
            word = words[i % len(words)]
            line.append(word)
            x += int(draw.textlength(word + " ", font=font))
            i += 1
        draw.text((size // 4, y), " ".join(line), fill=0, font=font)
        y += int(size * 1.6)
    m = (np.asarray(canvas) > 127).astype(np.float32)
    return torch.from_numpy(m)[None, None]


def random_mask(height: int, width: int, missing: float, generator: torch.Generator) -> torch.Tensor:
    """Each pixel (all channels together) is missing with probability ``missing``: keep iff U > missing."""
    if not 0.0 <= missing < 1.0:
        raise ValueError(f"task.missing={missing} must be a fraction in [0, 1), e.g. task.missing=0.5")
    u = torch.rand((1, 1, height, width), generator=generator)
    return (u > missing).float()


def box_mask(height: int, width: int, box: Sequence[float]) -> torch.Tensor:
    """One missing rectangle, box = (top, left, height, width) as fractions of the image size."""
    if len(box) != 4:
        raise ValueError(f"task.box={list(box)} must have 4 fractions: [top, left, height, width]")
    t, l, h, w = box
    m = torch.ones((1, 1, height, width))
    r0, c0 = int(round(t * height)), int(round(l * width))
    m[..., r0:r0 + max(1, int(round(h * height))), c0:c0 + max(1, int(round(w * width)))] = 0
    return m


def file_mask(path: str | Path, height: int, width: int) -> torch.Tensor:
    """A mask image: bright pixels (> 0.5) are known. Must match the image size."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise IsADirectoryError(f"task.mask={str(path)!r} is a folder; give a mask image file or text|random|box")
    if not path.is_file():
        raise FileNotFoundError(f"mask file {str(path)!r} does not exist; give task.mask=text|random|box or a mask path")
    from dip_lightning.io import load_image

    m = load_image(path).mean(0)
    if m.shape != (height, width):
        raise ValueError(f"mask {path.name} is {m.shape[0]}x{m.shape[1]} but the image is {height}x{width}; "
                         f"give a mask of the image's size")
    return (m > 0.5).float()[None, None]
