"""Many tensors handled as one flat vector: the GPU backtracking's few-kernel, sync-free select.

Restoring ~300 tensors (parameters and Adam moments) one by one costs several kernel launches
each, every step. Here all of them are gathered into one vector (one ``cat``), selected against
the snapshot with one ``torch.where`` and written back with one ``_foreach_copy_``. Each tensor
enters in its storage order (NCHW or channels_last, dim 0 outermost in both), so the K packed
fits' blocks along dim 0 are contiguous runs of the vector.
"""
from __future__ import annotations

import torch


def flat_view(t: torch.Tensor) -> torch.Tensor | None:
    """A 1-d view of ``t``'s elements in storage order, or None if ``t`` is not dense."""
    if t.is_contiguous():
        return t.view(-1)
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last):
        return t.permute(0, 2, 3, 1).view(-1)
    return None


class FlatState:
    """The layout of a list of dense tensors laid end to end (see the module docstring)."""

    def __init__(self, sizes: list[int], fits: int, device: torch.device):
        self.sizes, self.fits = sizes, fits
        self.total = sum(sizes)
        self.offsets = [sum(sizes[:i]) for i in range(len(sizes))]
        # per (tensor, fit) block: its length; the K fits' blocks of a tensor are consecutive.
        # Filled on the device from Python scalars: no host-to-device copy (torch.tensor(list) is one),
        # and made once: keep the FlatState across steps (``cached``).
        self.block = (torch.cat([torch.full((fits,), n // fits, dtype=torch.long, device=device) for n in sizes])
                      if fits > 1 else None)

    @classmethod
    def of(cls, tensors: list[torch.Tensor], fits: int) -> "FlatState | None":
        """The layout of ``tensors``, or None if one is not dense or not split evenly into ``fits``."""
        if not tensors or any(flat_view(t) is None or t.dim() == 0 or t.shape[0] % fits for t in tensors):
            return None
        return cls([t.numel() for t in tensors], fits, tensors[0].device)

    @classmethod
    def cached(cls, cache: dict, tensors: list[torch.Tensor], fits: int) -> "FlatState | None":
        """``of``, remembered in ``cache`` per (sizes, dim-0 sizes, device, fits)."""
        key = (tuple((t.numel(), t.shape[0] if t.dim() else 1) for t in tensors), str(tensors[0].device) if tensors
               else "", fits)
        if key not in cache:
            cache[key] = cls.of(tensors, fits)
        return cache[key]

    def gather(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([flat_view(t) for t in tensors])

    def scatter(self, flat: torch.Tensor, tensors: list[torch.Tensor]) -> None:
        torch._foreach_copy_([flat_view(t) for t in tensors], list(flat.split(self.sizes)))

    def select(self, good: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``a`` where the element's fit is good, else ``b``; ``good`` is (K,), on the device."""
        if self.fits == 1:
            return torch.where(good, a, b)
        keep = good.repeat(len(self.sizes)).repeat_interleave(self.block, output_size=self.total)
        return torch.where(keep, a, b)

    def views(self, flat: torch.Tensor, like: list[torch.Tensor]) -> list[torch.Tensor]:
        """Tensors shaped and strided as ``like``, backed by ``flat``."""
        return [flat.as_strided(t.size(), t.stride(), flat.storage_offset() + off) for t, off in zip(like, self.offsets)]

    def holds(self, tensors: list[torch.Tensor], flat: torch.Tensor) -> bool:
        """Whether ``tensors`` are ``views(flat, ...)`` (then ``flat`` is their gather, without copying)."""
        return (len(tensors) == len(self.sizes) and flat.numel() == self.total
                and all(t.untyped_storage().data_ptr() == flat.untyped_storage().data_ptr() for t in tensors))
