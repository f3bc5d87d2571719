"""Experiments: everything that runs many masks and writes results.

* ``run``: :func:`run_one`, (model, method, options, density, seed) -> (masks, one row);
  every experiment below is a loop over it.
* ``compare``: grids of methods x densities x seeds -> a table, CSV, summary, figures.
* ``sweep`` (with ``sweep_config`` and ``sweep_db``): resumable grids from a config file,
  SQLite results, Dask execution.
* ``reproduce``: the PHEW paper's claims, measured; ``training``: the seeded training harness.
"""
