"""The public Python API, the one the command line calls: keyword-only functions on numpy arrays on the
[0,1] scale, one module per method, each loading its model once (a cached `scoretool.load`), calling the
method with that model as its denoiser D(x, σ), and returning arrays and a report.

    >>> from scoretool import api
    >>> clean = api.denoise(noisy, 25 / 255)                      # (H, W) or (H, W, C) on [0,1]
    >>> clean, report = api.tweedie_denoise(noisy, "poisson", 0.01, weights="n2s-poisson-gray")

Names are imported on first use (PEP 562), so that the command line's `--help`, which imports this
package for option defaults, does not import torch.
"""

from __future__ import annotations

import importlib

_MODULES = {
    ".denoise": ("camera_denoise", "denoise", "denoise_image", "denoise_tiff", "out_of_core_range",
                 "poisson_gaussian_denoise"),
    ".noise": ("describe_noise", "estimate_noise", "image_noise", "tweedie_denoise"),
    ".evaluate": ("MSEEstimate", "SPLIT_BIAS_NOTE", "evaluate_split", "evaluate_sure", "psnr_from_mse", "ssim", "umse"),
    ".uncertainty": ("METHODS", "posterior_components", "posterior_std", "std_map_image"),
    ".restore": ("SAMPLERS", "check_colour_prior", "gaussian_kernel", "random_mask", "restore", "sampler_for", "sampler_settings", "uniform_kernel"),
    ".ood": ("OODModel", "detection_metrics", "histogram_image", "ood_check_prior", "ood_features", "ood_fit",
             "ood_prior", "ood_score", "ood_spec"),
    ".models": ("bundled_models", "check_sigma_a", "device_report", "is_noise2score", "model_channels", "model_summary", "select_device"),
    "..model": ("Model", "load"),
    "..train": ("TrainConfig", "checkpoint_path", "train"),
    "..export": ("export_model",),
    "..demo": ("DEMO_OUTPUTS", "run_demo"),
    "..ood_recipe": ("DEFAULT_CORR", "DEFAULT_PARITY", "DEFAULT_PARITY_MEAN", "DEFAULT_QUANTILES", "DEFAULT_RMS"),
}
_WHERE = {name: module for module, names in _MODULES.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(_WHERE[name], __name__)
    for n in _MODULES[_WHERE[name]]:  # also replaces the submodule attributes `denoise` and `restore` by the functions
        globals()[n] = getattr(module, n)
    return globals()[name]


def __dir__() -> list[str]:
    return __all__
