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

import hashlib
import json
import os
import socket
import sqlite3
import time
import traceback
from dataclasses import dataclass, field, fields
from functools import lru_cache

import pandas as pd

from netgraph import __version__, zoo
from netgraph._validate import check_density
from netgraph.data import DIGITS_SHAPES
from netgraph.errors import InvalidInputError, NetgraphError

from .compare import LIST_COLUMNS, layer_columns, parse_method
from .training import TrainConfig

KEYS = {"name", "models", "methods", "densities", "seeds", "data", "max_flow", "save_masks", "train"}

METRICS = [
    "kept", "total", "density", "effective", "dead", "effective_fraction", "effective_density",
    "collapsed_layers", "inputs_connected", "outputs_connected", "connected", "bottleneck_width",
    "bottleneck_layer", "bottleneck_fraction", "mean_width_fraction", "min_vertex_cut", "log10_paths",
    "log10_synflow_R", "log10_R2", "log10_path_kernel_trace", "path_entropy", "log10_effective_paths",
    "edge_disjoint_paths",
]
TRAIN_METRICS = ["test_acc", "final_train_loss"]
COLUMNS = (
    ["run_hash TEXT PRIMARY KEY", "sweep TEXT", "model TEXT", "method TEXT", "base_method TEXT", "options TEXT",
     "target_density REAL", "seed INTEGER", "config TEXT", "status TEXT", "error TEXT"]
    + [f"{m} {'TEXT' if m == 'bottleneck_layer' else 'REAL'}" for m in METRICS]
    + [f"{m} REAL" for m in TRAIN_METRICS]
    + ["layers TEXT", "curves TEXT", "mask_path TEXT", "seconds REAL", "measure_seconds REAL",
       "train_seconds REAL", "library_version TEXT", "worker TEXT", "finished TEXT"]
)


class SweepConfigError(InvalidInputError):
    """A sweep config that cannot run; the message names the bad entry."""


