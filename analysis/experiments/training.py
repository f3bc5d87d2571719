"""A small, seeded, deterministic training harness for masked models on CPU.

Masks are applied with ``torch.nn.utils.prune`` (``MaskSet.apply``), so pruned weights
stay zero through SGD with momentum and weight decay; the harness checks that they did.
Single-threaded torch and a seeded shuffling generator make runs repeatable bit for bit.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from netgraph.errors import InvalidInputError
from netgraph.masks import copy_model


#: The optimisers :class:`TrainConfig` takes.
OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class TrainConfig:
    """An optimiser with a cosine learning-rate schedule; SGD with Nesterov momentum by default.

    ``optimizer`` is ``"sgd"`` (uses ``momentum`` and ``nesterov``) or ``"adam"`` (PyTorch's
    Adam, ``weight_decay`` as L2; ``momentum`` and ``nesterov`` unused).
    """

    epochs: int = 40
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = True
    optimizer: str = "sgd"

    def __post_init__(self):
        """Every setting checked when the config is made (a sweep's before its first run)."""
        import math
        from numbers import Integral, Real

        def bad(key, want):
            raise InvalidInputError(f"training setting {key} must be {want}, got {getattr(self, key)!r}")

        for key in ("epochs", "batch_size"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, Integral) or v < 1:
                bad(key, "a whole number >= 1")
        for key, low, high, shown in (("lr", 0.0, math.inf, "a finite number > 0"),
                                      ("momentum", 0.0, 1.0, "a number in [0, 1)"),
                                      ("weight_decay", 0.0, math.inf, "a finite number >= 0")):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, Real) or not math.isfinite(v) or not low <= v < high \
                    or (key == "lr" and v == 0):
                bad(key, shown)
        if not isinstance(self.nesterov, bool):
            bad("nesterov", "true or false")
        if self.optimizer not in OPTIMIZERS:
            bad("optimizer", f"one of {', '.join(OPTIMIZERS)}")

    def as_dict(self) -> dict:
        """The settings; ``optimizer`` only when not ``"sgd"``, so that the hashes of sweep
        configurations written before the field existed stay the same."""
        d = asdict(self)
        if d["optimizer"] == "sgd":
            del d["optimizer"]
        return d


def evaluate(model, x, y, batch_size: int = 1024) -> tuple:
    """``(mean cross-entropy, accuracy)`` of ``model`` on ``(x, y)`` in eval mode."""
    model.eval()
    loss, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            out = model(x[i:i + batch_size])
            loss += float(F.cross_entropy(out, y[i:i + batch_size], reduction="sum"))
            correct += int((out.argmax(1) == y[i:i + batch_size]).sum())
    return loss / len(x), correct / len(x)


def train(model, masks, data, config: TrainConfig = TrainConfig(), seed: int = 0) -> dict:
    """Train a copy of ``model`` with ``masks`` applied; return the curves.

    Parameters
    ----------
    model : torch.nn.Module
        Left untouched (a copy is trained).
    masks : MaskSet or None
        Applied with ``torch.nn.utils.prune`` (``None``: dense).
    data : tuple
        ``(x_train, y_train, x_test, y_test)`` tensors.
    config : TrainConfig
    seed : int
        Seeds the batch order and any randomness in the model (dropout).

    Returns
    -------
    dict
        ``train_loss`` (mean training loss of each epoch, index 0 = before training, on the
        whole training set), ``test_acc`` (after each epoch), ``final_test_acc``,
        ``final_train_loss``, ``seconds``.
    """
    if len(data) != 4:
        raise InvalidInputError("data must be (x_train, y_train, x_test, y_test)")
    xtr, ytr, xte, yte = data
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    # Dropout draws from torch's global generator: seed it inside fork_rng, so the caller's
    # random state is the same before and after (no global state changes).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            return _train(model, masks, xtr, ytr, xte, yte, config, seed)
        finally:
            torch.set_num_threads(threads)




def _optimizer(net, config: TrainConfig):
    if config.optimizer == "sgd":
        return torch.optim.SGD(net.parameters(), lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay, nesterov=config.nesterov)
    if config.optimizer == "adam":
        return torch.optim.Adam(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    raise InvalidInputError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {config.optimizer!r}")


def _train(model, masks, xtr, ytr, xte, yte, config: TrainConfig, seed: int) -> dict:
    net = copy_model(model)  # (a model already pruned too)
    if masks is not None:
        masks.apply(net)
    opt = _optimizer(net, config)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    losses = [evaluate(net, xtr, ytr)[0]]
    accs = [evaluate(net, xte, yte)[1]]
    for _ in range(config.epochs):
        net.train()
        perm = torch.randperm(len(xtr), generator=gen)
        total = 0.0
        for i in range(0, len(xtr), config.batch_size):
            idx = perm[i:i + config.batch_size]
            opt.zero_grad()
            loss = F.cross_entropy(net(xtr[idx]), ytr[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        losses.append(total / len(xtr))
        accs.append(evaluate(net, xte, yte)[1])
    if masks is not None:
        for name, m in masks.items():
            mod = net.get_submodule(name.rpartition(".")[0])
            if bool((getattr(mod, name.rpartition(".")[2])[~m.to(torch.bool)] != 0).any()):
                raise RuntimeError(f"pruned weights of {name} moved during training")
    return {"train_loss": losses, "test_acc": accs, "final_test_acc": accs[-1],
            "final_train_loss": losses[-1], "seconds": time.perf_counter() - t0}
