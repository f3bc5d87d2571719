"""The ``analysis`` package under a name that no module of yours can shadow.

``import analysis`` finds a file ``analysis.py`` in your working directory before this
project's package. ``import netgraph_analysis as analysis`` always finds the project's:
this module loads the ``analysis/`` folder installed beside ``netgraph`` as a package of
its own name (every module inside it imports its siblings relatively). Use one of the two
names in a program, not both (each would hold its own copy of the metric table).
"""

import importlib.util
import os
import sys

_HERE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "analysis")
_spec = importlib.util.spec_from_file_location(__name__, os.path.join(_HERE, "__init__.py"),
                                               submodule_search_locations=[_HERE])
_module = importlib.util.module_from_spec(_spec)
sys.modules[__name__] = _module
_spec.loader.exec_module(_module)
