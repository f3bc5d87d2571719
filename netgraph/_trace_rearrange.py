"""Rearrangements (view, reshape, permute, transpose, flatten, squeeze, getitem, cat,
split, chunk, channel shuffle...) as index maps between units.

The operation is run on a tensor holding each element's channel id (constants joined to
the signal, such as a class token, are -1), and the ids of the result say which channel of
which input every output channel is. Concatenation, split and channel permutation thus
become weight-1 edges from the units that hold each channel; a layout that is not
channels-first, channels-last or a flat run-per-channel tensor (the 5-d view inside a
channel shuffle) is kept as an intermediate id tensor that only rearrangements may read.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.fx.node import map_arg

from ._trace_values import _Term, _Tuple, _Value


# -- rearrangements through channel ids --------------------------------------------------------

def _ids(c, v: _Value, offset: int, shape) -> torch.Tensor:
    if v.raw is not None:
        return (v.raw + offset).contiguous()
    ids = torch.arange(v.n, dtype=torch.float64) + offset
    if v.flat_k != 1:
        return ids.repeat_interleave(v.flat_k).reshape(1, -1)
    view = [1] * v.ndim
    view[v.cdim] = v.n
    return ids.reshape(view).expand(*shape).contiguous() if shape is not None else ids.reshape(view)


def rearrange(c, node, x, sig):
    """Run the operation on channel-id tensors; the result's ids are an index map."""
    b = c.b
    inputs = [a for a in node.all_input_nodes if c.is_signal(a)]
    small = _channel_op(c, node, inputs)
    ids, terms, total = {}, [], 0
    for a in inputs:
        v = c.val(a)
        items = v.items if isinstance(v, _Tuple) else [v]
        shapes = c.shape(a) if isinstance(v, _Tuple) else [c.shape(a)]
        tensors = []
        for item, shp in zip(items, shapes or [None] * len(items)):
            if item.last_only:
                c.fail(node, "softmax output rearranged")
            for t in b.map_terms(item, a.name):
                terms.append(_Term(src=t.src, scale=t.scale, src_units=t.src_units, dst_units=t.dst_units + total))
            if small:  # the op only moves channels: run it on 1-pixel maps (fast)
                shp = (1, item.n) + (1,) * len(item.spatial)
            tensors.append(_ids(c, item, total, shp))
            total += item.n
        ids[a] = tuple(tensors) if isinstance(v, _Tuple) else tensors[0]
    def arg(a):
        if a in ids:
            return ids[a]
        v = c.const(a)
        if isinstance(v, torch.Tensor) and v.is_floating_point():
            # a constant tensor joined to the signal (a class token): no unit, id -1
            return torch.full(v.shape, -1.0, dtype=torch.float64)
        return v

    args = map_arg(node.args, arg)
    kwargs = map_arg(node.kwargs, arg)
    with torch.no_grad():
        if node.op == "call_module":
            out = c.module(node)(*args, **kwargs)
        elif node.op == "call_function":
            out = node.target(*args, **kwargs)
        else:
            out = getattr(args[0], node.target)(*args[1:], **kwargs)
    if isinstance(out, (tuple, list)):
        vals = [_decode(c, node, o, terms, total) for o in out]
        if small:
            vals = [v.with_(spatial=tuple(shp[2:])) for v, shp in zip(vals, c.shape(node))]
        return _Tuple(vals)
    v = _decode(c, node, out, terms, total)
    return v.with_(spatial=tuple(c.shape(node)[2:])) if small else v


_CHANNEL_OPS = {torch.cat: 0, torch.concat: 0, torch.concatenate: 0, torch.split: 0, torch.chunk: 0,
                "split": 0, "chunk": 0}