@dataclass
class Run:
    model: dict
    label: str
    method: str
    options: dict
    density: float
    seed: int
    data: str | None
    max_flow: bool
    train: dict | None
    masks_dir: str | None
    sweep: str = ""

    def spec(self) -> dict:
        return {"model": self.model, "method": self.method, "options": self.options, "density": self.density,
                "seed": self.seed, "data": self.data, "max_flow": self.max_flow, "train": self.train}

    def header(self) -> dict:
        """The identity columns of this run's row."""
        return {"run_hash": self.hash, "sweep": self.sweep, "model": self.model["name"], "method": self.label,
                "base_method": self.method, "options": json.dumps(self.options, sort_keys=True),
                "target_density": self.density, "seed": self.seed,
                "config": json.dumps(self.spec(), sort_keys=True), "library_version": __version__}

    @property
    def hash(self) -> str:
        return hashlib.sha256(json.dumps(self.spec(), sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class SweepConfig:
    name: str
    models: list
    methods: list
    densities: list
    seeds: list
    data: str | None = None
    max_flow: bool = True
    save_masks: bool = True
    train: dict | None = None
    source: str = ""
    runs: list = field(default_factory=list)

    def expand(self, out_dir: str) -> list:
        masks_dir = os.path.join(out_dir, "masks") if self.save_masks else None
        return [Run(m, label, name, opts, d, s, self.data, self.max_flow, self.train, masks_dir, self.name)
                for m in self.models for s in self.seeds for label, name, opts in self.methods for d in self.densities]


def _load_file(path: str) -> dict:
    if not os.path.isfile(path):
        raise SweepConfigError(f"sweep config {path}: no such file")
    text = open(path, encoding="utf-8").read()
    if path.endswith(".toml"):
        try:
            import tomllib
        except ImportError:  # Python 3.10
            raise SweepConfigError(f"sweep config {path}: TOML needs Python 3.11+ (tomllib); use YAML") from None
    try:
        if path.endswith(".toml"):
            raw = tomllib.loads(text)
        else:
            import yaml

            raw = yaml.safe_load(text)
    except Exception as exc:  # yaml/toml syntax errors carry line numbers
        raise SweepConfigError(f"sweep config {path} is malformed: {exc}") from None
    if not isinstance(raw, dict):
        raise SweepConfigError(f"sweep config {path} must be a mapping with keys {sorted(KEYS)}")
    return raw


def load_config(path_or_dict, source: str = "config") -> SweepConfig:
    """Read and validate a sweep config; every problem is reported before any run starts."""
    if isinstance(path_or_dict, dict):
        raw, src = dict(path_or_dict), source
    else:
        src = str(path_or_dict)
        raw = _load_file(src)

    def bad(where, why):
        raise SweepConfigError(f"sweep config {src}: {where}: {why}")

    unknown = sorted(set(raw) - KEYS)
    if unknown:
        bad(", ".join(unknown), f"unknown key(s); accepted: {', '.join(sorted(KEYS))}")
    for key in ("models", "methods", "densities"):
        if not raw.get(key) or not isinstance(raw[key], list):
            bad(key, "must be a non-empty list")
    models = []
    for i, m in enumerate(raw["models"]):
        spec = {"name": m} if isinstance(m, str) else m
        if not isinstance(spec, dict) or "name" not in spec or set(spec) - {"name", "input_shape"}:
            bad(f"models[{i}]", f"expected a name or {{name, input_shape}}, got {m!r}")
        try:
            if ":" in spec["name"]:
                zoo.load_model(spec["name"], spec.get("input_shape"))
                shape = tuple(zoo.parse_input_shape(spec["input_shape"]))
            else:
                shape = zoo.input_shape(spec["name"]) if spec.get("input_shape") is None else \
                    zoo.parse_input_shape(spec["input_shape"])
        except NetgraphError as exc:
            bad(f"models[{i}] ({spec['name']})", str(exc))
        models.append({"name": spec["name"], "input_shape": list(shape)})
    methods = []
    for i, m in enumerate(raw["methods"]):
        try:
            if isinstance(m, dict):
                if "name" not in m or set(m) - {"name", "options", "label"}:
                    bad(f"methods[{i}]", f"expected {{name, options, label}}, got {m!r}")
                opts = m.get("options") or {}
                label = m.get("label") or (m["name"] + (":" + ",".join(f"{k}={v}" for k, v in opts.items())
                                                        if opts else ""))
                methods.append(parse_method((label, m["name"], opts)))
            else:
                methods.append(parse_method(m))
        except SweepConfigError:
            raise
        except NetgraphError as exc:
            bad(f"methods[{i}] ({m!r})", str(exc))
    densities = []
    for i, d in enumerate(raw["densities"]):
        try:
            densities.append(check_density(d))
        except NetgraphError as exc:
            bad(f"densities[{i}]", str(exc))
    seeds = raw.get("seeds", 1)
    if isinstance(seeds, bool) or not (isinstance(seeds, int) and seeds >= 1 or
                                       isinstance(seeds, list) and seeds and all(isinstance(s, int) for s in seeds)):
        bad("seeds", f"must be a positive count or a list of integers, got {seeds!r}")
    seeds = list(range(seeds)) if isinstance(seeds, int) else seeds
    data = raw.get("data")
    if data not in (None, "random", "digits"):
        bad("data", f"must be 'random' or 'digits', got {data!r}")
    from netgraph.sparsifiers import get

    needs = [label for label, name, _ in methods if get(name).needs_data]
    if needs and data is None:
        bad("data", f"methods {needs} need data: add data: random or data: digits")
    train = raw.get("train")
    if train is not None:
        if train is True:
            train = {}
        if not isinstance(train, dict):
            bad("train", f"must be a mapping of training settings, got {train!r}")
        allowed = {f.name for f in fields(TrainConfig)}
        extra = sorted(set(train) - allowed)
        if extra:
            bad("train", f"unknown setting(s) {extra}; accepted: {sorted(allowed)}")
        for m in models:
            if tuple(m["input_shape"]) not in DIGITS_SHAPES:
                bad("train", f"training uses the digits data (8x8 images); model {m['name']} takes "
                             f"{tuple(m['input_shape'])}")
        train = TrainConfig(**train).as_dict()
    for key in ("max_flow", "save_masks"):
        if not isinstance(raw.get(key, True), bool):
            bad(key, f"must be true or false, got {raw[key]!r}")
    name = str(raw.get("name") or os.path.splitext(os.path.basename(src))[0])
    return SweepConfig(name, models, methods, densities, seeds, data, raw.get("max_flow", True),
                       raw.get("save_masks", True), train, src)


# -- one run (executes on a worker) -------------------------------------------------------


@lru_cache(maxsize=8)
def _graph(name: str, shape: tuple, seed: int):
    return zoo.graph_of(name, shape, seed)


def execute(run: Run) -> dict:
    """Build, save, measure (and train) one run; never raises: failures become rows."""
    os.environ.setdefault("NETGRAPH_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    row = {**run.header(), "worker": f"{socket.gethostname()}:{os.getpid()}"}
    try:
        import analysis
        from netgraph.data import digits, prune_batch
        from netgraph.sparsifiers import get, sparsify

        from .training import train

        net, g = _graph(run.model["name"], tuple(run.model["input_shape"]), run.seed)
        data = prune_batch(run.data, g, run.seed) if get(run.method).needs_data else None
        t0 = time.perf_counter()
        masks = sparsify(net, run.method, run.density, run.seed, graph=g, data=data, **run.options)
        row["seconds"] = time.perf_counter() - t0
        if run.masks_dir:
            os.makedirs(run.masks_dir, exist_ok=True)
            path = os.path.join(run.masks_dir, f"{run.hash}.pt")
            masks.save(path)
            row["mask_path"] = path
        t1 = time.perf_counter()
        from netgraph.masked import as_masked

        mg = as_masked(g, masks)
        rec = analysis.measure(g, mg, max_flow=run.max_flow)
        row["layers"] = json.dumps(layer_columns(g, mg))
        row["measure_seconds"] = time.perf_counter() - t1
        row.update({k: rec.get(k) for k in METRICS})
        if run.train is not None:
            res = train(net, masks, digits(tuple(run.model["input_shape"])), TrainConfig(**run.train), run.seed)
            row.update({"test_acc": res["final_test_acc"], "final_train_loss": res["final_train_loss"],
                        "train_seconds": res["seconds"],
                        "curves": json.dumps({"loss_curve": res["train_loss"], "acc_curve": res["test_acc"]})})
        row["status"] = "done"
    except Exception as exc:  # recorded, and the grid goes on
        row["status"] = "failed"
        row["error"] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}"
    row["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    return row


# -- the results database ---------------------------------------------------------------


def connect(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(f"CREATE TABLE IF NOT EXISTS runs ({', '.join(COLUMNS)})")
    db.commit()
    return db


def _sql_value(v):
    if isinstance(v, float) and v != v:
        return None
    if hasattr(v, "item"):
        return v.item()
    return v


def record(db: sqlite3.Connection, row: dict) -> None:
    """Insert or replace one run's row and commit (the single writer)."""
    names = [c.split()[0] for c in COLUMNS]
    vals = [_sql_value(row.get(n)) for n in names]
    db.execute(f"INSERT OR REPLACE INTO runs ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})", vals)
    db.commit()


def recorded(db: sqlite3.Connection) -> dict:
    return dict(db.execute("SELECT run_hash, status FROM runs").fetchall())


def read_sweep(path) -> pd.DataFrame:
    """The ``runs`` table of a sweep (directory or ``.sqlite`` file) as a DataFrame.

    Layer lists and training curves are expanded into list columns, so the table feeds
    :mod:`analysis.plots` and :func:`analysis.write_comparison` directly.
    """
    db_path = os.path.join(path, "results.sqlite") if os.path.isdir(path) else path
    if not os.path.isfile(db_path):
        raise InvalidInputError(f"{db_path}: no sweep results here")
    with sqlite3.connect(db_path) as db:
        df = pd.read_sql_query("SELECT * FROM runs ORDER BY model, method, target_density DESC, seed", db)
    for col, keys in (("layers", LIST_COLUMNS), ("curves", ("loss_curve", "acc_curve"))):
        parsed = df[col].map(lambda s: json.loads(s) if isinstance(s, str) else {})
        for k in keys:
            df[k] = parsed.map(lambda d, k=k: d.get(k))
    return df


# -- the driver -------------------------------------------------------------------------


@dataclass
class SweepResult:
    directory: str
    total: int
    skipped: int
    done: int
    failed: int
    seconds: float


def run_sweep(config, out_dir: str | None = None, *, resume: bool = False, retry_failed: bool = False,
              workers: int = 2, scheduler: str | None = None, progress: bool = False,
              report: bool = True) -> SweepResult:
    """Run (or resume) a sweep; see the module docstring.

    Raises
    ------
    SweepConfigError
        For a bad config (before any run starts).
    InvalidInputError
        If ``out_dir`` already holds results and ``resume`` is false.
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
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump({"name": cfg.name, "source": cfg.source, "models": cfg.models,
                   "methods": [list(m) for m in cfg.methods], "densities": cfg.densities, "seeds": cfg.seeds,
                   "data": cfg.data, "max_flow": cfg.max_flow, "train": cfg.train}, f, indent=2)
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
    finally:
        bar.close()
        db.close()
    if report:
        df = read_sweep(out_dir)
        ok = df[df["status"] == "done"]
        if len(ok):
            from .compare import write_comparison

            write_comparison(ok, out_dir, formats=("png",), command=f"netgraph sweep {cfg.source}")
    return SweepResult(out_dir, len(runs), skipped, done, failed, time.perf_counter() - t0)


def _dispatch(todo, handle, workers: int, scheduler: str | None) -> None:
    """Run ``execute`` over ``todo`` on Dask; ``handle`` each row as it completes."""
    from dask.distributed import Client, LocalCluster, as_completed

    if scheduler:
        client, cluster = Client(scheduler), None
    else:
        if workers < 1:
            raise InvalidInputError(f"workers must be at least 1, got {workers}")
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                               host="127.0.0.1", env={"NETGRAPH_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"})
        client = Client(cluster)
    try:
        futures = {client.submit(execute, run, key=f"run-{run.hash}", pure=False): run for run in todo}
        for fut in as_completed(futures):
            try:
                row = fut.result()
            except Exception as exc:  # a worker died: record the run as failed
                row = {**futures[fut].header(), "status": "failed", "error": f"{type(exc).__name__}: {exc}"}
            handle(row)
            fut.release()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
