"""The ``netgraph`` command line (the top layer: it may import every other layer).

* ``main``: the click group; ``common``: shared options, errors and output;
* ``model_commands``: models, graph, methods, metrics, prune, analyze;
* ``experiment_commands``: compare, reproduce, sweep, demo.
"""

from .main import main

__all__ = ["main"]
