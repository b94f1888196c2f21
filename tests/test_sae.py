"""Sparse autoencoders (zoo/sae.py, techniques/sae_train.py): a planted dictionary is recovered,
training resumes to the same result, an attached SAE reads like a layer without changing the
model, a feature's visualization raises the feature (reproducibly by seed), and a feature's
connections are its decoder direction."""

from __future__ import annotations

import copy

import pytest
import torch

from microtome.errors import MicrotomeError
from microtome.optvis import objectives as O
from microtome.optvis.param import ImageParam
from microtome.optvis.render import render
from microtome.runtime import torch_threads
from microtome.techniques.connections import connections
from microtome.techniques.sae_train import Checkpoint, train
from microtome.zoo.hooks import forward_to, layer_paths
from microtome.zoo.sae import TopKSAE, attach_dictionary
from tests.toy_models import tiny_net


def planted(n: int = 8192, channels: int = 32, atoms: int = 64, active: int = 3, seed: int = 1):
    """Vectors `[n, channels]` made of `active` random atoms each (positive coefficients), plus an offset."""
    g = torch.Generator().manual_seed(seed)
    dictionary = torch.randn(atoms, channels, generator=g)
    dictionary /= dictionary.norm(dim=1, keepdim=True)
    chosen = torch.rand(n, atoms, generator=g).argsort(1)[:, :active]
    coefficients = torch.zeros(n, atoms).scatter(1, chosen, 0.5 + torch.rand(n, active, generator=g))
    return coefficients @ dictionary + 0.2, dictionary


def test_planted_dictionary_atoms_are_recovered():
    vectors, dictionary = planted()
    with torch_threads(1):
        sae, figures = train(vectors, features=128, k=3, epochs=20, seed=0)
    best = (dictionary @ sae.W_dec).max(dim=1).values  # best cosine per atom (unit columns)
    assert float((best >= 0.9).float().mean()) >= 0.9
    assert figures.explained_variance > 0.9
    assert figures.l0 == pytest.approx(3.0)
    assert torch.allclose(sae.W_dec.norm(dim=0), torch.ones(128), atol=1e-5)


def test_interrupted_training_resumes_to_the_same_result(tmp_path):
    vectors, _ = planted(n=1024)
    with torch_threads(1):
        whole, _ = train(vectors, 48, 3, epochs=4, seed=2, batch_size=128)
        checkpoint = Checkpoint(tmp_path / "state.pt")
        done = [0.0]

        def stop_in_epoch_three(fraction: float) -> None:
            done[0] += fraction
            if done[0] > 0.6:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            train(vectors, 48, 3, epochs=4, seed=2, batch_size=128, checkpoint=checkpoint, tick=stop_in_epoch_three)
        assert checkpoint.load()["epoch"] == 2
        resumed, _ = train(vectors, 48, 3, epochs=4, seed=2, batch_size=128, checkpoint=checkpoint)
    for name, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name


def _tiny_with_sae(features: int = 24, k: int = 4):
    model, spec = tiny_net()
    model.eval()
    images = torch.rand(64, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        acts = forward_to(model, images, {"conv2": "3"})["conv2"]  # [64, 16, 8, 8]
    vectors = acts.permute(0, 2, 3, 1).reshape(-1, 16)
    with torch_threads(1):
        sae, _ = train(vectors, features, k, epochs=10, seed=0, batch_size=256)
    return model, spec, sae, images


def test_attached_sae_is_a_layer_and_leaves_the_model_alone():
    model, spec, sae, images = _tiny_with_sae()
    with torch.no_grad():
        before = model(images[:4])
    model, spec = attach_dictionary(model, spec, "conv2", sae)
    layer = spec.layer("conv2.sae")
    assert (layer.kind, layer.channels, layer.size) == ("sae", 24, (8, 8))
    assert spec.layer_ids.index("conv2.sae") == spec.layer_ids.index("conv2") + 1
    assert ("conv2", "conv2.sae") in spec.edges
    with torch.no_grad():
        assert torch.equal(model(images[:4]), before)  # forward values unchanged
        out = forward_to(model, images[:4], layer_paths(spec, ["conv2", "conv2.sae"]))
        assert torch.allclose(out["conv2.sae"], sae.encode(out["conv2"]), atol=1e-6)
        assert int((out["conv2.sae"] > 0).sum(1).max()) <= 4  # k active per position
        twin = copy.deepcopy(model)  # the renderer's private copy hooks its own SAE
        again = forward_to(twin, images[:4], layer_paths(spec, ["conv2.sae"]))["conv2.sae"]
        assert torch.allclose(again, out["conv2.sae"])
    with pytest.raises(MicrotomeError, match="already has a layer"):
        attach_dictionary(model, spec, "conv2", sae)
    with pytest.raises(MicrotomeError, match="16"):
        attach_dictionary(model, spec, "conv1", sae)  # 8 channels, the SAE reads 16


def test_feature_vis_raises_the_feature_and_is_reproducible_by_seed():
    model, spec, sae, images = _tiny_with_sae()
    model, spec = attach_dictionary(model, spec, "conv2", sae)
    with torch.no_grad():
        codes = forward_to(model, images, layer_paths(spec, ["conv2.sae"]))["conv2.sae"]
    feature = int(codes.mean(dim=(0, 2, 3)).argmax())
    objective = O.channel("conv2.sae", feature)
    with torch_threads(1):
        first = render(model, objective, ImageParam(32, seed=3), spec=spec, steps=48)
        again = render(model, objective, ImageParam(32, seed=3), spec=spec, steps=48)
        other = render(model, objective, ImageParam(32, seed=4), spec=spec, steps=48)
    assert torch.equal(first.images, again.images)
    assert not torch.equal(first.images, other.images)
    with torch.no_grad():
        reached = forward_to(model, spec.preprocess(first.images), layer_paths(spec, ["conv2.sae"]))["conv2.sae"]
    # the rendered image drives the feature harder than the average and the best dataset image
    per_image = codes[:, feature].mean(dim=(1, 2))
    assert float(reached[0, feature].mean()) > float(per_image.max())


def test_connections_of_a_feature_are_its_decoder_direction():
    model, spec, sae, _ = _tiny_with_sae()
    model, spec = attach_dictionary(model, spec, "conv2", sae)
    results = connections(model, spec, "conv2.sae", [0, 5], {"top": 4, "images": 2})
    loadings = sae.loadings()  # [F, C]
    for result in results:
        row = loadings[result.unit]
        strongest = row.abs().argsort(descending=True)[:4].tolist()
        assert [e["unit"] for e in result.meta["inputs"]] == strongest
        assert [e["weight"] for e in result.meta["inputs"]] == pytest.approx(row[strongest].tolist())
        assert result.meta["method"]["inputs"] == "weights"
    base = connections(model, spec, "conv2", [3], {"top": 24, "images": 2})[0]
    to_features = {e["unit"]: e["weight"] for e in base.meta["outputs"] if e["layer"] == "conv2.sae"}
    assert to_features == pytest.approx({f: float(loadings[f, 3]) for f in to_features})


def test_bad_sizes_are_refused():
    with pytest.raises(MicrotomeError, match="k must be in 1..8"):
        TopKSAE(4, 8, 9)
    with pytest.raises(MicrotomeError, match="epochs"):
        train(torch.rand(10, 4), 8, 2, epochs=0)
