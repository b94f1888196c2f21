"""The model zoo: one `ModelSpec` per model organism, a registry, and hook points.

`load_model(name, weights="default"|"random"|PATH) -> (frozen eval nn.Module, ModelSpec)`.
"""

from microtome.zoo.registry import get_spec, list_models, load_model, register_model
from microtome.zoo.spec import LayerSpec, ModelSpec
from microtome.zoo import efficientnet_lite as _efficientnet_lite  # noqa: F401  (registers)
from microtome.zoo import torchvision_models as _torchvision_models  # noqa: F401  (registers)

__all__ = ["LayerSpec", "ModelSpec", "get_spec", "list_models", "load_model", "register_model"]
