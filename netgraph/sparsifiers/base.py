"""What every sparsification method is and receives: :class:`Method` and :class:`Context`.

A method module tags its function with :func:`method`; :mod:`.registry` collects the tagged
functions of the built-in modules (method modules never import the registry).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np


@dataclass
class Context:
    """What a method receives: the graph, the target, the seed and the optional extras.

    Methods write anything worth reporting (walk counts, iterations...) into ``info``;
    it ends up in the mask file's metadata.
    """

    graph: Any
    density: float
    target: int
    seed: int
    model: Any = None
    data: Any = None
    progress: bool = False
    info: dict = field(default_factory=dict)

    def rng(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)


@dataclass(frozen=True)
class Method:
    name: str
    fn: Callable
    options: dict
    description: str
    needs_data: bool = False
    choices: dict = field(default_factory=dict)


def method(name, *, options=None, description="", needs_data=False, choices=None):
    """Decorator declaring ``fn(ctx, **options)`` as the method ``name`` (its spec is ``fn.method_spec``)."""

    def deco(fn):
        fn.method_spec = Method(name, fn, dict(options or {}), description, needs_data, dict(choices or {}))
        return fn

    return deco
