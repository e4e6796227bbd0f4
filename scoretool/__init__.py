"""scoretool: restore images with score priors.

Public API (numpy arrays in and out; the CLI calls the same functions), see README "Python API".
"""

__version__ = "0.1.0"

API = (
    "denoise",
    "estimate_noise",
    "evaluate_split",
    "evaluate_sure",
    "ood_features",
    "ood_fit",
    "ood_score",
    "ood_spec",
    "posterior_components",
    "posterior_std",
    "restore",
    "tweedie_denoise",
)


def __getattr__(name: str):
    """The public API, imported on first use (PEP 562): `import scoretool` and the command line's
    `--help` do not pay for importing torch."""
    if name in API:
        from . import api

        return getattr(api, name)
    if name in ("load", "Model"):
        from . import model

        return getattr(model, name)
    raise AttributeError(f"module 'scoretool' has no attribute {name!r}")


__all__ = ["__version__", "load", "Model", *API]