def _channel_op(c, node, inputs) -> bool:
    """Whether ``node`` is a cat/split/chunk along dimension 1 of channels-first maps."""
    if node.target not in _CHANNEL_OPS:
        return False
    names = ["tensors", "dim"] if node.target in (torch.cat, torch.concat, torch.concatenate) else ["input", "arg", "dim"]
    a = c.bind(node, names, {"dim": 0})
    vals = []
    for i in inputs:
        v = c.val(i)
        vals.extend(v.items if isinstance(v, _Tuple) else [v])
    if not vals or any(v.raw is not None or v.flat_k != 1 or v.channels_last for v in vals):
        return False
    nd = vals[0].ndim
    return isinstance(a["dim"], int) and a["dim"] % nd == 1 and all(v.ndim == nd for v in vals)


def _layout(o: torch.Tensor):
    """``(channel ids, spatial, flat_k, channels_last)`` of an id tensor, or None."""
    if o.dim() < 2 or o.shape[0] != 1:
        return None
    o = o[0]
    if o.dim() == 1:
        if o.numel() == 0:
            return None
        change = torch.nonzero(o[1:] != o[:-1]).flatten() + 1
        starts = torch.cat([torch.zeros(1, dtype=torch.long), change])
        lengths = torch.diff(torch.cat([starts, torch.tensor([o.numel()])]))
        heads = o[starts]
        if bool((lengths == lengths[0]).all()) and heads.unique().numel() == heads.numel():
            return heads, (), int(lengths[0]), False
        return None
    first = _constant_rows(o.reshape(o.shape[0], -1))
    if first is not None:
        return first, tuple(o.shape[1:]), 1, False
    last = _constant_rows(o.reshape(-1, o.shape[-1]).T)
    if last is not None:
        return last, tuple(o.shape[:-1]), 1, True
    return None


def merged_layout(o: torch.Tensor):
    """``(channel ids, spatial, lead)`` of an id tensor whose dimension 0 folds positions
    (windows) into the batch and whose channels are last, else None (see
    :mod:`netgraph._trace_windows`)."""
    if o.dim() < 2 or o.shape[0] == 1 or o.numel() == 0:
        return None
    row = _constant_rows(o.reshape(-1, o.shape[-1]).T)
    return None if row is None else (row, tuple(o.shape[1:-1]), int(o.shape[0]))


def _constant_rows(m: torch.Tensor):
    """The value of each row if every row is constant apart from -1 entries (constants), else None."""
    row = m.max(dim=1).values
    if bool(((m == row[:, None]) | (m < 0)).all()):
        return row
    return None


def _decode(c, node, out, terms, total):
    b = c.b
    if not isinstance(out, torch.Tensor):
        c.fail(node, "the result is not a tensor")
    lay, lead = _layout(out), 1
    if lay is None and (merged := merged_layout(out)) is not None:  # windows folded into the batch
        idx, spatial, lead = merged
        lay = idx, spatial, 1, True
    if lay is None:  # an intermediate layout (the 5-d view of a channel shuffle, MobileViT's unfold)
        if out.dim() < 2 and (out.dim() < 1 or out.shape[0] != 1):
            c.fail(node, "the operation moves the batch dimension")
        return _Value(n=total, spatial=tuple(out.shape[1:]), terms=terms, raw=out, lead=int(out.shape[0]))
    idx, spatial, flat_k, last = lay
    idx = idx.long().numpy()
    new = []
    for t in terms:
        inv = np.full(total, -1, dtype=np.int64)
        inv[t.dst_units] = np.arange(t.dst_units.size)
        tk = np.where(idx >= 0, inv[np.maximum(idx, 0)], -1)
        keep = tk >= 0
        if keep.any():
            sel = tk[keep]
            new.append(_Term(src=t.src, scale=None if t.scale is None else t.scale[sel],
                             src_units=t.src_units[sel], dst_units=np.flatnonzero(keep)))
    n = idx.size
    v = _Value(n=n, spatial=spatial, flat_k=flat_k, channels_last=last and bool(spatial), terms=new, lead=lead)
    if len(new) == 1:
        t = new[0]
        if t.dst_units.size == n == b.groups[t.src].size and np.array_equal(t.src_units, np.arange(n)):
            return v.with_(group=t.src, terms=None, scale=t.scale)
    return v
