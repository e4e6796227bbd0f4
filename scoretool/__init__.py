"""scoretool: restore images with score priors.

Public API (numpy arrays in and out; the CLI calls the same functions), see README "Python API".
"""

__version__ = "0.1.0"

from .api import denoise  # noqa: E402,F401
from .api import estimate_noise, tweedie_denoise  # noqa: E402,F401
from .api import evaluate_split, evaluate_sure  # noqa: E402,F401
from .api import ood_features, ood_fit, ood_score, ood_spec  # noqa: E402,F401
from .api import restore  # noqa: E402,F401
