"""The model zoo, tested over the registry: every registered model builds, and its spec's layers
(channels, spatial size) match what a forward pass through the built model gives."""

from __future__ import annotations

import json
import re
import socket
import time

import pytest
import torch
import torchvision.models as tvm
import torchvision.transforms.functional as TF
from torch import nn

from microtome.errors import MicrotomeError, NotFound
from microtome.zoo import get_spec, list_models, load_model
from microtome.zoo.hooks import forward_to, layer_paths, resolve_modules

MODELS = list_models()
NAME = re.compile(r"^[a-z0-9_]+$")


@pytest.fixture(scope="module", params=MODELS)
def random_model(request) -> tuple[nn.Module, object]:
    """One random-weights load per model, shared by the tests that only read it."""
    return load_model(request.param, weights="random")


# ---- specs (no model built) -------------------------------------------------------------
@pytest.mark.parametrize("name", MODELS)
def test_spec_is_consistent(name: str) -> None:
    spec = get_spec(name)
    assert spec.id == name and NAME.match(name)
    ids = spec.layer_ids
    assert len(set(ids)) == len(ids) and all(NAME.match(i) for i in ids)
    assert len({layer.module for layer in spec.layers}) == len(ids)
    assert {x for edge in spec.edges for x in edge} <= set(ids)
    assert len(spec.labels) == 1000 == spec.layers[-1].channels
    for layer in spec.layers:  # canonical id, module path and every alias resolve
        for name_ in (layer.id, layer.module, *layer.aliases):
            assert spec.layer(name_).id == layer.id
    json.dumps(spec.summary())


def test_layer_aliases_and_typos() -> None:
    googlenet = get_spec("googlenet")
    assert googlenet.layer("mixed4c").id == "inception4c"  # Lucid's InceptionV1 names
    assert googlenet.layer("conv2d0").id == "conv1"
    assert get_spec("resnet50").layer("layer3").id == "layer3_5"  # a stage is its last block
    assert get_spec("alexnet").layer("logits").id == "fc8"
    with pytest.raises(NotFound, match="block10"):
        get_spec("efficientnet_lite0").layer("blok10")


def test_unknown_model_lists_close_names() -> None:
    with pytest.raises(NotFound, match="efficientnet_lite0") as info:
        load_model("efficientnet_lite", weights="random")
    assert "efficientnet_lite2" in info.value.suggestions
    with pytest.raises(NotFound, match="googlenet"):
        get_spec("googlenett")


# ---- every registered model, random weights ----------------------------------------------
def test_layers_match_spec_and_pass_gradients(random_model) -> None:
    model, spec = random_model
    paths = {layer.id: layer.module for layer in spec.layers}
    assert set(resolve_modules(model, paths)) == set(paths)
    x = torch.rand(1, 3, spec.input_size, spec.input_size, requires_grad=True)
    acts = forward_to(model, spec.preprocess(x), paths)
    for layer in spec.layers:
        shape = tuple(acts[layer.id].shape)
        expected = [(1, layer.channels, *layer.size)]
        if layer.size == (1, 1):
            expected.append((1, layer.channels))  # flat vector layers
        assert shape in expected, f"{spec.id}/{layer.id}: {shape}, spec says {expected[0]}"
        if layer.kind in ("conv", "linear", "inception"):  # post-activation (ReLU, ReLU6)
            assert acts[layer.id].min() >= 0, f"{spec.id}/{layer.id} is not post-activation"
    # Every exposed output keeps its autograd history (no later in-place op overwrote it).
    sum(a.pow(2).mean() for a in acts.values()).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_frozen_eval_and_marked_untrained(random_model) -> None:
    model, spec = random_model
    assert not any(m.training for m in model.modules())
    assert not any(p.requires_grad for p in model.parameters())
    assert spec.trained is False and spec.weights == "random"
    assert spec.summary()["trained"] is False


def test_random_weights_are_deterministic(random_model) -> None:
    model, spec = random_model
    again, _ = load_model(spec.id, weights="random")
    theirs = again.state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(value, theirs[key]), f"{spec.id}: {key} differs between loads"


# ---- weights from a file, default weights offline ------------------------------------------
def test_weights_file_round_trip(tmp_path) -> None:
    model, _ = load_model("efficientnet_lite0", weights="random")
    with torch.no_grad():  # make the file differ from the random init
        model._fc.bias.add_(1.0)
    path = tmp_path / "lite0.pth"
    torch.save(model.state_dict(), path)
    loaded, spec = load_model("efficientnet_lite0", weights=str(path))
    assert spec.trained and spec.weights == str(path) and len(spec.weights_sha256) == 64
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


@pytest.mark.parametrize("name", ["googlenet", "inception_v3"])
def test_torchvision_state_dict_with_aux_heads_loads(name: str, tmp_path) -> None:
    """torchvision's pretrained files carry the aux heads' keys; we build without the heads."""
    torchvision_model = getattr(tvm, name)(weights=None, aux_logits=True, init_weights=False)
    state = torchvision_model.state_dict()  # the layout of torchvision's weight files
    assert any(k.startswith(("aux1.", "AuxLogits.")) for k in state)
    path = tmp_path / f"{name}.pth"
    torch.save(state, path)
    model, _ = load_model(name, weights=str(path))
    ours = model.state_dict()
    assert all(torch.equal(ours[k], state[k]) for k in ours)


