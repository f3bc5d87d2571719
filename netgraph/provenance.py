"""Where a result came from: library, torch and numpy versions, git commit, command line.

Recorded in every mask file (``meta["provenance"]``), every sweep row (the ``provenance``
column) and beside every results table (``provenance.json``). Nothing time-dependent is
recorded, so the same inputs still give the same bytes.

>>> p = provenance()
>>> sorted(p)
['command', 'git_commit', 'library_version', 'numpy', 'python', 'torch']
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from functools import lru_cache

from ._version import __version__


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the checkout this library runs from (``+dirty`` with local changes),
    or None when it is installed from a package."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        top = subprocess.run(["git", "-C", here, "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                             timeout=5)
        if top.returncode != 0 or not os.path.isfile(os.path.join(top.stdout.strip(), "netgraph", "__init__.py")):
            return None
        head = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", here, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def command_line() -> str:
    """The command that started this process (``netgraph ...`` or ``python script.py ...``)."""
    argv = list(sys.argv)
    if not argv or argv == [""] or argv[0] in ("-c", "-m"):
        return "python (interactive or -c)"
    prog = os.path.basename(argv[0])
    head = prog if prog == "netgraph" else f"python {argv[0]}"
    return " ".join([head, *map(shlex.quote, argv[1:])])


def provenance(command: str | None = None) -> dict:
    """Versions, git commit and command line of this process, as a plain dict."""
    import numpy
    import torch

    return {"library_version": __version__, "torch": str(torch.__version__), "numpy": numpy.__version__,
            "python": platform.python_version(), "git_commit": git_commit(),
            "command": command or command_line()}
