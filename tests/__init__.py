"""The test suite mirrors the packages: ``tests/netgraph`` (core), ``tests/analysis`` (metrics),
``tests/analysis/experiments`` and ``tests/analysis/cli``; ``models`` and ``reference`` are the
small test networks and the independent autograd references they share."""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
