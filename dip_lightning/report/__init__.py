"""The one report for any sweep folder (``scripts/collect.py``): jobs, group statistics over seeds,
the paper's column for a suite, curves, an image grid and a self-contained HTML page."""
