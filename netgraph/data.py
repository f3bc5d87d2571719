"""Data that needs no download: seeded Gaussian batches and scikit-learn's bundled digits."""

from __future__ import annotations

import numpy as np
import torch

from ._validate import check_choice
from .errors import InvalidInputError

DIGITS_SHAPES = ((1, 8, 8), (8, 8), (64,))
#: Pruning data the CLI and sweeps can make: Gaussian noise, or scikit-learn digits.
PRUNE_DATA = ("random", "digits")


def random_batch(input_shape, num_classes: int, n: int = 100, seed: int = 0):
    """``n`` standard-normal inputs with uniformly random labels (no real signal)."""
    g = torch.Generator().manual_seed(int(seed))
    x = torch.randn((n, *input_shape), generator=g)
    y = torch.randint(0, int(num_classes), (n,), generator=g)
    return x, y


def digits(input_shape=(1, 8, 8), test_fraction: float = 0.3, seed: int = 0):
    """scikit-learn's 8x8 digits (1,797 images, 10 classes), scaled to [0, 1].

    Returns ``(x_train, y_train, x_test, y_test)`` with a fixed stratified split.
    ``input_shape`` may be ``(1, 8, 8)``, ``(8, 8)`` or ``(64,)``.
    """
    shape = tuple(input_shape)
    if shape not in DIGITS_SHAPES:
        raise InvalidInputError(
            f"the digits data is 8x8 grey images; the model expects input shape {shape}, "
            f"digits fits {', '.join('x'.join(map(str, s)) for s in DIGITS_SHAPES)}"
        )
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    ds = load_digits()
    x = (ds.data / 16.0).astype(np.float32).reshape((-1, *shape))
    y = ds.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)
    return torch.from_numpy(xtr), torch.from_numpy(ytr), torch.from_numpy(xte), torch.from_numpy(yte)


def digits_prune_batch(input_shape=(1, 8, 8), per_class: int = 10, seed: int = 0):
    """``per_class`` training images of each digit (the pruning batch of SNIP/GraSP)."""
    xtr, ytr, _, _ = digits(input_shape, seed=seed)
    rng = np.random.default_rng(seed)
    idx = np.concatenate([rng.choice(np.flatnonzero(ytr.numpy() == c), per_class, replace=False) for c in range(10)])
    return xtr[idx], ytr[idx]


def prune_batch(kind: str, graph, seed: int = 0, samples: int = 100):
    """The pruning batch for data-dependent methods, for a graph's input shape.

    ``kind="random"``: ``samples`` standard-normal inputs with random labels over the
    graph's outputs (no real signal); ``kind="digits"``: ``samples // 10`` training images
    per digit.
    """
    if kind == "random":
        return random_batch(graph.input_shape, graph.output_group.size, samples, seed)
    if kind == "digits":
        return digits_prune_batch(graph.input_shape, per_class=max(1, samples // 10), seed=seed)
    check_choice("data", kind, PRUNE_DATA)


def as_batches(data, input_shape=None):
    """Normalise ``data`` to a list of ``(inputs, labels)`` tensor pairs, validated."""
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        batches = [tuple(data)]
    else:
        try:
            batches = [tuple(b) for b in data]
        except TypeError:
            raise InvalidInputError(
                f"data must be (inputs, labels) tensors or an iterable of such batches, got {type(data).__name__}"
            ) from None
    if not batches:
        raise InvalidInputError("data is empty")
    for b in batches:
        if len(b) < 2 or not all(isinstance(t, torch.Tensor) for t in b[:2]):
            raise InvalidInputError("each batch must be a pair (inputs, labels) of tensors")
        x, y = b[0], b[1]
        if input_shape is not None and tuple(x.shape[1:]) != tuple(input_shape):
            raise InvalidInputError(
                f"data inputs have shape {tuple(x.shape[1:])} per sample, the model expects {tuple(input_shape)}"
            )
        if y.shape[0] != x.shape[0]:
            raise InvalidInputError(f"data has {x.shape[0]} inputs but {y.shape[0]} labels")
    return [(b[0], b[1]) for b in batches]
