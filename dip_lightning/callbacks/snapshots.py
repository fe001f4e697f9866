"""Image snapshots of the fit: at log-spaced steps (1, 2, 5, 10, 20, 50, …) and every N steps,
to a ``snapshots/`` folder and to W&B (8-bit images), plus a labelled grid at the end."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
from PIL import Image, ImageDraw, ImageFont

from dip_lightning.io import save_image, to_uint8


def snapshot_steps(iters: int, every: int = 0, log_spaced: bool = True) -> list[int]:
    """Steps 1, 2, 5, 10, 20, 50, … (when ``log_spaced``) and multiples of ``every``, up to iters."""
    steps = set()
    if log_spaced:
        decade = 1
        while decade <= iters:
            steps.update(s for s in (decade, 2 * decade, 5 * decade) if s <= iters)
            decade *= 10
    if every and every > 0:
        steps.update(range(every, iters + 1, every))
    if steps:
        steps.add(iters)
    return sorted(steps)


class Snapshots(pl.Callback):
    """Save the output (and EMA) at ``snapshot_steps``; at the end write ``snapshots.png``."""

    def __init__(self, folders: str | Path | list, iters: int, every: int = 0, log_spaced: bool = True,
                 grid_columns: int = 8):
        self.folders = [Path(f) for f in (folders if isinstance(folders, (list, tuple)) else [folders])]
        self.steps = set(snapshot_steps(iters, every, log_spaced))
        self.grid_columns = grid_columns
        self.saved: list[list[tuple[int, Path]]] = [[] for _ in self.folders]  # per fit

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step not in self.steps:
            return
        final, ema = module.final_image(), module.ema_image()
        for fit, folder in enumerate(self.folders):
            images = {"output": module.fit_slice(final, fit)[0]}
            if ema is not None:
                images["ema"] = module.fit_slice(ema, fit)[0]
            for kind, img in images.items():
                path = save_image(img, folder / f"step_{step:06d}{'' if kind == 'output' else '_ema'}.png")
                if kind == "output":
                    self.saved[fit].append((step, path))
                key = f"snapshot/{kind}" if len(self.folders) == 1 else f"fit{fit}/snapshot/{kind}"
                for logger in trainer.loggers:
                    if hasattr(logger, "log_image"):  # WandbLogger: uint8, so the PNG is not black
                        logger.log_image(key=key, images=[to_uint8(img)], step=step, caption=[f"step {step}"])

    def on_train_end(self, trainer, module) -> None:
        for folder, saved in zip(self.folders, self.saved):
            if saved:
                make_grid(saved, folder.parent / "snapshots.png", self.grid_columns)

    def state_dict(self) -> dict:
        return {"saved": [[(s, str(p)) for s, p in saved] for saved in self.saved]}

    def load_state_dict(self, state: dict) -> None:
        self.saved = [[(s, Path(p)) for s, p in saved] for saved in state["saved"]]


def make_grid(saved: list[tuple[int, Path]], path: Path, columns: int = 8) -> Path:
    """Tile saved snapshots (step-labelled) into one RGB image."""
    tiles = []
    for step, p in saved:
        if not p.is_file():
            continue
        im = Image.open(p).convert("RGB")
        label_h = max(12, im.height // 8)
        tile = Image.new("RGB", (im.width, im.height + label_h), "white")
        tile.paste(im, (0, label_h))
        draw = ImageDraw.Draw(tile)
        draw.text((2, 0), f"{step}", fill="black", font=ImageFont.load_default(size=label_h - 2))
        tiles.append(np.asarray(tile))
    if not tiles:
        return path
    h, w = tiles[0].shape[:2]
    cols = min(columns, len(tiles))
    rows = -(-len(tiles) // cols)
    grid = np.full((rows * (h + 2), cols * (w + 2), 3), 255, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        grid[r * (h + 2):r * (h + 2) + h, c * (w + 2):c * (w + 2) + w] = t[:h, :w]
    Image.fromarray(grid).save(path)
    return path
