"""Throughput benchmark of the framework's training step (``scripts/benchmark.py`` is the CLI).

For one task / net / image size / device / precision it measures, warm-up steps excluded, over
several interleaved repeats (the median is reported):

* ``it_per_s``: the real thing. The real ``configs/restore.yaml`` composed with benchmark overrides
  (no logger, progress bar, early stopping or snapshots) goes through ``run()``'s own steps
  (``check``, ``set_up``, ``build``, ``fit``; only the files are not written). The rate is that of
  the run's own ``Throughput`` callback.
* ``bare_it_per_s``: the same module (``run.build``, before any step) and its own
  ``training_step``, in a plain PyTorch loop with no Lightning: the three things the step asks of a
  Trainer (its optimiser, ``manual_backward``, the step count) are given directly, inside the
  autocast Lightning's precision uses. ``lightning_overhead`` = bare / Lightning. (The tests check
  that this loop leaves the module bit-identical to ``trainer.fit``.)
* ``eager_baseline_it_per_s``: the original code's way: the net ``run.build`` makes with compile off,
  NCHW, in fp32, ``torch.optim.Adam(lr=0.01)``, input jitter, mse; no metrics, EMA or backtracking;
  in a spawned interpreter, whose allocator is glibc's default (``run()`` sets this process's:
  ``cpu_malloc``). ``eager_in_process_it_per_s``: the same step in this process, with that setting.
* ``gflop_per_iter`` (forward + backward, ``torch.utils.flop_counter``), achieved ``gflops`` and
  ``conv_peak_gflops`` (the machine's rate on the net's largest convolution, measured here).
* ``conv_floor_it_per_s``: 1 / the summed time of the step's convolutions run alone (forward +
  backward, each in its faster layout) and ``max_speedup_vs_eager`` = that / the eager baseline:
  the ceiling for any step that uses the same conv kernels. With ``--pack K`` also
  ``pack_conv_floor_speedup``: K single nets' conv floor / the grouped net's (packing's ceiling).
* ``peak_mem_mb``: on CPU the process's peak RSS (``ru_maxrss``) through the first Lightning fit,
  interpreter and libraries included; on CUDA ``torch.cuda.max_memory_allocated`` of the fits.
* ``first_run_s`` / ``later_run_s``: wall time of the first and (median) later Lightning fit (build included);
  with ``--compile`` their difference is the compile time.

Files by concern: ``cli`` (arguments, overrides, ``main``), ``driver`` (the repeats and the
fields), ``loops`` (Lightning, bare, eager), ``convs`` (conv peak and floor), ``timing``,
``report`` (the table); ``opcount`` counts a step's ops. Heavy imports (Lightning, Hydra) happen
inside the functions, so ``--help`` and argument errors are instant. The entry point is
``dip_lightning.bench.cli.main`` (``scripts/benchmark.py``).
"""
