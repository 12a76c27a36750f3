"""deep_models: the model registry, the layerwise linear twin and the twin-to-real homotopy.

Public API (contracts: deep_models):

- ``create_model(name, *, input_shape, out_dim, generator=None, **kwargs) -> nn.Module``
- ``register_model``, ``list_models``, ``model_kwargs``
- ``linear_twin(model)``, ``is_layerwise_linear(model)``, ``nonlinear_modules(model)``
- ``with_nonlinearity(model, strength)``: the twin-to-real homotopy (0 = ``linear_twin``, 1 = the real net;
  deep_models/homotopy.py, docs/theory.md 1.5)

Every model has ``forward(x) -> (N, out_dim)``, ``forward_features(x) -> (N, num_features)``
(the input of the last Linear), ``get_classifier() -> nn.Linear`` and the attributes
``num_features`` and ``num_classes``. Registered names: ``mlp``, ``resnet18_cifar``,
``resnet_small``, ``transformer``. This package imports nothing from the rest of lintwin.
"""

import importlib as _importlib
import pkgutil as _pkgutil

from deep_models._registry import create_model, list_models, model_kwargs, register_model
from deep_models.homotopy import with_nonlinearity
from deep_models.twin import is_layerwise_linear, linear_twin, nonlinear_modules

__all__ = [
    "create_model",
    "is_layerwise_linear",
    "linear_twin",
    "list_models",
    "model_kwargs",
    "nonlinear_modules",
    "register_model",
    "with_nonlinearity",
]

# Model modules are discovered: every public module of this package is imported, so that its @register_model
# functions register themselves (adding an architecture = one file here + one conf/model/<name>.yaml).
_NOT_MODELS = {"homotopy", "twin"}
for _m in _pkgutil.iter_modules(__path__):
    if not _m.name.startswith("_") and _m.name not in _NOT_MODELS:
        _importlib.import_module(f"deep_models.{_m.name}")
