"""Masks for every runtime: safetensors, parametrize, reading masks back, sparse modules."""

import json

import numpy as np
import pytest
import torch
import torch.nn as nn

import netgraph
from netgraph import MaskSet, export, zoo
from netgraph.errors import MaskMismatchError, NotAMaskFileError
from netgraph.masks import FORMAT_VERSION
from tests import models as M


@pytest.fixture(scope="module")
def r20_masks():
    model, g = zoo.graph_of("resnet20")
    return model, netgraph.sparsify(g, "phew", 0.05, seed=0)


def _same(a, b):
    return list(a) == list(b) and all(torch.equal(a[n], b[n]) and a[n].dtype == torch.bool for n in a)


@pytest.mark.parametrize("first,second", [(".pt", ".safetensors"), (".safetensors", ".pt"),
                                          (".safetensors", ".safetensors")])
def test_file_round_trips_across_formats(r20_masks, tmp_path, first, second):
    _, ms = r20_masks
    export.save(ms, tmp_path / f"a{first}")
    a = export.load(tmp_path / f"a{first}")
    export.save(a, tmp_path / f"b{second}")
    b = export.load(tmp_path / f"b{second}")
    assert _same(ms, a) and _same(ms, b)
    assert b.meta["method"] == "phew" and b.meta["seed"] == 0 and b.meta["kept"] == ms.num_kept


def test_safetensors_file_is_readable_without_netgraph(r20_masks, tmp_path):
    from safetensors import safe_open

    _, ms = r20_masks
    export.save_safetensors(ms, tmp_path / "m.safetensors")
    with safe_open(str(tmp_path / "m.safetensors"), framework="pt") as f:
        meta = json.loads(f.metadata()["netgraph_meta"])
        assert set(f.keys()) == set(ms)
        assert torch.equal(f.get_tensor("fc.weight"), ms["fc.weight"])
    assert meta["method"] == "phew"


@pytest.mark.parametrize("how", ["prune", "parametrize", "multiply"])
def test_apply_then_read_back_is_identical_and_saves_identically(r20_masks, tmp_path, how):
    _, ms = r20_masks
    model = zoo.build("resnet20", seed=0)
    ms.apply(model, how=how)
    back = export.masks_from_model(model, ms.meta)
    assert _same(ms, back)
    export.save(back, tmp_path / "x.safetensors")
    assert _same(ms, export.load(tmp_path / "x.safetensors"))


def test_parametrize_is_trainable_and_removable():
    torch.manual_seed(0)
    model = M.mlp((6, 5, 3))
    g = netgraph.from_torch(model, (6,))
    ms = netgraph.sparsify(g, "random", 0.4, seed=0)
    export.apply_parametrize(model, ms)
    assert isinstance(model[1].parametrizations.weight.original, nn.Parameter)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    model(torch.randn(8, 6)).square().sum().backward()
    grad = model[1].parametrizations.weight.original.grad
    assert torch.all(grad[~ms["1.weight"]] == 0)
    opt.step()
    assert torch.all(model[1].weight[~ms["1.weight"]] == 0)
    export.remove_parametrize(model)
    assert not hasattr(model[1], "parametrizations") or "weight" not in model[1].parametrizations
    assert torch.all(model[1].weight[~ms["1.weight"]] == 0)
    assert _same(export.masks_from_model(model), ms)


def test_one_reader_tells_the_formats_apart_by_content(r20_masks, tmp_path):
    """``load_masks``, ``export.load`` and PHEW's ``init_mask`` (a str or a path object) read
    either format whatever the name: a safetensors file named ``.pt``, a torch file named
    ``.safetensors``; ``export.save`` reads the suffix in any case."""
    model, ms = r20_masks
    export.save_safetensors(ms, tmp_path / "s.safetensors")
    (tmp_path / "s.safetensors").rename(tmp_path / "s.pt")
    ms.save(tmp_path / "t.safetensors")  # (torch.save writes any name)
    export.save(ms, tmp_path / "u.SAFETENSORS")
    for name in ("s.pt", "t.safetensors", "u.SAFETENSORS"):
        assert _same(ms, netgraph.load_masks(tmp_path / name)) and _same(ms, export.load(tmp_path / name))
    assert export._format(str(tmp_path / "u.SAFETENSORS")) == "safetensors"
    g = zoo.graph_of("resnet20")[1]
    for start in (str(tmp_path / "s.pt"), tmp_path / "t.safetensors"):
        grown = netgraph.sparsify(g, "phew", 0.08, seed=1, init_mask=start)
        assert all(bool((grown[n] | ~ms[n]).all()) for n in ms)  # the start mask is kept


def test_errors(tmp_path, r20_masks):
    (tmp_path / "bad.safetensors").write_bytes(b"not a file")
    with pytest.raises(NotAMaskFileError, match="neither a torch file .zip or pickle. nor a safetensors file"):
        export.load(tmp_path / "bad.safetensors")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(NotAMaskFileError, match="is not a mask file: it is empty"):
        netgraph.load_masks(tmp_path / "empty.pt")
    with pytest.raises(NotAMaskFileError, match="cannot read it"):
        export.load(tmp_path)  # a folder
    with pytest.raises(NotAMaskFileError, match="no such file"):
        export.load(tmp_path / "none.safetensors")
    _, ms = r20_masks
    with pytest.raises(MaskMismatchError, match="does not cover|shape"):
        export.apply_parametrize(zoo.build("vgg11"), ms)


