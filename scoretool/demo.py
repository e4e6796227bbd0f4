"""`scoretool demo`: every capability once, offline, on scikit-image's bundled sample images.

Each task adds a known degradation to a clean sample image, restores it with the public API, measures
PSNR against the clean image, and writes a montage (left to right: clean | degraded | result).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import api, metrics
from .io import Image, write_image
from .weights import bundled_models


def _crop(img: np.ndarray, size: int, y0: int = 0, x0: int = 0) -> np.ndarray:
    return img[y0 : y0 + size, x0 : x0 + size]


def sample_images(size: int = 192) -> dict[str, np.ndarray]:
    """Clean float32 sample images on [0,1] from scikit-image (bundled, no download)."""
    from skimage import data
    from skimage.transform import resize

    def unit(a):
        return a.astype(np.float32) / 255.0

    camera = resize(unit(data.camera()), (2 * size, 2 * size), anti_aliasing=True).astype(np.float32)
    astronaut = resize(unit(data.astronaut()), (2 * size, 2 * size), anti_aliasing=True).astype(np.float32)
    return {"camera": _crop(camera, size, size // 4, size // 2), "astronaut": _crop(astronaut, size, 0, size // 3)}


def _rgb(img: np.ndarray) -> np.ndarray:
    return np.repeat(img[..., None], 3, axis=-1) if img.ndim == 2 else img


def montage(panels: list[np.ndarray], gap: int = 4) -> np.ndarray:
    """Panels side by side (grey panels shown as RGB), padded to a common height, white gaps."""
    panels = [_rgb(np.clip(p, 0, 1)) for p in panels]
    h = max(p.shape[0] for p in panels)
    cols = []
    for p in panels:
        pad = np.ones((h, p.shape[1], 3), np.float32)
        pad[: p.shape[0]] = p
        cols += [pad, np.ones((h, gap, 3), np.float32)]
    return np.concatenate(cols[:-1], axis=1)


DEMO_OUTPUTS = ("denoise-gaussian-gray.png", "denoise-gaussian-rgb.png", "denoise-poisson-gray.png",
                "denoise-gamma-gray.png", "restore-sr4.png", "restore-inpaint50.png", "restore-colorize.png",
                "restore-deblur.png", "ood.png", "results.json")
"""Every file `scoretool demo` writes into its folder, so that the command plans them all before it starts."""


def save_png(path: Path, img: np.ndarray) -> None:
    if path.name not in DEMO_OUTPUTS:
        raise ValueError(f"{path.name} is not one of DEMO_OUTPUTS")
    img = _rgb(np.clip(img, 0, 1)).astype(np.float32)
    write_image(path, Image(img[None], np.dtype(np.uint8), None, (0.0, 255.0), True, False), overwrite=True)


def _psnr(x, ref) -> float:
    return round(metrics.psnr(np.clip(x, 0, 1), ref, 1.0), 2)


def run_demo(out: Path, steps: int = 50, device: str = "auto", seed: int = 0,
             progress: Callable[[str], None] | None = None) -> list[dict]:
    """Run every task; write one montage PNG per task into `out`; return the table rows."""
    from skimage import data
    from skimage.restoration import inpaint_biharmonic

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    imgs = sample_images()
    models = bundled_models()
    rows: list[dict] = []

    def task(name: str, fn):
        t0 = time.perf_counter()
        if progress:
            progress(name)
        try:
            row = fn()
        except Exception as e:  # one task failing must not hide the others
            row = {"result": None, "note": f"failed: {e}"}
        rows.append({"task": name, **row, "seconds": round(time.perf_counter() - t0, 1)})

    cam, ast = imgs["camera"], imgs["astronaut"]
    sigma = 25 / 255

    def gaussian_grey():
        y = cam + sigma * rng.standard_normal(cam.shape).astype(np.float32)
        x = api.denoise(y, sigma, weights="prior-gray", device=device)
        save_png(out / "denoise-gaussian-gray.png", montage([cam, y, x]))
        return {"baseline": "noisy", "baseline_psnr": _psnr(y, cam), "psnr": _psnr(x, cam), "model": "prior-gray"}

    def gaussian_rgb():
        y = ast + sigma * rng.standard_normal(ast.shape).astype(np.float32)
        x = api.denoise(y, sigma, weights="prior-rgb", device=device)
        save_png(out / "denoise-gaussian-rgb.png", montage([ast, y, x]))
        return {"baseline": "noisy", "baseline_psnr": _psnr(y, ast), "psnr": _psnr(x, ast), "model": "prior-rgb"}

    def family(noise: str, parameter: float):
        def run():
            from .noise import add_noise

            y = add_noise(cam, noise, parameter, np.random.default_rng(seed)).astype(np.float32)
            name = f"n2s-{noise}-gray"
            weights = name if name in models else "prior-gray"
            x, _ = api.tweedie_denoise(y, noise, parameter, weights=weights, device=device)
            save_png(out / f"denoise-{noise}-gray.png", montage([cam, y, x]))
            note = "" if weights == name else f"{name} not bundled: clean prior with the Gaussian approximation"
            return {"baseline": "noisy", "baseline_psnr": _psnr(y, cam), "psnr": _psnr(x, cam), "model": weights, "note": note}
        return run

    def sr():
        lr = cam.reshape(cam.shape[0] // 4, 4, cam.shape[1] // 4, 4).mean(axis=(1, 3))
        x, info = api.restore(lr, "sr", scale=4, steps=steps, weights="prior-gray", device=device, seed=seed)
        from skimage.transform import resize

        bicubic = resize(lr, cam.shape, order=3).astype(np.float32)
        save_png(out / "restore-sr4.png", montage([cam, np.kron(lr, np.ones((4, 4), np.float32)), bicubic, x]))
        return {"baseline": "bicubic", "baseline_psnr": _psnr(bicubic, cam), "psnr": _psnr(x, cam),
                "residual": info["residual"], "model": "prior-gray"}

    def inpaint():
        missing = rng.random(cam.shape) < 0.5
        y = np.where(missing, 0, cam).astype(np.float32)
        x, info = api.restore(y, "inpaint", mask=missing.astype(np.uint8), steps=steps, weights="prior-gray", device=device,
                              seed=seed)
        base = inpaint_biharmonic(cam.astype(np.float64), missing).astype(np.float32)
        save_png(out / "restore-inpaint50.png", montage([cam, y, base, x]))
        return {"baseline": "biharmonic", "baseline_psnr": _psnr(base, cam), "psnr": _psnr(x, cam),
                "residual": info["residual"], "model": "prior-gray"}

    def colorize():
        grey = ast.mean(axis=-1)
        x, info = api.restore(grey, "colorize", steps=steps, weights="prior-rgb", device=device, seed=seed)
        save_png(out / "restore-colorize.png", montage([ast, grey, x]))
        return {"baseline": "grey", "baseline_psnr": _psnr(_rgb(grey), ast), "psnr": _psnr(x, ast),
                "residual": info["residual"], "model": "prior-rgb"}

    def deblur():
        from scipy.ndimage import gaussian_filter
        from skimage.restoration import wiener

        from .operators import gaussian_kernel

        kernel = gaussian_kernel(2.0)
        blurred = gaussian_filter(cam, 2.0, mode="wrap") + 0.01 * rng.standard_normal(cam.shape).astype(np.float32)
        x, info = api.restore(blurred, "deblur", kernel=kernel, sigma_y=0.01, steps=steps, weights="prior-gray",
                              device=device, seed=seed)
        base = wiener(blurred.astype(np.float64), kernel, balance=0.01).astype(np.float32)
        save_png(out / "restore-deblur.png", montage([cam, blurred, base, x]))
        return {"baseline": "Wiener", "baseline_psnr": _psnr(base, cam), "psnr": _psnr(x, cam), "model": "prior-gray"}

    def ood():
        from .ood import detection_metrics

        sources = [data.camera(), data.moon(), data.coins(), data.brick(), data.grass(), data.gravel(), data.clock(),
                   data.cell()]
        photos = []
        for s in sources:
            f = s.astype(np.float32) / 255
            for y0 in range(0, f.shape[0] - 96 + 1, 96):
                for x0 in range(0, f.shape[1] - 96 + 1, 96):
                    photos.append(f[y0 : y0 + 96, x0 : x0 + 96])
        order = np.random.default_rng(seed).permutation(len(photos))
        train = [photos[i] for i in order[:40]]
        held = [photos[i] for i in order[40:52]]
        odd = [data.text()[:96, :96] / 255.0, data.checkerboard()[:96, :96] / 255.0, data.page()[:96, :96] / 255.0,
               data.binary_blobs(96, rng=seed).astype(np.float32), np.random.default_rng(1).random((96, 96)),
               np.full((96, 96), 0.5)]
        model = api.ood_fit(train, weights="prior-gray", method="knn", levels=6, device=device)
        s_in = [api.ood_score(np.asarray(i, np.float32), model, weights="prior-gray", device=device)[0]["score"] for i in held]
        s_out = [api.ood_score(np.asarray(o, np.float32), model, weights="prior-gray", device=device)[0]["score"] for o in odd]
        res = detection_metrics(np.array(s_in), np.array(s_out))
        save_png(out / "ood.png", montage([np.concatenate(held[:4], 0), np.concatenate(odd[:4], 0)]))
        return {"baseline": None, "baseline_psnr": None, "psnr": None, "auroc": round(float(res["auroc"]), 3),
                "model": "prior-gray", "note": "photo crops vs non-photographs (kNN on 6-level score norms)"}

    def evaluate():
        refs = [cam + sigma * rng.standard_normal(cam.shape).astype(np.float32) for _ in range(4)]
        x = api.denoise(refs[0], sigma, weights="prior-gray", device=device)
        est = metrics.umse(x, refs[1], refs[2], refs[3], data_range=1.0)
        return {"baseline": "true PSNR", "baseline_psnr": _psnr(x, cam), "psnr": round(float(est.psnr), 2),
                "model": "prior-gray", "note": "uPSNR from three noisy references vs the true PSNR"}

    plan = [("denoise gaussian σ=25 (grey)", gaussian_grey), ("denoise gaussian σ=25 (colour)", gaussian_rgb),
            ("denoise poisson ζ=0.01", family("poisson", 0.01)), ("denoise gamma k=100", family("gamma", 100.0)),
            ("restore sr ×4", sr), ("restore inpaint 50%", inpaint), ("restore colorize", colorize),
            ("restore deblur std 2", deblur), ("ood photos vs non-photos", ood), ("evaluate uPSNR", evaluate)]
    for name, fn in plan:
        task(name, fn)
    return rows
