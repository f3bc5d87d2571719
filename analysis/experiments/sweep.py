"""Resumable experiment grids: a config file, SQLite results, Dask execution.

A sweep is a grid ``models x methods x densities x seeds`` (optionally with training),
described by a YAML or TOML file::

    name: resnet20-grid
    models: [resnet20]                       # zoo names, or {name: pkg.mod:factory, input_shape: [3, 32, 32]}
    methods: [phew, synflow, "phew:bias=uniform", {name: phew, options: {bias: inverse}}]
    densities: [0.1, 0.05, 0.02, 0.01]
    seeds: 3                                 # a count (0..n-1) or a list
    data: digits                             # for snip/grasp: random | digits
    max_flow: true                           # compute the max-flow metrics
    save_masks: true                         # write every mask under <dir>/masks/
    train: {epochs: 20, lr: 0.1}             # optional: train each mask on digits

Each run builds its mask, saves it, measures it with :func:`analysis.measure`, trains it
if asked, and becomes one row of the ``runs`` table of ``<dir>/results.sqlite``: the run's
config and its hash, every metric, timings, library version, mask file path, status and
error text. Only the coordinating process writes the database (one row per finished run,
committed at once, WAL journal), so a crash or a kill loses at most the runs in flight;
``resume=True`` skips the runs already recorded (failed runs only with
``retry_failed=True``).

Runs execute on Dask distributed: a local cluster of ``workers`` processes by default, or
a running cluster at ``scheduler`` (then the sweep directory must be on a filesystem the
workers share, or ``save_masks: false``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
import warnings
import socket
import time
import traceback
from dataclasses import dataclass, field

from netgraph.errors import InvalidInputError

from .run import LIST_COLUMNS, model_graph, run_one
from .sweep_config import Run, SweepConfig, SweepConfigError, load_config
from .sweep_db import connect, first_errors, get_meta, read_sweep, record, recorded, set_meta
from .training import TrainConfig

__all__ = ["run_sweep", "load_config", "read_sweep", "execute", "Run", "SweepConfig", "SweepConfigError",
           "SweepResult"]


def execute(run: Run) -> dict:
    """Build, save, measure (and train) one run; never raises: failures become rows."""
    os.environ.setdefault("NETGRAPH_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    row = {**run.header(), "worker": f"{socket.gethostname()}:{os.getpid()}"}
    try:
        from netgraph.data import digits, prune_batch
        from netgraph.sparsifiers import get

        from .training import train

        built = model_graph(run.model["name"], tuple(run.model["input_shape"]), run.seed,
                            run.model.get("num_classes"))
        data = prune_batch(run.data, built[1], run.seed, model=built[0]) if get(run.method).needs_data else None
        res = run_one(run.model["name"], (run.label, run.method, run.options), run.density, run.seed, data=data,
                      max_flow=run.max_flow, built=built)
        out = dict(res.row)
        layers = {k: out.pop(k) for k in LIST_COLUMNS}
        for k in ("model", "method", "base_method", "target_density", "seed"):
            out.pop(k)  # the header's identity columns stand
        row.update(out)
        row["layers"] = json.dumps(layers)
        if run.masks_dir:
            os.makedirs(run.masks_dir, exist_ok=True)
            path = os.path.join(run.masks_dir, f"{run.hash}.pt")
            res.masks.save(path)
            row["mask_path"] = path
        if run.train is not None:
            tr = train(built[0], res.masks, digits(tuple(run.model["input_shape"]), model=built[0]), TrainConfig(**run.train),
                       run.seed)
            row.update({"test_acc": tr["final_test_acc"], "final_train_loss": tr["final_train_loss"],
                        "train_seconds": tr["seconds"],
                        "curves": json.dumps({"loss_curve": tr["train_loss"], "acc_curve": tr["test_acc"]})})
        row["status"] = "done"
    except Exception as exc:  # recorded, and the grid goes on
        row["status"] = "failed"
        row["error"] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}"
    row["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    return row


# -- the driver -------------------------------------------------------------------------


@dataclass
class SweepResult:
    """What a sweep did: run counts, time, and the first errors of failed runs.

    ``failed`` counts the runs that failed in this call; ``errors`` lists
    ``(method, target_density, seed, first error line)`` of the first failed runs recorded.
    """

    directory: str
    total: int
    skipped: int
    done: int
    failed: int
    seconds: float
    errors: list = field(default_factory=list)


def run_sweep(config, out_dir: str | None = None, *, resume: bool = False, retry_failed: bool = False,
              workers: int = 2, scheduler: str | None = None, progress: bool = False,
              report: bool = True, force: bool = False) -> SweepResult:
    """Run (or resume) a sweep; see the module docstring.

    A resumed sweep must have the configuration it started with (its hash is stored in
    the database): ``force=True`` continues anyway, adding the new grid's runs to the
    same database.

    Raises
    ------
    SweepConfigError
        For a bad config (before any run starts).
    InvalidInputError
        If ``out_dir`` already holds results and ``resume`` is false, or the configuration
        changed since the sweep started and ``force`` is false.
    """
    cfg = config if isinstance(config, SweepConfig) else load_config(config)
    out_dir = out_dir or os.path.join(os.path.dirname(os.path.abspath(cfg.source or ".")), f"{cfg.name}-sweep")
    os.makedirs(out_dir, exist_ok=True)
    db = connect(os.path.join(out_dir, "results.sqlite"))
    have = recorded(db)
    if have and not resume:
        db.close()
        raise InvalidInputError(
            f"{out_dir} already holds {len(have)} recorded runs; pass resume (--resume) to continue that sweep "
            "or choose another directory")
    stored = get_meta(db, "config_hash")
    if stored is not None and stored != cfg.hash and not force:
        db.close()
        raise InvalidInputError(
            f"{out_dir} holds a sweep of another configuration (hash {stored}, this one {cfg.hash}); resume it with "
            "its own config, choose another directory, or force (--force) to add this grid to the same database")
    set_meta(db, "config_hash", cfg.hash)
    set_meta(db, "config", json.dumps(cfg.grid(), sort_keys=True))
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump({**cfg.grid(), "source": cfg.source}, f, indent=2)
    runs = cfg.expand(out_dir)
    todo = [r for r in runs if have.get(r.hash) != "done" and (retry_failed or have.get(r.hash) != "failed")]
    skipped = len(runs) - len(todo)
    t0 = time.perf_counter()
    done = failed = 0
    from tqdm.auto import tqdm

    bar = tqdm(total=len(runs), initial=skipped, desc=f"sweep {cfg.name}", disable=not progress)

    def handle(row):
        nonlocal done, failed
        record(db, row)
        done += row["status"] == "done"
        failed += row["status"] == "failed"
        bar.update(1)
        bar.set_postfix(finished=done, failed=failed, remaining=len(todo) - done - failed)

    try:
        if todo:
            _dispatch(todo, handle, workers, scheduler)
        errors = first_errors(db)
    finally:
        bar.close()
        db.close()
    if report:
        df = read_sweep(out_dir)
        ok = df[df["status"] == "done"]
        if len(ok):
            from .compare import write_comparison

            write_comparison(ok, out_dir, formats=("png",), command=f"netgraph sweep {cfg.source}")
    return SweepResult(out_dir, len(runs), skipped, done, failed, time.perf_counter() - t0, errors)


WORKER_LOG_ENV = "DASK_LOGGING__DISTRIBUTED"


#: Scheduler addresses of the clusters :func:`local_cluster` runs in this process.
_LOCAL_CLUSTERS: set = set()


@contextlib.contextmanager
def local_cluster(workers: int):
    """A local Dask cluster whose worker processes ignore Ctrl-C; yields its scheduler address.

    A terminal sends SIGINT to every process of the foreground group, so each worker would
    print its own traceback. The workers are started while SIGINT is ignored (a disposition
    child processes inherit), then the coordinator's handler is restored: Ctrl-C raises
    :class:`KeyboardInterrupt` here only, and leaving the context shuts the workers down
    without their shutdown warnings. ``run_sweep`` uses it when no scheduler is given; the
    CLI enters it itself, to catch Ctrl-C around the whole sweep.
    """
    from dask.distributed import LocalCluster

    log = logging.getLogger("distributed")
    level = log.level  # restored once the cluster is down (a client closed mid-run silences it until then)
    in_main = threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main else None
    # the worker processes log at CRITICAL only (a run's failure is recorded in its row; a worker
    # killed at shutdown is expected): they read DASK_* variables when they start
    saved_env = os.environ.get(WORKER_LOG_ENV)
    os.environ[WORKER_LOG_ENV] = "critical"
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Port .* is already in use")  # another cluster's port
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                                   host="127.0.0.1", env={"NETGRAPH_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"})
    finally:
        if in_main:
            signal.signal(signal.SIGINT, old)
        if saved_env is None:
            os.environ.pop(WORKER_LOG_ENV, None)
        else:
            os.environ[WORKER_LOG_ENV] = saved_env
    _LOCAL_CLUSTERS.add(cluster.scheduler_address)
    try:
        yield cluster.scheduler_address
    finally:
        log.setLevel(logging.CRITICAL)  # a worker killed mid-run is expected here
        try:
            cluster.close()
        finally:
            _LOCAL_CLUSTERS.discard(cluster.scheduler_address)
            log.setLevel(level)


def _dispatch(todo, handle, workers: int, scheduler: str | None) -> None:
    """Run ``execute`` over ``todo`` on Dask; ``handle`` each row as it completes."""
    from dask.distributed import Client, as_completed

    if not scheduler and workers < 1:
        raise InvalidInputError(f"workers must be at least 1, got {workers}")
    log = logging.getLogger("distributed")
    level = log.level
    with contextlib.ExitStack() as stack:
        address = scheduler or stack.enter_context(local_cluster(workers))
        client = Client(address)
        try:
            futures = {client.submit(execute, run, key=f"run-{run.hash}", pure=False): run for run in todo}
            for fut in as_completed(futures):
                try:
                    row = fut.result()
                except Exception as exc:  # a worker died: record the run as failed
                    row = {**futures[fut].header(), "status": "failed", "error": f"{type(exc).__name__}: {exc}"}
                handle(row)
                fut.release()
        finally:  # closing with runs in flight (Ctrl-C) logs their forgotten keys, until the cluster is down
            log.setLevel(logging.CRITICAL)
            client.close()
            if address not in _LOCAL_CLUSTERS:  # (a local cluster's exit restores the level once it is down)
                log.setLevel(level)
