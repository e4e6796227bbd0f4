"""scoretool: restore images with score priors.

Public API (numpy arrays in and out; the CLI calls the same functions), see README "Python API".
"""

__version__ = "0.1.0"

from .api import (  # noqa: E402,F401
    denoise,
    estimate_noise,
    evaluate_split,
    evaluate_sure,
    ood_features,
    ood_fit,
    ood_score,
    ood_spec,
    posterior_components,
    posterior_std,
    restore,
    tweedie_denoise,
)
from .model import Model, load  # noqa: E402,F401
