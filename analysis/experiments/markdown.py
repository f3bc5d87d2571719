"""Markdown tables of the study and comparison reports: the one writer they share.

Examples
--------
>>> print(table(["a", "b"], [[1, "x"]]))
| a | b |
|---|---|
| 1 | x |
>>> print(records([{"m": "phew", "d": 0.5}], ["m", "d"]))
| m | d |
|---|---|
| phew | 0.5 |
>>> print(table(["metric"], [["sum of |w|"]]))
| metric |
|---|
| sum of \\|w\\| |
"""

from __future__ import annotations

from ..table import md_cell


def table(header, rows) -> str:
    """A Markdown table: ``header`` names, ``rows`` lists of cells (written with ``str``, ``|``
    escaped as ``\\|`` so that a cell such as ``sum of |w|`` stays one cell)."""
    lines = ["| " + " | ".join(map(md_cell, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(md_cell, row)) + " |" for row in rows]
    return "\n".join(lines)


def records(rows, cols) -> str:
    """A table of dict ``rows`` restricted to ``cols``; floats written with ``:g``."""
    return table(cols, [[f"{r[c]:g}" if isinstance(r[c], float) else r[c] for c in cols] for r in rows])


def by_cell(cells, methods, value, name=str) -> str:
    """One row per ``(model, density)`` of ``cells``, one column per method: ``value(model, d, m)``."""
    return table(["model", "density", *methods],
                 [[name(model), f"{d:g}", *(value(model, d, m) for m in methods)] for model, d in cells])


__all__ = ["table", "records", "by_cell"]
