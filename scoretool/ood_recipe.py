"""The OOD feature recipe (`FeatureSpec`) and its defaults, apart from the computation in scoretool.ood so
that the command line can show the defaults without importing torch. Features: see scoretool.ood."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_QUANTILES: tuple[float, ...] = ()  # per-patch norm quantiles: off by default (bench/ood.py compares)
DEFAULT_RMS = True
DEFAULT_CORR = False
DEFAULT_PARITY = False
DEFAULT_PARITY_MEAN = True


@dataclass
class FeatureSpec:
    """How features are computed; stored with the density so scoring uses the same recipe.

    Per level, in this order: log quantiles of the patch norms (`quantiles`, may be empty), the log
    RMS over all sampled pixels (`rms`: the MSMA whole-image norm, √N-normalised), and the lag-1
    autocorrelation of the score map (`corr`: mean of horizontal and vertical, Σ r·r_shift / Σ r²), and
    its even/odd asymmetry (`parity`, see `lag1_parity`). Then, once per image, `parity_mean`: the log
    of the mean parity over the levels (one number instead of L: it catches pixel replication as well,
    and adds one dimension, not L, whose spread between training and test photographs the density would
    otherwise learn; bench/ood.py, variants "default" and "global+corr+parity").
    """

    sigmas: list[float]
    crop: int = 64
    patch: int = 32
    crops: int = 8
    quantiles: tuple[float, ...] = DEFAULT_QUANTILES
    rms: bool = DEFAULT_RMS
    corr: bool = DEFAULT_CORR
    parity: bool = DEFAULT_PARITY
    parity_mean: bool = DEFAULT_PARITY_MEAN

    @property
    def per_level(self) -> int:
        return len(self.quantiles) + int(self.rms) + int(self.corr) + int(self.parity)

    @property
    def dim(self) -> int:
        return len(self.sigmas) * self.per_level + int(self.parity_mean)

    def names(self) -> list[str]:
        stats = [f"q{q:g}" for q in self.quantiles] + ["rms"] * self.rms + ["corr"] * self.corr + ["parity"] * self.parity
        return [f"s{s:.4g}_{t}" for s in self.sigmas for t in stats] + ["parity_mean"] * self.parity_mean

    def to_dict(self) -> dict:
        return {"sigmas": list(self.sigmas), "crop": self.crop, "patch": self.patch, "crops": self.crops,
                "quantiles": list(self.quantiles), "rms": self.rms, "corr": self.corr, "parity": self.parity,
                "parity_mean": self.parity_mean}

    @classmethod
    def from_dict(cls, d: dict) -> FeatureSpec:
        return cls(sigmas=[float(v) for v in d["sigmas"]], crop=int(d["crop"]), patch=int(d["patch"]),
                   crops=int(d["crops"]), quantiles=tuple(float(q) for q in d["quantiles"]),
                   rms=bool(d.get("rms", False)), corr=bool(d.get("corr", False)),
                   parity=bool(d.get("parity", False)), parity_mean=bool(d.get("parity_mean", False)))
