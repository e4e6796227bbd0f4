"""scoretool: restore images with score priors.

Public API (numpy arrays in and out; the CLI calls the same functions), see README "Python API".
"""

__version__ = "0.1.0"

from .api import (  # noqa: E402,F401  # noqa: E402,F401  # noqa: E402,F401
    denoise,  # noqa: E402,F401
    estimate_noise,
    evaluate_split,
    evaluate_sure,
    ood_features,
    ood_fit,
    ood_score,
    ood_spec,
    restore,  # noqa: E402,F401
    tweedie_denoise,
)
