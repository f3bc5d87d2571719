"""The results database of a sweep: one SQLite table ``runs``, one row per run.

Columns are the run's identity, every metric of the metric table
(:data:`analysis.table.METRICS`, read when a database is created), training results,
JSON list columns and timings. Only the coordinating process writes (one row per finished
run, committed at once, WAL journal).
"""

from __future__ import annotations

import json
import os
import sqlite3

import pandas as pd

from netgraph._json import plain
from netgraph.errors import InvalidInputError

from ..table import METRICS
from .run import LIST_COLUMNS

TRAIN_METRICS = ["test_acc", "final_train_loss"]


def columns() -> list:
    """``"name TYPE"`` of every column of a new ``runs`` table."""
    return (
        ["run_hash TEXT PRIMARY KEY", "sweep TEXT", "model TEXT", "method TEXT", "base_method TEXT", "options TEXT",
         "target_density REAL", "seed INTEGER", "config TEXT", "status TEXT", "error TEXT"]
        + [f"{m.key} {m.sql_type}" for m in METRICS]
        + [f"{m} REAL" for m in TRAIN_METRICS]
        + ["layers TEXT", "curves TEXT", "mask_path TEXT", "seconds REAL", "measure_seconds REAL",
           "train_seconds REAL", "library_version TEXT", "provenance TEXT", "worker TEXT", "finished TEXT"]
    )


def connect(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(f"CREATE TABLE IF NOT EXISTS runs ({', '.join(columns())})")
    db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
    db.commit()
    return db


def get_meta(db: sqlite3.Connection, key: str):
    """A value of the sweep's ``meta`` table (None when absent)."""
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else row[0]


def set_meta(db: sqlite3.Connection, key: str, value: str) -> None:
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))
    db.commit()


def first_errors(db: sqlite3.Connection, n: int = 3) -> list:
    """``(method, target_density, seed, first line of the error)`` of the first failed runs."""
    rows = db.execute("SELECT method, target_density, seed, error FROM runs WHERE status = 'failed' "
                      "ORDER BY finished LIMIT ?", (n,)).fetchall()
    return [(m, d, s, (e or "").strip().splitlines()[0] if e else "") for m, d, s, e in rows]


def record(db: sqlite3.Connection, row: dict) -> None:
    """Insert or replace one run's row and commit (the single writer)."""
    names = [row[1] for row in db.execute("PRAGMA table_info(runs)")]  # an older database keeps its columns
    vals = [plain(row.get(n), nonfinite="keep") for n in names]
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