@pytest.mark.parametrize("density", [0.3, 0.01])
def test_to_sparse_gives_the_same_outputs(density):
    torch.manual_seed(0)
    for model, shape in ((M.mlp((30, 40, 20, 5)), (30,)), (M.Residual1x1().eval(), M.RESIDUAL_INPUT)):
        g = netgraph.from_torch(model, shape)
        ms = netgraph.sparsify(g, "random", density, seed=0)
        ms.apply(model, how="parametrize")
        sparse = export.to_sparse(model)
        n_sparse = sum(isinstance(m, (export.SparseLinear, export.SparseConv1x1)) for m in sparse.modules())
        assert n_sparse == len(g.layers)
        x = torch.randn(4, *shape)
        with torch.no_grad():
            assert torch.allclose(sparse(x), model(x), atol=1e-5)


def test_to_sparse_leaves_other_convs_dense():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 5, 1, stride=2), nn.Flatten(), nn.Linear(5 * 2 * 2, 2))
    sparse = export.to_sparse(model)
    kinds = [type(m).__name__ for m in sparse]
    assert kinds == ["Conv2d", "SparseConv1x1", "Flatten", "SparseLinear"]
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        assert torch.allclose(sparse(x), model(x), atol=1e-5)


@pytest.mark.parametrize("how", ["prune", "parametrize", "multiply"])
def test_to_sparse_after_every_apply_mode(how):
    """``apply``'s default mode (torch's pruning: a computed ``weight``, which deepcopy refuses)
    failed with a RuntimeError."""
    torch.manual_seed(0)
    model = M.mlp((30, 40, 20, 5))
    ms = netgraph.sparsify(model, "random", 0.2, input_shape=(30,), seed=0)
    ms.apply(model, how=how)
    x = torch.randn(4, 30)
    with torch.no_grad():
        before = model(x)
        assert torch.allclose(export.to_sparse(model)(x), before, atol=1e-5)
        assert torch.equal(model(x), before)  # the model itself is unchanged


