"""The coverage report's text: blockers parsed and ranked, the Markdown tables.

Pure functions over the rows of :func:`analysis.experiments.coverage.run_coverage`.
"""

from __future__ import annotations

import re
from collections import Counter

from ..table import md_cell


def split_blockers(message: str) -> list:
    """The blocker items of an ``UnsupportedModelError`` message.

    The tracer lists every unsupported operation as ``[1] ...; [2] ...``; older messages
    have one item per line.

    >>> split_blockers("cannot build the unit graph of M: 2 unsupported operations: "
    ...                "[1] module 'a' (LSTM) is not supported; [2] function einsum at node 'e' is not supported.")
    ["module 'a' (LSTM) is not supported", "function einsum at node 'e' is not supported"]
    """
    text = message.split(" Supported:")[0].split("\nSupported")[0]
    if re.search(r"\[1\] ", text):
        items = [it.strip(" ;.") for it in re.split(r"(?:^|;\s*)\[\d+\]\s+", text.split("[1] ", 1)[1])]
        return [it for it in items if it]
    items = [ln.strip(" -*\t") for ln in text.splitlines()]
    items = [it for it in items if it and not it.endswith(":")] or [text.strip()]
    return [re.sub(r"^cannot build the unit graph:\s*", "", it) for it in items]


def blocker_key(item: str) -> str:
    """A blocker without its module names and numbers, to count models per kind of blocker."""
    item = split_blockers(item)[0]
    key = re.sub(r"\s*\(after an unsupported operation: may follow from it\)", "", item)
    key = re.sub(r"'[^']*'", "", key)
    key = re.sub(r"(?<!only groups=)\b\d+(\.\d+)?\b", "N", key)
    key = re.sub(r"\(at \)", "", key)
    return re.sub(r"\s+", " ", key).strip(" .")


#: The issue's trace budget: under 5 s, and peak memory under 4x the parameter bytes + 1 GiB.
BUDGET_SECONDS, BUDGET_FACTOR, BUDGET_EXTRA_MB = 5.0, 4, 1024


def over_budget(row) -> list:
    """Why a traced row misses the trace budget (``[]`` if within; ``None`` without the numbers).

    ``peak_mb`` is the whole process's peak (torch and the model included): a conservative test.

    >>> over_budget({"trace_s": 5.1, "peak_mb": 900.0, "param_mb": 10.0})
    ['5.1 s']
    """
    t, peak, params = row.get("trace_s"), row.get("peak_mb"), row.get("param_mb")
    if t is None or peak is None or params is None:
        return None
    why = [f"{t:.3g} s"] if t >= BUDGET_SECONDS else []
    allowed = BUDGET_FACTOR * params + BUDGET_EXTRA_MB
    return why + ([f"peak {peak:.0f} MB of {allowed:.0f}"] if peak >= allowed else [])


def summarize(rows) -> dict:
    """Counts per source and status, blockers ranked by the number of models they stop, and
    per source the traced models within the trace budget (:func:`over_budget`)."""
    per_source = {}
    for r in rows:
        s = per_source.setdefault(r["source"], Counter())
        s["total"] += 1
        s[r["status"]] += 1
    blockers, examples = Counter(), {}
    for r in rows:
        if r["status"] != "unsupported":
            continue
        for key in dict.fromkeys(blocker_key(b) for b in r["blockers"]):
            blockers[key] += 1
            examples.setdefault(key, []).append(f"{r['source']}:{r['name']}")
    budget = {}
    for r in rows:
        why = over_budget(r) if r["status"] == "traced" else None
        if why is not None:
            b = budget.setdefault(r["source"], {"measured": 0, "within": 0, "over": []})
            b["measured"] += 1
            b["within"] += not why
            b["over"] += [f"{r['name']} ({', '.join(why)})"] if why else []
    return {
        "sources": {s: dict(c) for s, c in per_source.items()},
        "budget": budget,
        "blockers": [{"blocker": k, "models": n, "examples": examples[k]} for k, n in blockers.most_common()],
        "bugs": [f"{r['source']}:{r['name']}: {r['blockers'][0]}" for r in rows if r["status"] == "bug"],
    }


def _cell(v, width=None) -> str:
    if v is None:
        return ""
    if isinstance(v, list):
        v = "; ".join(v)
    text = md_cell(v)
    return text if width is None or len(text) <= width else text[: width - 1] + "…"


def to_markdown(rows, summary, header: str = "") -> str:
    """``coverage.md``: summary counts per source, the top blockers, then one table per source."""
    lines = ["# Model coverage of `netgraph.from_torch`", "", header, "",
             "| source | traced | total | unsupported | bug | other failures |", "|---|---|---|---|---|---|"]
    for s, c in summary["sources"].items():
        other = c["total"] - c.get("traced", 0) - c.get("unsupported", 0) - c.get("bug", 0)
        lines.append(f"| {s} | {c.get('traced', 0)} | {c['total']} | {c.get('unsupported', 0)} | "
                     f"{c.get('bug', 0)} | {other} |")
    for s, b in summary.get("budget", {}).items():
        lines += ["", f"Within the issue's trace budget (under {BUDGET_SECONDS:g} s, process peak memory under "
                  f"{BUDGET_FACTOR}x the parameter bytes + {BUDGET_EXTRA_MB} MB): {s} {b['within']} of "
                  f"{b['measured']} traced models" + (f"; over: {', '.join(b['over'])}." if b["over"] else ".")]
    lines += ["", "## Blockers, by number of models they stop", "", "| blocker | models | examples |",
              "|---|---|---|"]
    for b in summary["blockers"]:
        ex = ", ".join(e.split(":", 1)[1] for e in b["examples"][:6]) + (", …" if len(b["examples"]) > 6 else "")
        lines.append(f"| {_cell(b['blocker'], 160)} | {b['models']} | {ex} |")
    if summary["bugs"]:
        lines += ["", "## Bugs (exceptions other than UnsupportedModelError)", ""]
        lines += [f"- {_cell(b, 400)}" for b in summary["bugs"]]
    for source in summary["sources"]:
        lines += ["", f"## {source}", "", "| model | input | status | trace s | peak MB | graph / prunable "
                  "weights | log10 R | blockers |", "|---|---|---|---|---|---|---|---|"]
        for r in (r for r in rows if r["source"] == source):
            name = r["name"] + (f" ({r['family']})" if r.get("family") else "")
            w = (f"{r['graph_weights']:,} / {r['prunable_weights']:,}" if r.get("graph_weights") is not None
                 else (f"- / {r['prunable_weights']:,}" if r.get("prunable_weights") is not None else ""))
            lines.append(f"| {name} | {_cell(r['input_shape'])} | {r['status']} | {_cell(r['trace_s'])} | "
                         f"{_cell(r['peak_mb'])} | {w} | {_cell(r['log10_R'])} | {_cell(r['blockers'], 200)} |")
    return "\n".join(lines) + "\n"
