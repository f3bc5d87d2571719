"""Sweep configs: read a YAML/TOML file or a dict, validate every entry, expand the grid.

Every problem is reported before any run starts, naming the bad entry (see
:mod:`analysis.experiments.sweep` for the file format).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, fields

from netgraph import __version__, zoo
from netgraph._validate import check_density, check_like
from netgraph.data import DIGITS_SHAPES, PRUNE_DATA
from netgraph.errors import InvalidInputError, NetgraphError
from netgraph.provenance import provenance
from netgraph.sparsifiers import get

from .grid import check_distinct, check_distinct_methods, grid_size, seed_axis
from .run import parse_method
from .training import TrainConfig

KEYS = {"name", "models", "methods", "densities", "seeds", "data", "max_flow", "save_masks", "train"}


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
                "config": json.dumps(self.spec(), sort_keys=True), "library_version": __version__,
                "provenance": json.dumps(provenance(), sort_keys=True)}

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

    def grid(self) -> dict:
        """The grid as plain data (what defines the runs; written to ``config.json``)."""
        return {"name": self.name, "models": self.models, "methods": [list(m) for m in self.methods],
                "densities": self.densities, "seeds": list(self.seeds), "data": self.data, "max_flow": self.max_flow,
                "train": self.train}

    @property
    def hash(self) -> str:
        """A hash of :meth:`grid`: a resumed sweep must have the same."""
        return hashlib.sha256(json.dumps(self.grid(), sort_keys=True).encode()).hexdigest()[:16]

    @property
    def size(self) -> int:
        """The number of runs, counted without building them (models x seeds x methods x densities)."""
        return grid_size(self.models, self.seeds, self.methods, self.densities)

    def iter_runs(self, out_dir: str):
        """The runs one by one, in :meth:`expand`'s order (the first without building the rest)."""
        masks_dir = os.path.join(out_dir, "masks") if self.save_masks else None
        return (Run(m, label, name, opts, d, s, self.data, self.max_flow, self.train, masks_dir, self.name)
                for m in self.models for s in self.seeds for label, name, opts in self.methods for d in self.densities)

    def expand(self, out_dir: str) -> list:
        """Every run of the grid (check :attr:`size` first: a large grid takes memory)."""
        return list(self.iter_runs(out_dir))


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
        if not isinstance(spec, dict) or "name" not in spec or set(spec) - {"name", "input_shape", "num_classes"}:
            bad(f"models[{i}]", f"expected a name or {{name, input_shape, num_classes}}, got {m!r}")
        try:
            # builds the model once: a bad name, factory, shape or class count fails here, before any run
            _, shape, _ = zoo.load_model(spec["name"], spec.get("input_shape"), num_classes=spec.get("num_classes"))
        except NetgraphError as exc:
            bad(f"models[{i}] ({spec['name']})", str(exc))
        models.append({"name": spec["name"], "input_shape": list(shape),
                       **({"num_classes": spec["num_classes"]} if spec.get("num_classes") is not None else {})})
    methods = []
    for i, m in enumerate(raw["methods"]):
        try:
            if isinstance(m, dict):
                if "name" not in m or set(m) - {"name", "options", "label"}:
                    bad(f"methods[{i}]", f"expected {{name, options, label}}, got {m!r}")
                if not isinstance(m["name"], str) or not isinstance(m.get("options") or {}, dict) \
                        or not isinstance(m.get("label") or "", str):
                    bad(f"methods[{i}]", "name and label are strings and options a mapping of option: value, "
                                         f"got {m!r}")
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
    try:
        check_distinct("models", models, keys=[json.dumps(m, sort_keys=True) for m in models],
                       shown=[m["name"] for m in models])
        check_distinct_methods(methods)
        check_distinct("densities", densities)
    except NetgraphError as exc:  # the one rule of repeated values (analysis.experiments.grid)
        raise SweepConfigError(f"sweep config {src}: {exc}") from None
    seeds = raw.get("seeds", 1)
    if not isinstance(seeds, (int, list)):  # (YAML/TOML: a count or a list; seed_axis checks the values)
        bad("seeds", f"must be a positive count or a non-empty list of seeds, got {seeds!r}")
    try:
        seeds = seed_axis(seeds)  # a count stays a range: the grid's size is known without listing it
    except NetgraphError as exc:
        raise SweepConfigError(f"sweep config {src}: {exc}") from None
    data = raw.get("data")
    if data is not None and data not in PRUNE_DATA:
        bad("data", f"must be one of {', '.join(map(repr, PRUNE_DATA))}, got {data!r}")
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
        defaults = {f.name: f.default for f in fields(TrainConfig)}
        for key, value in train.items():
            try:
                check_like(key, value, defaults[key])
            except NetgraphError as exc:
                bad("train", str(exc))
        try:
            train = TrainConfig(**train).as_dict()
        except NetgraphError as exc:
            bad("train", str(exc))
    for key in ("max_flow", "save_masks"):
        if not isinstance(raw.get(key, True), bool):
            bad(key, f"must be true or false, got {raw[key]!r}")
    name = str(raw.get("name") or os.path.splitext(os.path.basename(src))[0])
    if name.strip() in ("", ".", "..") or any(c in name for c in "/\\\0"):  # it names a folder: <name>-sweep
        bad("name", f"must be a file name (it names the sweep's folder, <name>-sweep): no '/', '\\' or NUL, "
                    f"not '.' or '..', got {name!r}")
    return SweepConfig(name, models, methods, densities, seeds, data, raw.get("max_flow", True),
                       raw.get("save_masks", True), train, src)
