"""``python -m analysis.cli``: the ``netgraph`` command."""

from .main import main

main(prog_name="netgraph")
