"""Default weights of models by name, read offline from the caches their libraries keep: the
Hugging Face hub cache for timm (`HF_HUB_OFFLINE`), torch hub's for torchvision. The caches are
written here with known state dicts in the libraries' own layout, so the whole path runs
without a network: located before building, loaded by timm's or torchvision's own loader, the
file's sha256 and its origin (hub repo and revision) on the spec."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from microtome.zoo import load_model
from microtome.zoo.loading import sha256_file

REVISION = "0123456789abcdef0123456789abcdef01234567"


def _perturbed(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(7)
    return {k: v + 0.01 * torch.randn(v.shape, generator=gen) if v.is_floating_point() else v
            for k, v in state.items()}


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def _cache_hub_file(cache, repo: str, file: str, state: dict[str, torch.Tensor]):
    """`state` as `file` of hub `repo` at REVISION, in huggingface_hub's cache layout."""
    folder = cache / ("models--" + repo.replace("/", "--"))
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(REVISION)
    snapshot = folder / "snapshots" / REVISION
    snapshot.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(snapshot / file))
    return snapshot / file


def test_timm_default_weights_from_the_hub_cache_offline(hub_cache):
    name = "timm:convnext_atto.d2_in1k"
    random_model, _ = load_model(name, weights="random")
    state = _perturbed(random_model.state_dict())
    path = _cache_hub_file(hub_cache, "timm/convnext_atto.d2_in1k", "model.safetensors", state)
    model, spec = load_model(name)  # default weights: timm's, from the cache
    random_model.load_state_dict(state)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), random_model(x))
    assert spec.trained and spec.weights == "default"
    assert spec.weights_sha256 == sha256_file(path)
    assert spec.weights_source == f"hf-hub:timm/convnext_atto.d2_in1k@{REVISION}"


def test_torchvision_default_weights_from_torch_hubs_cache(tmp_path, monkeypatch):
    from torchvision.models import ResNet18_Weights

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "torch-hub"))
    random_model, _ = load_model("torchvision:resnet18", weights="random")
    state = _perturbed(random_model.state_dict())
    path = tmp_path / "torch-hub" / "checkpoints" / ResNet18_Weights.DEFAULT.url.rsplit("/", 1)[1]
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    model, spec = load_model("torchvision:resnet18")
    random_model.load_state_dict(state)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), random_model(x))
    assert spec.trained and spec.weights_sha256 == sha256_file(path)
    assert "ResNet18_Weights.IMAGENET1K_V1" in spec.weights_source

