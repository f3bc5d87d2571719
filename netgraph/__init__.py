"""netgraph: sparse neural-network topologies at initialization, as graph algorithms.

The data path reads in one direction: model -> graph -> flows -> mask -> torch.

>>> import netgraph
>>> model = netgraph.zoo.build("mlp", seed=0)
>>> g = netgraph.from_torch(model, netgraph.zoo.input_shape("mlp"))
>>> g.num_weights
266200
"""

from ._version import __version__
from .errors import (
    InvalidInputError,
    MaskMismatchError,
    NetgraphError,
    NotAMaskFileError,
    UnsupportedModelError,
)
from .graph import Layer, NetGraph, Shortcut, UnitGroup
from .trace import from_torch
from .export import load_masks
from .masks import MaskSet
from . import flows, zoo
from .sparsifiers import sparsify

__all__ = [
    "__version__",
    "from_torch",
    "flows",
    "zoo",
    "MaskSet",
    "load_masks",
    "sparsify",
    "NetGraph",
    "Layer",
    "Shortcut",
    "UnitGroup",
    "NetgraphError",
    "InvalidInputError",
    "MaskMismatchError",
    "NotAMaskFileError",
    "UnsupportedModelError",
]
