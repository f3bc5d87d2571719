"""Data that needs no download: seeded Gaussian batches, scikit-learn's bundled digits, and
MNIST-1D generated offline by the ``mnist1d`` package's own generator (cached as npz)."""

from __future__ import annotations

import hashlib
import json
import os
import random as _random

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


def _floating_dtype(model, default):
    """The dtype of ``model``'s first floating parameter (``default`` without a model or one)."""
    if model is None:
        return default
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), default)


def digits(input_shape=(1, 8, 8), test_fraction: float = 0.3, seed: int = 0, model=None):
    """scikit-learn's 8x8 digits (1,797 images, 10 classes), scaled to [0, 1].

    Returns ``(x_train, y_train, x_test, y_test)`` with a fixed stratified split.
    ``input_shape`` may be ``(1, 8, 8)``, ``(8, 8)`` or ``(64,)``. The images are float32,
    or of ``model``'s floating dtype when it is given.
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
    dtype = _floating_dtype(model, torch.float32)
    return torch.from_numpy(xtr).to(dtype), torch.from_numpy(ytr), torch.from_numpy(xte).to(dtype), torch.from_numpy(yte)


def digits_prune_batch(input_shape=(1, 8, 8), per_class: int = 10, seed: int = 0):
    """``per_class`` training images of each digit (the pruning batch of SNIP/GraSP)."""
    xtr, ytr, _, _ = digits(input_shape, seed=seed)
    rng = np.random.default_rng(seed)
    idx = np.concatenate([rng.choice(np.flatnonzero(ytr.numpy() == c), per_class, replace=False) for c in range(10)])
    return xtr[idx], ytr[idx]


def prune_batch(kind: str, graph, seed: int = 0, samples: int = 100, model=None):
    """The pruning batch for data-dependent methods, for a graph's input shape.

    ``kind="random"``: ``samples`` standard-normal inputs with random labels over the
    graph's outputs (no real signal); ``kind="digits"``: ``samples // 10`` training images
    per digit. The inputs are float32, or of ``model``'s floating dtype when it is given
    (a float64 model is pruned with float64 inputs; the values are the float32 ones).
    """
    check_choice("data", kind, PRUNE_DATA)
    if kind == "random":
        x, y = random_batch(graph.input_shape, graph.output_group.size, samples, seed)
    else:
        x, y = digits_prune_batch(graph.input_shape, per_class=max(1, samples // 10), seed=seed)
    return x.to(_floating_dtype(model, x.dtype)), y


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


#: The MNIST-1D generator's arguments (the package's defaults, ``seed`` 42): 5,000 signals of
#: length 40, split 4,000 / 1,000. Recorded in the cache file and the study's report.
MNIST1D_ARGS = {"num_samples": 5000, "train_split": 0.8, "template_len": 12, "padding": [36, 60],
                "scale_coeff": 0.4, "max_translation": 48, "corr_noise_scale": 0.25, "iid_noise_scale": 2e-2,
                "shear_scale": 0.75, "shuffle_seq": False, "final_seq_length": 40, "seed": 42}


def _generate_mnist1d(args: dict) -> dict:
    """Run ``mnist1d.data.make_dataset`` with ``args``; the global RNG states are restored after."""
    try:
        from mnist1d.data import get_templates, make_dataset
        from mnist1d.utils import ObjectView
    except ImportError:
        raise InvalidInputError("MNIST-1D needs the mnist1d package: pip install 'netgraph-pai[study]'") from None
    np_state, py_state = np.random.get_state(), _random.getstate()
    try:  # make_dataset seeds and draws from numpy's and Python's global generators
        ds = make_dataset(ObjectView(dict(args, url=None)), get_templates())
    finally:
        np.random.set_state(np_state)
        _random.setstate(py_state)
    return {k: np.asarray(ds[k]) for k in ("x", "y", "x_test", "y_test")}


def mnist1d(cache_dir=None, **overrides):
    """MNIST-1D (Greydanus, 2020), generated offline; ``(x_train, y_train, x_test, y_test)``.

    Inputs are float32 of shape ``(n, 1, length)``, labels int64. The generator's arguments
    are :data:`MNIST1D_ARGS` updated with ``overrides`` (e.g. ``num_samples=500``); the
    package's download path is never used. The caller's numpy and ``random`` global states
    are the same before and after.

    Parameters
    ----------
    cache_dir : str, optional
        Where to keep ``mnist1d_<hash of the arguments>.npz`` (read if present, written if
        not); ``None`` generates every time.
    **overrides
        Generator arguments replacing the defaults.
    """
    unknown = sorted(set(overrides) - set(MNIST1D_ARGS))
    if unknown:
        raise InvalidInputError(f"unknown MNIST-1D generator argument(s) {unknown}; known: {', '.join(MNIST1D_ARGS)}")
    args = {**MNIST1D_ARGS, **overrides}
    text = json.dumps(args, sort_keys=True)
    path = None
    if cache_dir is not None:
        path = os.path.join(os.fspath(cache_dir), f"mnist1d_{hashlib.sha256(text.encode()).hexdigest()[:12]}.npz")
    if path is not None and os.path.exists(path):
        with np.load(path) as f:
            arrays = {k: f[k] for k in ("x", "y", "x_test", "y_test")}
    else:
        arrays = _generate_mnist1d(args)
        if path is not None:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            np.savez_compressed(path, args=np.array(text), **arrays)
    xs = [torch.from_numpy(arrays[k].astype(np.float32)[:, None, :]) for k in ("x", "x_test")]
    ys = [torch.from_numpy(arrays[k].astype(np.int64)) for k in ("y", "y_test")]
    return xs[0], ys[0], xs[1], ys[1]


def balanced_batch(x, y, per_class: int, seed: int = 0):
    """``per_class`` samples of each label of ``(x, y)``, drawn with a local seeded generator."""
    labels = y.numpy()
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    counts = np.bincount(labels)[classes]
    if counts.min() < per_class:
        raise InvalidInputError(f"a balanced batch of {per_class} per class needs that many samples of every "
                                f"class; the smallest class has {counts.min()}")
    idx = np.concatenate([rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in classes])
    return x[idx], y[idx]
