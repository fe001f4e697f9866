#!/usr/bin/env python
"""Benchmark the DIP training step: Lightning vs a bare PyTorch loop vs the original eager fp32 way.

    python scripts/benchmark.py --task denoise --net skip --size 256 --device cpu --threads 2 --json out.json
    python scripts/benchmark.py --quick --json /tmp/bench.json          # all the fields in seconds
    python scripts/benchmark.py --device cuda --precision bf16-mixed --compile --channels-last

Prints a table and writes the results as JSON (``--json OUT``). The work is done by
``dip_lightning.bench`` (importable: ``from dip_lightning.bench.cli import main; main([...])``).
"""
from __future__ import annotations

import sys
from pathlib import Path

try:
    from dip_lightning.bench.cli import main
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from dip_lightning.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
