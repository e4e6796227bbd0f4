"""`scoretool denoise` on a TIFF larger than memory: band by band from disk to disk (scoretool.bigtiff)."""

from __future__ import annotations

from .common import Common, FileJob


def out_of_core_range(src, dest, weights: str | None, value_range: tuple[float, float] | None):
    """bigtiff.out_of_core_range, imported on use (the command line's --help does not import torch)."""
    from ..bigtiff import out_of_core_range as decide

    return decide(src, dest, weights, value_range)


def denoise_huge_tiff(job: FileJob, sigma_unit: float, sigma: float, weights: str | None, device: str, precision: str,
                      tile: int, value_range: tuple[float, float] | None, common: Common) -> dict:
    """Denoise job.src into job.dest with bigtiff.denoise_tiff → the result row `denoise` reports for a file."""
    from ..bigtiff import denoise_tiff

    common.notice(f"{job.src}: large TIFF, denoised band by band from disk (out of core)")
    rep = denoise_tiff(job.src, job.dest, sigma_unit, weights, device, precision, tile, value_range, common.overwrite)
    return {"weights": rep["weights"], "noise": "gaussian", "method": "prior D(y, sigma)", "parameter_name": "sigma",
            "parameter": sigma_unit, "estimated": False, "sigma": sigma, "sigma_unit": sigma_unit, "out_of_core": True,
            "tiles": rep["tiles"], "seconds": round(rep["seconds"], 3), "shape": rep["shape"]}