class _MHA(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Conv1d(3, 4, 1)
        self.attn = nn.MultiheadAttention(4, 2, batch_first=True)
        self.head = nn.Linear(4, 2)

    def forward(self, x):  # (batch, 3 channels, 5 positions)
        h = self.embed(x).transpose(1, 2)
        return self.head(self.attn(h, h, h, need_weights=False)[0].mean(1))


@pytest.mark.parametrize("how", ["prune", "parametrize", "multiply"])
def test_masks_read_back_include_attention_input_projections(how):
    torch.manual_seed(0)
    model = _MHA()
    ms = netgraph.sparsify(model, "random", 0.5, input_shape=(3, 5), seed=0, offpath="magnitude")
    assert "attn.in_proj_weight" in ms
    ms.apply(model, how=how)
    back = export.masks_from_model(model)
    assert list(back) == list(ms) and all(torch.equal(back[k], ms[k]) for k in ms)


@pytest.mark.parametrize("how", ["prune", "parametrize", "multiply"])
def test_every_method_prunes_a_model_already_masked_and_leaves_it_as_it_was(how):
    """Iterative pruning: SNIP, GraSP and pixel-level SynFlow read parameters by name, which
    a pruned (``weight_orig``) or parametrized model renames; they raised a KeyError, and a
    parametrized model was broken by the copy's clean-up (its class is shared)."""
    from netgraph.sparsifiers import names

    torch.manual_seed(0)
    model = M.mlp((12, 8, 6, 3))
    first = netgraph.sparsify(model, "random", 0.5, input_shape=(12,), seed=0)
    first.apply(model, how=how)
    x, y = torch.randn(10, 12), torch.randint(0, 3, (10,))
    with torch.no_grad():
        before = model(x)
    runs = [(m, {}) for m in names()] + [("synflow", {"level": "pixel", "iterations": 5})]
    for method, opts in runs:
        again = netgraph.sparsify(model, method, 0.25, input_shape=(12,), seed=0, data=(x, y), **opts)
        assert set(again) == set(first), method
        if method not in ("random", "expander", "npb"):  # (these ignore the weights' values)
            assert all(bool((again[k] <= first[k]).all()) for k in first), method  # pruned weights are zero
    with torch.no_grad():
        assert torch.equal(model(x), before)
    assert type(model[1]).__name__ == ("ParametrizedLinear" if how == "parametrize" else "Linear")


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_the_same_masks_give_the_same_bytes(tmp_path, suffix):
    """Mask files held the time they were written and the method's seconds: two runs of the
    same command gave files of the same masks but different bytes."""
    model = zoo.build("resnet20", seed=0)
    runs = [netgraph.sparsify(model, "synflow", 0.05, seed=0, input_shape=(3, 32, 32), iterations=5) for _ in "ab"]
    assert all("seconds" in ms.meta for ms in runs)  # (kept in memory)
    for i, ms in enumerate(runs):
        (tmp_path / str(i)).mkdir()
        export.save(ms, tmp_path / str(i) / f"m{suffix}")
    a, b = ((tmp_path / str(i) / f"m{suffix}").read_bytes() for i in range(2))
    assert a == b
    back = export.load(tmp_path / "0" / f"m{suffix}")
    assert not set(MaskSet.TIME_DEPENDENT) & set(back.meta) and back.meta["format"] == "netgraph-masks/1"


def test_safetensors_files_of_the_first_layout_still_read_in_their_order(tmp_path):
    from safetensors.torch import save_file

    masks = {"b.weight": torch.ones(2, 3, dtype=torch.bool), "a.weight": torch.zeros(3, 2, dtype=torch.bool)}
    save_file(masks, str(tmp_path / "old.safetensors"),
              metadata={export.META_KEY: json.dumps({"method": "random"}),
                        export.ORDER_KEY: json.dumps(["b.weight", "a.weight"])})
    back = export.load(tmp_path / "old.safetensors")
    assert list(back) == ["b.weight", "a.weight"] and back.meta["method"] == "random"


def _write_with_format(path, fmt, masks):
    """A mask file of either format (by ``path``'s suffix) whose metadata says ``format: fmt`` (None: no entry)."""
    from safetensors.torch import save_file

    meta = {"method": "hand"} if fmt is None else {"method": "hand", "format": fmt}
    if str(path).endswith(".safetensors"):
        save_file(masks, str(path), metadata={export.META_KEY: json.dumps(meta)})
    else:
        torch.save({"masks": masks, "meta": meta}, path)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_a_mask_file_of_a_newer_format_is_refused_in_one_line(tmp_path, suffix):
    """A file of format ``netgraph-masks/N``, ``N`` newer than this code writes, was read silently;
    every reader refuses it, naming both versions, before looking at its tensors (a newer format
    may store them otherwise). An equal or older format, or none, reads as before."""
    masks = {"a.weight": torch.ones(2, 3, dtype=torch.bool), "b.weight": torch.zeros(3, dtype=torch.bool)}
    newer = FORMAT_VERSION + 1
    readers = [netgraph.load_masks, export.load, MaskSet.load if suffix == ".pt" else export.load_safetensors]
    for tensors in (masks, {n: t.to(torch.uint8) for n, t in masks.items()}):
        path = tmp_path / f"newer{suffix}"
        _write_with_format(path, f"netgraph-masks/{newer}", tensors)
        for read in readers:
            with pytest.raises(NotAMaskFileError) as err:
                read(path)
            assert str(err.value) == (f"{path}: mask file format {newer} is newer than this netgraph reads "
                                      f"(format {FORMAT_VERSION} and older); upgrade netgraph")
    for i, fmt in enumerate((f"netgraph-masks/{FORMAT_VERSION}", "netgraph-masks/0", None)):
        path = tmp_path / f"read{i}{suffix}"
        _write_with_format(path, fmt, masks)
        for read in readers:
            back = read(path)
            assert _same(back, masks) and back.meta.get("format") == fmt and back.meta["method"] == "hand"


def _typed(value):
    """``value`` with the type of every part: equal only if equal with equal types (True == 1, not so here)."""
    if isinstance(value, dict):
        return dict, {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return list, [_typed(v) for v in value]
    return type(value), value


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_numpy_metadata_reads_back_as_plain_python_in_both_formats(tmp_path, suffix):
    """numpy scalars and arrays in the metadata came back as numbers and lists from a torch file
    but as strings (``"3"``, ``"True"``, ``"[1 0]"``) from a safetensors file; both formats now
    read them back as Python ints, floats, bools and lists, and write the same bytes as for
    the plain values."""
    masks = {"w": torch.eye(2, dtype=torch.bool)}
    numpy_meta = {"f": np.float64(0.25), "i": np.int64(7), "b": np.bool_(True), "a": np.array([[1, 0], [0, 1]]),
                  "nested": {"x": np.float64(1.5), "y": [np.int64(2), np.bool_(False)]},
                  "l": [np.float64(0.5), 3, "s", np.array([0.5, 2.0])]}
    plain_meta = {"f": 0.25, "i": 7, "b": True, "a": [[1, 0], [0, 1]], "nested": {"x": 1.5, "y": [2, False]},
                  "l": [0.5, 3, "s", [0.5, 2.0]]}
    export.save(MaskSet(masks, numpy_meta), tmp_path / f"numpy{suffix}")
    export.save(MaskSet(masks, plain_meta), tmp_path / f"plain{suffix}")
    back = export.load(tmp_path / f"numpy{suffix}").meta
    assert _typed({k: back[k] for k in numpy_meta}) == _typed(plain_meta)
    assert (tmp_path / f"numpy{suffix}").read_bytes() == (tmp_path / f"plain{suffix}").read_bytes()
