"""Solvable layerwise linear models and their predictions, each tested against gradient descent.

One module per family (Nam et al. 2025, arXiv:2502.21009; formulas in docs/theory.md 3-7), each with ``simulate``
(float64 gradient descent) and ``predictor`` (closed form or scipy ODE) returning the same :class:`Trajectory`:

- :mod:`linear_models.diagonal`: diagonal linear network, any imbalance (docs/theory.md 3.1).
- :mod:`linear_models.deep_linear`: Saxe modes from data, depth-L mode ODE (docs/theory.md 3.2).
- :mod:`linear_models.two_layer`: batched two-layer nets, lazy/rich inits, KD prediction (docs/theory.md 3.3, 5).
- :mod:`linear_models.ntk`: the two-layer NTK and the kernel distance (docs/theory.md 2.6, 3.3).
- :mod:`linear_models.ufm`: unconstrained features model with weight decay (docs/theory.md 7.2, 7.3).
- :mod:`linear_models.skills`: multilinear skill model, emergence and scaling laws (docs/theory.md 4).
- :mod:`linear_models.grokking`: the gamma_+ toy and the delay law (docs/theory.md 6.2, 6.3).

Time is continuous, t = lr * step, and the loss is 1/2 the mean squared error (docs/theory.md 2.1, 2.2). This package
imports only numpy and scipy (torch tensors are accepted as inputs) and nothing else from lintwin.
"""

from linear_models import deep_linear, diagonal, grokking, ntk, skills, two_layer, ufm
from linear_models._types import Predictor, Trajectory

__all__ = ["Trajectory", "Predictor", "diagonal", "deep_linear", "two_layer", "ntk", "ufm", "skills", "grokking"]
