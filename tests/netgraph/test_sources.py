"""Model sources: ``torchvision:NAME`` and ``timm:NAME`` next to the zoo and user factories."""

import json
import random
import socket
import sys

import numpy as np
import pytest
import torch

import netgraph
from netgraph import sources, zoo
from netgraph.errors import InvalidInputError

torchvision = pytest.importorskip("torchvision")
timm = pytest.importorskip("timm")


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_split_names_by_source():
    assert sources.split("torchvision:resnet50") == ("torchvision", "resnet50")
    assert sources.split("timm:vit_tiny_patch16_224.augreg_in21k") == ("timm", "vit_tiny_patch16_224.augreg_in21k")
    assert sources.split("resnet20") == (None, "resnet20")
    assert sources.split("tests.models:tiny_mlp") == (None, "tests.models:tiny_mlp")
    with pytest.raises(InvalidInputError, match="no name after timm:"):
        zoo.build("timm:")


def test_names_per_source():
    assert "resnet20" in zoo.names() and zoo.names() == zoo.names("zoo")
    tv = zoo.names("torchvision")
    assert tv == torchvision.models.list_models(module=torchvision.models) and "resnet50" in tv
    assert "fasterrcnn_resnet50_fpn" not in tv  # classification models only
    assert "convnext_atto" in zoo.names("timm")
    with pytest.raises(InvalidInputError, match="unknown model source"):
        zoo.names("keras")


def test_torchvision_model_num_classes_shape_and_spec():
    model, shape, spec = zoo.load_model("torchvision:resnet18", num_classes=10, seed=3)
    assert model.fc.out_features == 10 and shape == (3, 224, 224)
    assert spec == {"name": "torchvision:resnet18", "input_shape": [3, 224, 224], "seed": 3, "num_classes": 10}
    assert zoo.load_model("torchvision:resnet18")[2]["num_classes"] == 1000
    assert zoo.input_shape("torchvision:inception_v3") == (3, 299, 299)
    assert zoo.input_shape("torchvision:vit_b_16") == (3, 224, 224)
    _, shape, spec = zoo.load_model("torchvision:squeezenet1_1", input_shape="3,96,96")
    assert shape == (3, 96, 96) and spec["input_shape"] == [3, 96, 96]


def test_timm_model_num_classes_and_input_shape_from_its_config():
    model, shape, spec = zoo.load_model("timm:convnext_atto", num_classes=7)
    assert model.num_classes == 7 and model.get_classifier().out_features == 7
    assert spec["num_classes"] == 7 and shape == (3, 224, 224)
    for name, size in [("mobilevit_xxs", 256), ("tf_efficientnetv2_b0", 192), ("inception_v3", 299)]:
        assert zoo.input_shape(f"timm:{name}") == (3, size, size)
    model, shape, spec = zoo.load_model("timm:mobilevit_xxs")
    assert shape == tuple(timm.data.resolve_data_config(model=model)["input_size"])
    assert spec["num_classes"] == 1000


def test_timm_tag_selects_its_configuration():
    model, _, spec = zoo.load_model("timm:resnet18.a1_in1k")
    assert spec["num_classes"] == 1000 and model.num_classes == 1000
    with pytest.raises(InvalidInputError, match="no configuration tag 'nope'.*list_pretrained"):
        zoo.load_model("timm:resnet18.nope")


