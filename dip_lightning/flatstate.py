"""Many tensors handled as one flat vector: the GPU backtracking's few-kernel, sync-free select.

Restoring ~300 tensors (parameters and Adam moments) one by one costs several kernel launches
each, every step. Here all of them are gathered into one vector (one ``cat``), selected against
the snapshot with one ``torch.where`` and written back with one ``_foreach_copy_``. The 1-d views
of the tensors and the pieces of a kept flat vector are made once and reused. Each tensor
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
        self._views: tuple = (None, [])  # (key, views) of the last kept tensors
        self._parts: tuple = (None, [])  # (flat, its pieces) of the last kept flat vector
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

    def _flat_views(self, tensors: list[torch.Tensor], keep: bool) -> list[torch.Tensor]:
        """``flat_view`` of each tensor; with ``keep``, remembered while the tensors' memory stays
        where it was (views cost no kernel, but hundreds of them cost the host a dispatch each,
        every step). Only for tensors that live on (parameters, moments): a remembered view holds
        its tensor's memory."""
        if not keep:
            return [flat_view(t) for t in tensors]
        key = tuple((t.data_ptr(), t.stride()) for t in tensors)
        if self._views[0] != key:
            self._views = (key, [flat_view(t) for t in tensors])
        return self._views[1]

    def gather(self, tensors: list[torch.Tensor], keep: bool = False) -> torch.Tensor:
        return torch.cat(self._flat_views(tensors, keep))

    def scatter(self, flat: torch.Tensor, tensors: list[torch.Tensor], keep: bool = False) -> None:
        """``flat``'s pieces into ``tensors``; ``keep``: both live on (their views are remembered)."""
        if not keep:
            parts = list(flat.split(self.sizes))
        else:
            if self._parts[0] is not flat:
                self._parts = (flat, list(flat.split(self.sizes)))
            parts = self._parts[1]
        torch._foreach_copy_(self._flat_views(tensors, keep), parts)

    def keep(self, good: torch.Tensor) -> torch.Tensor:
        """``good`` (K,) as a mask over the flat vector: each element's fit."""
        if self.fits == 1:
            return good
        return good.repeat(len(self.sizes)).repeat_interleave(self.block, output_size=self.total)

    def select(self, good: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``a`` where the element's fit is good, else ``b``; ``good`` is (K,), on the device."""
        return torch.where(self.keep(good), a, b)

    def views(self, flat: torch.Tensor, like: list[torch.Tensor]) -> list[torch.Tensor]:
        """Tensors shaped and strided as ``like``, backed by ``flat``."""
        return [flat.as_strided(t.size(), t.stride(), flat.storage_offset() + off) for t, off in zip(like, self.offsets)]

    def holds(self, tensors: list[torch.Tensor], flat: torch.Tensor) -> bool:
        """Whether ``tensors`` are ``views(flat, ...)`` (then ``flat`` is their gather, without copying)."""
        return (len(tensors) == len(self.sizes) and flat.numel() == self.total
                and all(t.untyped_storage().data_ptr() == flat.untyped_storage().data_ptr() for t in tensors))
