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

from deep_models import mlp as _mlp  # noqa: F401  (registers "mlp")
from deep_models import resnet as _resnet  # noqa: F401  (registers "resnet18_cifar", "resnet_small")
from deep_models import transformer as _transformer  # noqa: F401  (registers "transformer")
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
