"""Independent random streams from one ``seed``.

A run draws from four streams: the network's initialisation (torch's global generator, seeded
with ``seed`` itself), the observation (the noise realisation or the mask), the input z, and the
input jitter ε of every step. Seeding two ``torch.Generator``s with the same number makes them
draw the same values (the jitter of step 1 would be the denoising noise, value for value), so the
observation and jitter streams get seeds derived from (seed, stream) by NumPy's ``SeedSequence``.
"""
from __future__ import annotations

import numpy as np

#: stream name -> its key in the derivation (never reuse a key: that would merge two streams)
STREAMS = {"observation": 1, "jitter": 2, "physics": 3, "noise": 4, "langevin": 5, "selfguided": 6, "selfguided_noise": 7,
           "tile_input": 8, "holdout": 9, "input": 10}  # physics/noise: of the observation seed


def stream_seed(seed: int, stream: str) -> int:
    """A 63-bit seed for ``stream``, a function of (seed, stream) only."""
    entropy = [int(seed) & 0xFFFFFFFFFFFFFFFF, STREAMS[stream]]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
