"""The ``netgraph`` command line (the top layer: it may import every other layer).

* ``main``: the click group; ``boundary``: one-line errors and exit statuses, ``--debug``,
  checks of option values made before any work;
* ``common``: shared options and output;
* ``model_commands``: models, graph, methods, metrics, prune, analyze;
* ``experiment_commands``: compare, reproduce, demo; ``sweep_command``: sweep.
"""

from .main import main

__all__ = ["main"]