def test_wrong_weights_file_names_keys(tmp_path) -> None:
    path = tmp_path / "linear.pth"
    torch.save(nn.Linear(2, 2).state_dict(), path)
    with pytest.raises(MicrotomeError, match=r"missing keys.*unexpected keys \['weight', 'bias'\]"):
        load_model("efficientnet_lite0", weights=str(path))
    with pytest.raises(MicrotomeError, match="does not exist"):
        load_model("efficientnet_lite0", weights=str(tmp_path / "nope.pth"))


def test_weights_file_with_wrong_shapes_is_a_user_error(tmp_path) -> None:
    model, _ = load_model("efficientnet_lite0", weights="random")
    state = model.state_dict()
    state["_fc.weight"] = torch.zeros(10, 1280)
    torch.save(state, tmp_path / "shapes.pth")
    with pytest.raises(MicrotomeError, match="_fc.weight"):
        load_model("efficientnet_lite0", weights=str(tmp_path / "shapes.pth"))


def test_default_torchvision_weights_fail_fast_offline(tmp_path, monkeypatch) -> None:
    """No network on our machines: a clear error naming the way out, not a hang."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no cached file to fall back on

    def offline(*_args, **_kwargs):
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket, "create_connection", offline)  # offline even on a CI runner
    start = time.monotonic()
    with pytest.raises(MicrotomeError, match=r"could not download.*weights=PATH.*'random'"):
        load_model("googlenet", weights="default")
    assert time.monotonic() - start < 30


# ---- custom models, preprocessing ----------------------------------------------------------
def test_custom_entry_point() -> None:
    model, spec = load_model("tests.toy_models:tiny_net", weights="random")
    assert spec.id == "tiny_net" and not spec.trained
    assert not any(p.requires_grad for p in model.parameters())
    acts = forward_to(model, torch.rand(2, 3, 32, 32), layer_paths(spec, ["conv1", "conv2"]))
    assert acts["conv1"].shape == (2, 8, 16, 16) and acts["conv2"].shape == (2, 16, 8, 8)
    with pytest.raises(MicrotomeError, match="tests.toy_models:nope"):
        load_model("tests.toy_models:nope")


def test_preprocess_values_by_hand() -> None:
    lite0 = get_spec("efficientnet_lite0")  # (x*255 - 127) / 128
    x = torch.tensor([0.0, 0.5, 1.0]).view(3, 1, 1).expand(1, 3, 2, 2)
    out = lite0.preprocess(x)[0, :, 0, 0]
    assert torch.allclose(out, torch.tensor([-127 / 128, 0.5 / 128, 1.0]))
    googlenet = get_spec("googlenet")  # ImageNet mean/std on [0, 1]
    x = torch.tensor([0.485, 0.456, 1.0]).view(3, 1, 1).expand(1, 3, 2, 2)
    out = googlenet.preprocess(x)[0, :, 0, 0]
    assert torch.allclose(out, torch.tensor([0.0, 0.0, (1 - 0.406) / 0.225]))


# ---- real weights: the normalization check on real photographs --------------------------------
CATS = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def _photo(name: str, size: int) -> torch.Tensor:
    """A scikit-image photo as the evaluation crop `[3, size, size]` in [0, 1]."""
    import skimage.data

    image = TF.to_tensor(getattr(skimage.data, name)())  # [3, H, W]
    image = TF.resize(image, round(size * 256 / 224), antialias=True)  # short side
    return TF.center_crop(image, size)


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_real_weights_classify_photos(name: str) -> None:
    model, spec = load_model(name)
    assert spec.trained and spec.weights == "default"
    photos = torch.stack([_photo(p, spec.input_size) for p in ("chelsea", "coffee", "rocket")])
    with torch.no_grad():
        top5 = model(spec.preprocess(photos)).topk(5).indices.tolist()  # [3, 5]
    cat, coffee, rocket = top5
    assert cat[0] in CATS, [spec.labels[i] for i in cat]
    assert coffee[0] in {967, 968}, [spec.labels[i] for i in coffee]  # espresso, cup
    # missile, projectile, space shuttle
    assert {657, 744, 812} & set(rocket), [spec.labels[i] for i in rocket]


def test_entry_points_never_drop_the_weights_silently():
    from microtome.zoo import load_model
    model, spec = load_model("tests.toy_models:tiny_net_fixed")  # default weights: no argument passed
    assert spec.id == "tiny_net"
    with pytest.raises(MicrotomeError, match="takes no `weights` argument"):
        load_model("tests.toy_models:tiny_net_fixed", weights="random")
    with pytest.raises(TypeError, match="broken inside"):  # not retried without weights
        load_model("tests.toy_models:tiny_net_broken", weights="random")