def test_nothing_is_downloaded(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("a model source tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    for name in ("timm:resnet18", "timm:vit_tiny_patch16_224.augreg_in21k", "torchvision:mobilenet_v3_small"):
        zoo.load_model(name)
    with pytest.raises(InvalidInputError, match="download a configuration"):
        zoo.build("timm:hf-hub:timm/resnet18.a1_in1k")


@pytest.mark.parametrize("name", ["torchvision:resnet18", "timm:convnext_atto", "resnet20"])
def test_same_seed_same_weights_and_global_rng_untouched(name):
    torch.manual_seed(123)
    state, py_state, np_state = torch.get_rng_state(), random.getstate(), np.random.get_state()
    a = zoo.build(name, seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    assert random.getstate() == py_state and np.array_equal(np.random.get_state()[1], np_state[1])
    b = zoo.build(name, seed=5)
    c = zoo.build(name, seed=6)
    assert _same_weights(a, b)
    assert not _same_weights(a, c)
    assert torch.equal(torch.get_rng_state(), state)


def test_recorded_spec_rebuilds_the_same_model_and_graph():
    model, g = zoo.graph_of("torchvision:resnet18", num_classes=10, seed=2)
    spec = g.model_spec
    assert spec == {"name": "torchvision:resnet18", "input_shape": [3, 224, 224], "seed": 2, "num_classes": 10}
    again, g2 = zoo.graph_of(json.loads(json.dumps(spec)))  # as read back from a mask file
    assert _same_weights(model, again) and g2.model_spec == spec
    assert g2.num_weights == g.num_weights == sum(p.numel() for p in model.parameters() if p.dim() > 1)
    assert _same_weights(model, zoo.build(spec))
    assert zoo.load_model(spec, seed=3)[2]["seed"] == 3  # arguments override the dict
    for call in (zoo.load_model, zoo.build):
        with pytest.raises(InvalidInputError, match="needs a 'name'"):
            call({"seed": 1})


def test_zoo_and_user_models_take_num_classes():
    assert zoo.build("resnet20", num_classes=100).fc.out_features == 100
    assert zoo.build("mlp", num_classes=4)[-1].out_features == 4
    _, _, spec = zoo.load_model("vgg11", num_classes=100)
    assert spec == {"name": "vgg11", "input_shape": [3, 32, 32], "seed": 0, "num_classes": 100}
    assert "num_classes" not in zoo.load_model("vgg11")[2]  # zoo default: spec unchanged
    assert zoo.build("tests.models:mlp", num_classes=None)[-1].out_features == 3
    with pytest.raises(InvalidInputError, match="does not take num_classes"):
        zoo.build("tests.models:tiny_mlp", num_classes=3)
    with pytest.raises(InvalidInputError, match="no default input shape"):
        zoo.input_shape("tests.models:tiny_mlp")


@pytest.mark.parametrize("bad", [0, -2, "ten", 2.5, True])
def test_num_classes_must_be_a_positive_integer(bad):
    with pytest.raises(InvalidInputError, match="num_classes must be a positive integer"):
        zoo.build("torchvision:resnet18", num_classes=bad)


@pytest.mark.parametrize("name,pattern", [
    ("torchvision:resnet5", r"unknown torchvision model 'resnet5' \(did you mean .*resnet50.*names\('torchvision'\)"),
    ("timm:convnext_attoo", r"unknown timm model 'convnext_attoo' \(did you mean convnext_atto.*names\('timm'\)"),
    ("torchvision:fasterrcnn_resnet50_fpn", "not a classification model"),
    ("vgg1000", r"unknown model 'vgg1000'.*torchvision:NAME"),
])
def test_unknown_names_say_how_to_list_the_models(name, pattern):
    for call in (zoo.build, zoo.input_shape, zoo.load_model):
        with pytest.raises(InvalidInputError, match=pattern) as err:
            call(name)
        assert "\n" not in str(err.value)


@pytest.mark.parametrize("package", ["torchvision", "timm"])
def test_missing_package_says_what_to_install(monkeypatch, package):
    monkeypatch.setitem(sys.modules, package, None)  # makes `import package` raise ImportError
    for call in (lambda: zoo.build(f"{package}:resnet18"), lambda: zoo.input_shape(f"{package}:resnet18"),
                 lambda: zoo.names(package)):
        with pytest.raises(InvalidInputError, match=rf"needs the package {package}.*pip install 'netgraph-pai\[models\]'"):
            call()


def test_broken_package_install_is_one_clear_line(monkeypatch):
    def broken(name, *args):
        raise RuntimeError("operator torchvision::nms does not exist\nmore details")

    monkeypatch.setattr(sources.importlib, "import_module", broken)
    with pytest.raises(InvalidInputError, match="torchvision is installed but fails to import .*nms") as err:
        zoo.build("torchvision:resnet18")
    assert "\n" not in str(err.value)


def test_a_torchvision_model_prunes_and_its_masks_apply():
    model, g = zoo.graph_of("torchvision:resnet18", num_classes=10)
    ms = netgraph.sparsify(model, "random", 0.1, seed=0, graph=g)
    assert ms.meta["model"] == g.model_spec
    ms.apply(zoo.load_model(ms.meta["model"])[0])
