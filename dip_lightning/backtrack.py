"""The collapse guard of the original code: restore the last good step's state.

DIP's denoising recipe (Ulyanov et al. 2018, supplementary) watches PSNR(A(x̂), y) and, when it
drops by more than ``backtrack_db`` from one step to the next, puts the parameters and the
optimiser's moments back to the last good step's. ``Backtracker.update(good, optimizer)`` does
that per fit (``good`` is a length-K bool vector; every packed tensor holds the K fits' blocks
along dim 0) and then keeps the (possibly restored) state as the new snapshot.

Two ways of doing it, equal to the bit (tested):
- CPU (``sync_free=False``): reading ``good`` costs nothing there, so the usual all-good step is
  one fused copy of every tensor into the snapshot.
- GPU (``sync_free=True``): no host read; a handful of kernels over flat copies of all tensors
  (``dip_lightning.flatstate``) select each element from the step or the snapshot.
"""
from __future__ import annotations

import torch

from dip_lightning.flatstate import FlatState


def parameters(optimizer: torch.optim.Optimizer) -> list[torch.nn.Parameter]:
    """The optimiser's parameters, in order (the network's, as ``configure_optimizers`` gave them)."""
    return [p for group in optimizer.param_groups for p in group["params"]]


def state_tensors(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """The parameters' data, then every per-parameter moment of the optimiser (Adam's exp_avg and
    exp_avg_sq, SGD's momentum, …): the state a restore puts back."""
    params = parameters(optimizer)
    out = [p.data for p in params]
    for p in params:
        for key, v in optimizer.state.get(p, {}).items():
            if key != "step" and torch.is_tensor(v) and v.shape == p.shape:
                out.append(v)
    return out


def step_counts(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """The optimiser's per-parameter step counters (Adam's ``step``), when they are tensors."""
    return [st["step"] for p in parameters(optimizer) if torch.is_tensor((st := optimizer.state.get(p, {})).get("step"))]


def like(v: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """``v``'s values in ``p``'s memory layout (``v`` itself when the strides already agree)."""
    return v if v.stride() == p.stride() else torch.empty_like(p).copy_(v)


def match_moment_layouts(optimizer: torch.optim.Optimizer, params) -> None:
    """Every Adam-style moment in the memory layout of its parameter. A checkpoint from a run with
    the other ``memory_format`` keeps its tensors' strides, and fused Adam and the flat backtracking
    select walk memory linearly, so mismatched layouts would pair the wrong elements."""
    for p in params:
        state = optimizer.state.get(p, {})
        for key, v in list(state.items()):
            if torch.is_tensor(v) and v.shape == p.shape:
                state[key] = like(v, p)


class Backtracker:
    """The snapshot of the last good step, and the restore (see the module docstring).

    It is handed the optimiser at every call: the parameters and moments are the optimiser's
    (the gradients of a bad step are zeroed too). ``fits``: K, the number of packed fits.
    """

    def __init__(self, fits: int = 1):
        self.fits = int(fits)
        self.snapshot: list[torch.Tensor] | None = None
        self.steps: list[torch.Tensor] = []  # the step counters at the snapshot
        self._snap_flat: torch.Tensor | None = None
        self._flat_states: dict = {}

    def update(self, good: torch.Tensor, optimizer: torch.optim.Optimizer,
               sync_free: bool | None = None) -> torch.Tensor:
        """Where ``good`` is False restore the snapshot's values; then snapshot the state. Returns
        the fits restored (length K; none on the first call, which has no snapshot yet).
        ``sync_free`` None: on any device but the CPU.

        The first optimiser step creates the moments; before it they were zero and the step count
        0, so the snapshot of that state holds zeros for them. A step counter of length K
        (``dip_lightning.optimizers``) goes back per fit; a shared one (one per tensor) goes back
        when every fit is restored."""
        params, tensors, steps = parameters(optimizer), state_tensors(optimizer), step_counts(optimizer)
        if self.snapshot is None:
            self.snapshot = [t.detach().clone() for t in tensors]
            self.steps, self._snap_flat = [c.detach().clone() for c in steps], None
            return torch.zeros_like(good)
        if len(self.snapshot) != len(tensors):
            if len(self.snapshot) != len(params):  # another optimiser state than the snapshot's: start anew
                self.snapshot = [t.detach().clone() for t in tensors]
                self.steps, self._snap_flat = [c.detach().clone() for c in steps], None
                return torch.zeros_like(good)
            # the moments appeared with the first update: zero in the snapshot's state, the count 0
            self.snapshot = self.snapshot + [torch.zeros_like(t) for t in tensors[len(params):]]
            self.steps, self._snap_flat = [torch.zeros_like(c) for c in steps], None
        if len(self.steps) != len(steps):  # a checkpoint from before the counters were kept
            self.steps = [c.detach().clone() for c in steps]
        if sync_free is None:
            sync_free = good.device.type != "cpu"
        if not sync_free and bool(good.all()):  # the CPU's usual step: two fused copies
            torch._foreach_copy_(self.snapshot, tensors)
            if steps:
                torch._foreach_copy_(self.steps, steps)
            return ~good
        self._restore_steps(good, steps)
        if sync_free and self._update_flat(good, tensors, params):
            return ~good
        masks = [self._keep_mask(good, t) for t in tensors]
        for t, s, keep in zip(tensors, self.snapshot, masks):
            t.copy_(torch.where(keep, t, s))
            s.copy_(t)
        for p, keep in zip(params, masks):  # the first tensors are the parameters
            if p.grad is not None:
                p.grad.copy_(torch.where(keep, p.grad, 0.0))
        return ~good

    def _restore_steps(self, good: torch.Tensor, steps: list[torch.Tensor]) -> None:
        """Step counters back: per fit for a length-K counter, else where every fit is restored;
        then snapshot them. As multi-tensor ops, a few per kind of counter whatever their number:
        saved ← lerp(saved, c, m) with m ∈ {0, 1} (exactly ``where(m, c, saved)``: lerp's two
        branches are saved + 0·d and c − d·0), then c ← saved."""
        if not steps:
            return
        any_good = good.any()
        groups: dict[tuple, tuple[list, list]] = {}
        for i, (c, saved) in enumerate(zip(steps, self.steps)):
            if saved.device != c.device:  # a checkpoint's counters, on the host, for counters now on the GPU
                saved = self.steps[i] = saved.to(c.device)
            if c.device != any_good.device:  # counters on the host, good on the GPU (optim.fused=false):
                continue  # reading good would sync every step; the count goes on
            per_fit = c.shape == good.shape
            live, kept = groups.setdefault((per_fit, c.dtype, tuple(c.shape)), ([], []))
            live.append(c)
            kept.append(saved)
        for (per_fit, dtype, _), (live, kept) in groups.items():
            m = (good if per_fit else any_good).to(dtype)
            torch._foreach_lerp_(kept, live, [m] * len(live))
            torch._foreach_copy_(live, kept)

    def _update_flat(self, good: torch.Tensor, tensors: list[torch.Tensor], params: list[torch.Tensor]) -> bool:
        """The sync-free restore on flat copies of all tensors at once; False where a tensor is not
        dense (the caller then goes tensor by tensor). The snapshot is one flat buffer kept from
        step to step (its tensors are views of it), selected into in place: a gather, a select
        and a scatter for the state, the same for the gradients."""
        grads = [p.grad for p in params]
        state = FlatState.cached(self._flat_states, tensors, self.fits)
        grad_state = FlatState.cached(self._flat_states, grads, self.fits) if all(g is not None for g in grads) else None
        if state is None or (grads and grad_state is None):
            return False
        snap = self._snap_flat
        if snap is None or not state.holds(self.snapshot, snap):  # first time, or a resumed snapshot
            snap = self._snap_flat = state.gather(self.snapshot)
            self.snapshot = state.views(snap, tensors)
        torch.where(state.keep(good), state.gather(tensors, keep=True), snap, out=snap)
        state.scatter(snap, tensors, keep=True)
        if grad_state is not None:
            flat = grad_state.gather(grads)
            flat.masked_fill_(grad_state.keep(~good), 0.0)  # (where(keep, g, 0), NaN included)
            grad_state.scatter(flat, grads)
        return True

    def _keep_mask(self, good: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``good`` (K,) broadcast over a packed tensor whose dim 0 holds the K fits' blocks
        (any memory format: no view of the data is taken)."""
        return good.repeat_interleave(t.shape[0] // self.fits).view(-1, *([1] * (t.dim() - 1)))

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict:
        """What a checkpoint keeps: the snapshot and the step counters at it."""
        return {"snapshot": self.snapshot, "steps": self.steps}

    def load(self, state: dict, device: torch.device) -> None:
        """A checkpoint's ``state()``, on ``device`` (the counters stay where the optimiser keeps them)."""
        snapshot = state.get("snapshot")
        self.snapshot = None if snapshot is None else [t.to(device) for t in snapshot]
        self.steps, self._snap_flat = [c.clone() for c in state.get("steps") or []], None

    def match_layouts(self, optimizer: torch.optim.Optimizer) -> None:
        """The snapshot in the layout of the tensors it stands for (a checkpoint from a run with the
        other ``memory_format`` keeps its strides; the flat select walks memory linearly)."""
        if self.snapshot is None:
            return
        tensors = state_tensors(optimizer)
        if len(tensors) == len(self.snapshot):
            self.snapshot = [like(s, t) for s, t in zip(self.snapshot, tensors)]
            self._snap_flat = None
