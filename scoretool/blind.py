"""Blind noise models for a clean prior: the Gaussian level σ, the Poisson–Gaussian pair (a, b) and
correlated camera noise, estimated from one image by classical estimators (the pair refined with the
prior's residuals where a denoiser is given; a Noise2Score model estimates its noise from its own score,
noise.py), and the
denoising routes that go with them: variance stabilisation for (a, b), pixel-shuffle for camera noise.

Scale: [0,1] intensities; images are numpy arrays (H, W) or (H, W, C).
"""

from __future__ import annotations

import math

import numpy as np

from .errors import ScoretoolError

PATCH = 7  # patch side (Liu et al. 2013 use 7)
SIGMA_FLOOR = 0.002  # the bundled priors' smallest trained σ (half a grey level)
CORRELATED_RATIO = 1.3  # describe_noise: sub-image σ̂ over image σ̂ above this = correlated noise


def _patches(img: np.ndarray, d: int, stride: int) -> np.ndarray:
    """(N, d·d·C) patch vectors of an (H, W, C) image, taken every `stride` pixels."""
    win = np.lib.stride_tricks.sliding_window_view(img, (d, d), axis=(0, 1))[::stride, ::stride]
    return win.reshape(-1, win.shape[2] * d * d)


def _as_hwc(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img, dtype=np.float64)
    return img[..., None] if img.ndim == 2 else img


def _gradient_operator(d: int) -> np.ndarray:
    """DᵀD for the central differences [−½, 0, ½] along both axes of a d×d patch (valid part)."""
    eye = np.eye(d * d).reshape(d * d, d, d)
    dh = 0.5 * (eye[:, :, 2:] - eye[:, :, :-2]).reshape(d * d, -1).T
    dv = 0.5 * (eye[:, 2:, :] - eye[:, :-2, :]).reshape(d * d, -1).T
    return dh.T @ dh + dv.T @ dv


def _squared_differences(ch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(across, down): the squared central differences (½(p[i+1] − p[i−1]))² of a 2-D array along each
    axis, 0 on the border they do not reach."""
    across, down = np.zeros_like(ch), np.zeros_like(ch)
    across[:, 1:-1] = (0.5 * (ch[:, 2:] - ch[:, :-2])) ** 2
    down[1:-1, :] = (0.5 * (ch[2:, :] - ch[:-2, :])) ** 2
    return across, down


def _weak_texture_patches(img: np.ndarray, d: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Patch vectors (N, d·d) of every channel of an (H, W, C) image, taken every `stride` pixels, and
    each patch's gradient energy ξ = ‖D p‖² (central differences wholly inside the patch)."""
    xs, xis = [], []
    for c in range(img.shape[2]):
        ch = img[..., c]
        gh, gv = _squared_differences(ch)
        xh = _patches(gh[:, :, None], d, stride).reshape(-1, d, d)[:, :, 1:-1].sum((1, 2))
        xv = _patches(gv[:, :, None], d, stride).reshape(-1, d, d)[:, 1:-1, :].sum((1, 2))
        xs.append(_patches(ch[:, :, None], d, stride))
        xis.append(xh + xv)
    return np.concatenate(xs), np.concatenate(xis)


MIN_PATCHES = 8 * PATCH * PATCH
"""The fewest 7×7 patches a weak-texture variance is read from (8 per dimension of a patch vector): below
it the eigenvalue rule is noise, and an image too small for it is refused rather than given a made-up σ̂."""
PATCH_BUDGET = 1 << 19
"""The most 7×7 patches a weak-texture estimate builds (~200 MB as float64): a larger image is read at a
wider stride (`patch_stride`), so memory stays bounded whatever its size."""


def _patch_count(shapes: list[tuple[int, ...]], d: int, stride: int) -> int:
    """Patches of d×d every `stride` pixels in every channel of the (H, W, C) images of these shapes."""
    return sum(((h - d) // stride + 1) * ((w - d) // stride + 1) * c for h, w, c in shapes if min(h, w) >= d)


def patch_stride(shapes: list[tuple[int, ...]], d: int = PATCH, minimum: int = 1) -> int:
    """The smallest stride ≥ `minimum` at which (H, W, C) images of these shapes give at most
    `PATCH_BUDGET` patches of d×d."""
    stride = max(minimum, math.ceil(math.sqrt(_patch_count(shapes, d, 1) / PATCH_BUDGET)))
    while _patch_count(shapes, d, stride) > PATCH_BUDGET and stride < max(max(s[:2]) for s in shapes):
        stride += 1
    return stride


def _texture_threshold(d: int, confidence: float) -> float:
    """τ₀: the `confidence` quantile of ξ/σ² for a patch of pure noise, ξ/σ² ~ Gamma(r/2, 2·tr(DᵀD)/r)."""
    from scipy.stats import gamma

    dtd = _gradient_operator(d)
    r = np.linalg.matrix_rank(dtd)
    return float(gamma.ppf(confidence, r / 2, scale=2 * np.trace(dtd) / r))


def _weak_texture_variance(x: np.ndarray, xi: np.ndarray, tau0: float, iterations: int, clipped: bool,
                           binned: bool = False) -> tuple[float, float]:
    """(σ², mean intensity) of the weak-texture patches among x (N, M) with gradient energies xi:
    alternate σ̂² from the selected patches (`_tail_variance`) and the selection ξ < σ̂²·τ₀; with
    clipped data, patches whose mean is within 2σ̂ of 0 or 1 are left out. binned: x were chosen by
    their mean (an intensity bin)."""
    mean = x.mean(1)
    usable = np.ones(len(x), bool)
    sel = usable
    sig2 = _tail_variance(x, binned)
    for _ in range(iterations - 1 + 2 * clipped):
        if clipped:
            s = math.sqrt(max(sig2, 0.0))
            inside = (mean > 2 * s) & (mean < 1 - 2 * s)
            usable = inside if int(inside.sum()) >= 4 * x.shape[1] else usable
        chosen = usable & (xi < sig2 * tau0)
        if int(chosen.sum()) < 4 * x.shape[1]:
            break
        sel = chosen
        sig2 = _tail_variance(x[sel], binned)
    return max(sig2, 0.0), float(mean[sel].mean())


def is_clipped(img: np.ndarray, fraction: float = 1e-3) -> bool:
    """Data clipped to [0,1] (or noise going past it): more than `fraction` of the values at or beyond 0 or 1."""
    return float(np.mean((img <= 0) | (img >= 1))) > fraction


def weak_texture_sigma(img: np.ndarray, d: int = PATCH, stride: int | None = None, iterations: int = 4,
                       confidence: float = 0.99, clipped: bool | None = None) -> float:
    """Noise std from weak-texture patches (Liu, Tanaka & Okutomi, *Single-image noise level estimation
    for blind denoising*, IEEE TIP 2013), with the eigenvalue rule of
    `_tail_variance` (Chen, Zhu & Heng, ICCV 2015) in place of the smallest eigenvalue.

    A patch of pure noise has gradient energy ξ = ‖D p‖² ~ σ²·Gamma(r/2, 2·tr(DᵀD)/r) (r = rank DᵀD);
    patches with ξ above that distribution's `confidence` quantile hold texture. Alternate: σ̂ from the
    selected patches, reselect with the threshold σ̂²·τ₀. Channels are pooled (one σ for all).
    The paper's confidence is 1 − 10⁻⁶; 0.99 with four rounds keeps less faint texture.
    clipped: data clipped to [0,1] (None: detected, > 0.1% of values at 0 or 1); clipping shrinks the
    noise near 0 and 1, so patches whose mean is within 2σ̂ of either end are left out.
    stride: patch spacing (None: every 2nd pixel, wider where `PATCH_BUDGET` needs it, every pixel where
    every 2nd gives fewer than MIN_PATCHES). ScoretoolError below MIN_PATCHES.
    """
    img = _as_hwc(img)
    if stride is None:
        stride = patch_stride([img.shape], d, minimum=2)
        stride = 1 if _patch_count([img.shape], d, stride) < MIN_PATCHES else stride
    found = _patch_count([img.shape], d, stride)
    if found < MIN_PATCHES:
        raise ScoretoolError(f"image too small to estimate its noise level ({found} patches of {d}×{d}; {MIN_PATCHES} "
                             f"needed, about {int(math.sqrt(MIN_PATCHES)) + d - 1}² grey pixels): it has to be given")
    x, xi = _weak_texture_patches(img, d, stride)
    clipped = is_clipped(img) if clipped is None else clipped
    return math.sqrt(_weak_texture_variance(x, xi, _texture_threshold(d, confidence), iterations, clipped)[0])


def _tail_variance(x: np.ndarray, patch_means_removed: bool = False) -> float:
    """σ² from the covariance of patch vectors x (N, M) (Chen, Zhu & Heng, *An efficient statistical method
    for image noise level estimation*, ICCV 2015): natural-image patches lie near a low-dimensional
    subspace, so the smallest eigenvalues λ_i … λ_M are σ² alone; take the largest such tail whose mean
    τ is also its median (as many eigenvalues above as below) and return τ.
    patch_means_removed: subtract each patch's own mean and drop the eigenvalue 0 this leaves — for
    patches chosen by their (noisy) mean, whose noise along the mean direction the choice distorts; for
    white noise the patch mean is independent of the deviations from it, which keep variance σ²."""
    if patch_means_removed:
        x = x - x.mean(1, keepdims=True)
    x = x - x.mean(0)
    lam = np.sort(np.linalg.eigvalsh(x.T @ x / len(x)))[int(patch_means_removed):]
    for n in range(len(lam), 0, -1):
        tail = lam[:n]
        tau = tail.mean()
        if np.sum(tail > tau) == np.sum(tail < tau):
            return float(tau)
    return float(lam[0])


def estimate_sigma(image: np.ndarray) -> float:
    """Blind Gaussian σ of an image on [0,1] ((H, W), (H, W, C) or frames (F, H, W, C): the median over
    frames): `weak_texture_sigma`, clipping detected, at least SIGMA_FLOOR."""
    arr = np.asarray(image)
    if arr.ndim == 4:
        return max(float(np.median([weak_texture_sigma(f) for f in arr])), SIGMA_FLOOR)
    return max(weak_texture_sigma(arr), SIGMA_FLOOR)


def pixel_shuffle(img: np.ndarray, s: int) -> list[np.ndarray]:
    """The s² sub-images img[i::s, j::s] of an (H, W, …) array (row-major in (i, j))."""
    return [img[i::s, j::s] for i in range(s) for j in range(s)]


def pixel_unshuffle(parts: list[np.ndarray], s: int, shape: tuple) -> np.ndarray:
    """Inverse of `pixel_shuffle`."""
    out = np.empty(shape, dtype=parts[0].dtype)
    for k, (i, j) in enumerate((i, j) for i in range(s) for j in range(s)):
        out[i::s, j::s] = parts[k]
    return out


def pd_denoise(denoise, image: np.ndarray, stride: int = 2, scale: float = 3.0, refine: float = 1.0,
               refine_denoise=None) -> tuple[np.ndarray, dict]:
    """Blind denoising of spatially correlated (camera) noise by pixel-shuffle down-sampling (PD; Zhou,
    Jiao, Chen, Yang & Kwong, *When AWGN-based denoiser meets real noises*, AAAI 2020).

    Demosaicing and JPEG correlate the noise of neighbouring pixels, so a denoiser for white noise sees
    it as texture. The sub-images y[i::s, j::s] hold pixels s apart, whose noise is nearly independent:
    each is denoised at scale·σ̂_k (σ̂_k = `estimate_sigma` of sub-image k), the results are put back in
    place, and a light second pass D(x̂, refine·mean σ̂_k) removes the grid pattern that independent
    sub-images leave. σ̂_k measures the white part of the noise only (JPEG removes the finest-scale noise
    in flat areas, where the estimator looks), so it is below the noise std, hence scale > 1 (default 3,
    refine 1; bench/realnoise.py measures them on PolyU-Canon).

    Args:
        denoise: f(image, σ) → image, a Gaussian denoiser on [0,1] numpy arrays.
        image: (H, W) or (H, W, C) on [0,1].
        refine_denoise: the denoiser of the light second pass (default `denoise`); a smaller prior does
            it as well at a fraction of the cost (CHANGELOG: PolyU-Canon with either).
    Returns:
        (x̂, report: stride, sigmas (σ̂_k per sub-image, [0,1] scale), scale, sigma_refine).
    """
    parts = pixel_shuffle(np.asarray(image, np.float32), stride)
    try:
        sigmas = [estimate_sigma(p) for p in parts]
    except ScoretoolError as e:
        raise ScoretoolError(f"the real-noise mode's {stride}×{stride} sub-images ({parts[-1].shape[1]}×{parts[-1].shape[0]}) "
                             f"are too small: {e} (or use --no-real-noise)") from None
    out = pixel_unshuffle([denoise(p, scale * s) for p, s in zip(parts, sigmas)], stride, np.shape(image))
    second = refine * float(np.mean(sigmas))
    if second > 0:
        out = (refine_denoise or denoise)(out, second)
    return out, {"stride": stride, "sigmas": sigmas, "scale": scale, "sigma_refine": second}


WHITE_NOISE_MIN = 2 / 255
"""The least finest-scale σ̂ (2 grey levels) taken as the noise level itself: JPEG'd camera noise, for which
the real-noise mode scales σ̂ three-fold, shows at most 0.81 grey levels there on the 55 PolyU-Canon crops
(bench/realnoise.py camera-noise), while white noise of 2 grey levels or more shows about its own level."""


def white_noise_sigma(image: np.ndarray) -> float | None:
    """`estimate_sigma` of an image (H, W) or (H, W, C) on [0,1] whose finest scale shows noise of at least
    WHITE_NOISE_MIN, else None. Such noise is its own level: the real-noise mode (`pd_denoise`) would smooth
    it at three times that (−9 dB on CBSD68 with white noise of 3 grey levels, bench/realnoise.py route), so
    `denoise` takes the blind Gaussian path. Strong noise that is correlated too shows ≥ 2 grey levels at the
    finest scale and takes that path as well: the sub-images' σ̂ is no test of correlation here, since
    texture raises it as correlation does, most at low noise. Patches every 2nd pixel, as for the blind σ:
    fewer make the estimate unstable on correlated noise."""
    sigma = estimate_sigma(image)
    return sigma if sigma >= WHITE_NOISE_MIN else None


def describe_noise(image: np.ndarray, stride: int = 2, denoise=None) -> dict:
    """The blind noise model of one image (H, W) or (H, W, C) on [0,1], for `scoretool noise` with a clean
    prior: sigma = `estimate_sigma` of the image (white Gaussian noise; what `denoise --no-real-noise` starts
    from), sigma_pd = its mean over the stride² pixel-shuffled sub-images (what the real-noise mode,
    `pd_denoise`, scales), and pd_ratio = sigma_pd / sigma. Pixels `stride` apart share less correlated
    noise, so pd_ratio ≈ 1 for independent noise and grows with the correlation between neighbours
    (demosaicing, JPEG): above CORRELATED_RATIO `correlated`. `white`: sigma ≥ WHITE_NOISE_MIN, as in
    `white_noise_sigma` (then `denoise` takes the blind Gaussian path for an 8-bit colour image, otherwise the
    real-noise mode). Both σ̂ are at least SIGMA_FLOOR: JPEG can leave flat areas with no finest-scale noise
    at all (weak-texture σ̂ = 0 on 33 of the 55 PolyU-Canon crops, whose noise std is 2–6 grey levels;
    their pd_ratio is against the floor).
    sigma_pd, pd_ratio and correlated are None where the sub-images are too small for a σ̂ (MIN_PATCHES).
    poisson_gaussian: (a, b) of Var[y | x] = a·x + b (`estimate_poisson_gaussian`, with the Gaussian
    denoiser `denoise` where given), for signal-dependent noise."""
    sigma = estimate_sigma(image)
    try:
        pair = dict(zip("ab", estimate_poisson_gaussian(image, denoise=denoise)))
    except ScoretoolError:  # too small for the intensity bins
        pair = None
    try:
        sigma_pd = float(np.mean([estimate_sigma(p) for p in pixel_shuffle(np.asarray(image), stride)]))
    except ScoretoolError:  # sub-images too small
        sigma_pd = None
    ratio = None if sigma_pd is None else sigma_pd / sigma
    return {"family": "gaussian", "parameter_name": "sigma", "parameter": sigma, "sigma_pd": sigma_pd,
            "pd_ratio": ratio, "correlated": None if ratio is None else ratio > CORRELATED_RATIO,
            "white": sigma >= WHITE_NOISE_MIN,
            "poisson_gaussian": pair, "method": "weak-texture PCA (clean prior)"}


def estimate_poisson_gaussian(image: np.ndarray, d: int = PATCH, stride: int | None = None, bins: int = 10,
                              confidence: float = 0.99, clipped: bool | None = None,
                              denoise=None) -> tuple[float, float]:
    """(a, b) of signal-dependent noise Var[y | x] = a·x + b from one image on [0,1] ((H, W), (H, W, C) or
    frames (F, H, W, C); channels and frames pooled), in the spirit of Foi, Trimeche, Katkovnik &
    Egiazarian, *Practical Poissonian-Gaussian noise modeling and fitting for single-image raw-data*,
    IEEE TIP 2008: the image's patches are split into `bins` equally populated intensity bins, each bin's
    noise variance is the weak-texture estimate of its patches (`weak_texture_sigma`'s selection and
    eigenvalue rule, on the patches less their own means, which the binning distorts), and a·x + b ≥ 0
    is fitted to (bin mean, variance) robustly (`_fit_variance_line`). The part of the variance that
    dominates is found well; a part under ~20% of the total at mid-grey is not (and matters little):
    where the read noise is too weak to hide the lattice of photon counts (√b ≲ a/2), `count_lattice`
    reads (a, b) from the lattice instead. Otherwise, with a Gaussian denoiser `denoise` (a clean prior),
    the line is fitted again to the prior's residuals (`prior_variance_fit`), which see through the faint
    texture that inflates weak-texture variances.
    stride: patch spacing (None: every pixel, wider where `PATCH_BUDGET` needs it; on BSD68, first 12,
    bench/realnoise.py pg, every pixel instead of every 2nd took the minor term's median error from 37%
    to 19% (b, a = 0.01) and from 57% to 17% (a, b = 0.0025))."""
    arr = np.asarray(image, dtype=np.float64)
    frames = arr if arr.ndim == 4 else _as_hwc(arr)[None]
    need = 2 * MIN_PATCHES  # two intensity bins
    shapes = [f.shape for f in frames]
    stride = patch_stride(shapes, d) if stride is None else stride
    found = _patch_count(shapes, d, stride)
    if found < need:
        raise ScoretoolError(f"image too small to estimate Poisson–Gaussian noise ({found} patches of {d}×{d}; "
                             f"{need} needed, about {int(math.sqrt(need) * stride + d)}² grey pixels): give a and b (--a, --b)")
    parts = [_weak_texture_patches(f, d, stride) for f in frames]
    x = np.concatenate([p[0] for p in parts])
    xi = np.concatenate([p[1] for p in parts])
    clipped = is_clipped(arr) if clipped is None else clipped
    tau0 = _texture_threshold(d, confidence)
    mean = x.mean(1)
    bins = max(2, min(bins, len(x) // (8 * x.shape[1])))  # each bin at least 8 patches per dimension
    edges = np.quantile(mean, np.linspace(0, 1, bins + 1))
    level, variance, count = [], [], []
    for k, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        sel = (mean >= lo) & ((mean < hi) if k < bins - 1 else (mean <= hi))
        if int(sel.sum()) < 8 * x.shape[1]:
            continue
        v, m = _weak_texture_variance(x[sel], xi[sel], tau0, 4, clipped, binned=True)
        if v > 0:
            level.append(m)
            variance.append(v)
            count.append(int(sel.sum()))
    if len(level) < 2:  # a flat image: one intensity
        return 0.0, weak_texture_sigma(frames[0]) ** 2
    a, b = _fit_variance_line(np.asarray(level), np.asarray(variance), np.asarray(count, float))
    lattice = count_lattice(frames, a, b)
    if lattice is None and denoise is not None:
        return prior_variance_fit(denoise, frames, a, b)
    return lattice or (a, b)


PRIOR_FIT_SIDE = 512
"""`prior_variance_fit` reads a central crop of at most this side of each frame (two passes of the prior
over it: a fraction of one pass on a large image)."""
PRIOR_FIT_BINS = 20
PRIOR_FIT_KEEP = 0.5
"""`prior_variance_fit` uses the smoother half of each of its PRIOR_FIT_BINS intensity bins (local gradient
energy of x̂ at or below the bin's median; bench/realnoise.py pg, BSD68 and CBSD68 first 12: of all
pixels, the quarter and the tenth, the half gave the smallest errors)."""


def prior_variance_fit(denoise, image: np.ndarray, a: float, b: float, seed: int = 0) -> tuple[float, float]:
    """(a, b) of Var[y | x] = a·x + b fitted to a denoiser's residuals, from a first estimate (a, b).

    x̂ = pg_denoise(denoise, y, a, b). For y_i = x_i + √v_i·n_i, Stein's lemma gives E[(y_i − x_i)(x̂_i − x_i)]
    = v_i·E[J_ii] (J_ii = ∂x̂_i/∂y_i) and Tweedie's second-order identity, for a posterior-mean denoiser,
    E[(x̂_i − x_i)²] = v_i·E[J_ii]; together E[(y_i − x̂_i)²] = v_i·(1 − E[J_ii]) (the per-pixel form of
    noise.prior_sigma's identity). J_ii comes from one Hutchinson probe p (p_i·(x̂(y + εp) − x̂(y))_i/ε,
    unbiased for J_ii, averaged over a bin). Pixels are split into PRIOR_FIT_BINS equally populated bins
    of x̂; in each, the smoother half (PRIOR_FIT_KEEP: texture is where x̂ errs most) gives the variance
    Σ(y − x̂)²/Σ(1 − J_ii) at its mean x̂, and `_fit_variance_line` fits a·x + b to those. The residuals
    use every smooth pixel, not only flat patches, and the prior removes the faint texture a weak-texture
    variance counts as noise (bench/realnoise.py pg, first 12 images, median error of the minor term: BSD68
    b at a = 0.01 19% → 17%, a at b = 0.0025 17% → 8.1%; CBSD68 19% → 4.2% and 8.5% → 2.9%).
    image: (H, W), (H, W, C) or frames (F, H, W, C), pooled; each frame read on a central crop of side at
    most PRIOR_FIT_SIDE. Data clipped to [0,1] (more than 0.1% of the values exactly 0 or 1; unclipped
    noise may pass them) leaves out pixels with x̂ within 2 noise stds of either end.
    Returns (a, b), or the first estimate where fewer than two bins are left."""
    from scipy.ndimage import uniform_filter

    arr = np.asarray(image, np.float64)
    frames = arr if arr.ndim == 4 else _as_hwc(arr)[None]
    rng = np.random.default_rng(seed)
    eps = 0.01 * math.sqrt(max(a * float(np.median(frames)) + b, 1e-12))  # a small step against the noise
    level, residual, dof, smooth = [], [], [], []
    for frame in frames:
        h, w = frame.shape[:2]
        top, left = max(0, (h - PRIOR_FIT_SIDE) // 2), max(0, (w - PRIOR_FIT_SIDE) // 2)
        y = frame[top:top + PRIOR_FIT_SIDE, left:left + PRIOR_FIT_SIDE]
        y = y[..., 0] if y.shape[-1] == 1 else y
        probe = rng.standard_normal(y.shape)
        xhat = pg_denoise(denoise, y, a, b)[0]
        jacobian = probe * (pg_denoise(denoise, y + eps * probe, a, b)[0] - xhat) / eps
        xhat3, y3, j3 = (_as_hwc(t) for t in (xhat, y, jacobian))
        for c in range(xhat3.shape[2]):
            level.append(xhat3[..., c].ravel())
            residual.append(((y3 - xhat3)[..., c] ** 2).ravel())
            dof.append(1 - j3[..., c].ravel())
            smooth.append(uniform_filter(sum(_squared_differences(xhat3[..., c])), PATCH).ravel())
    level, residual, dof, smooth = (np.concatenate(t) for t in (level, residual, dof, smooth))
    if float(np.mean((frames == 0) | (frames == 1))) > 1e-3:
        margin = 2 * np.sqrt(np.maximum(a * level + b, 0))
        inside = (level > margin) & (level < 1 - margin)
        level, residual, dof, smooth = level[inside], residual[inside], dof[inside], smooth[inside]
    order = np.argsort(level)
    means, variances, counts = [], [], []
    for part in np.array_split(order, PRIOR_FIT_BINS):
        part = part[smooth[part] <= np.quantile(smooth[part], PRIOR_FIT_KEEP)] if part.size else part
        if part.size < 64 or dof[part].sum() <= 0:
            continue
        means.append(level[part].mean())
        variances.append(residual[part].sum() / dof[part].sum())
        counts.append(part.size)
    if len(means) < 2:
        return a, b
    return _fit_variance_line(np.asarray(means), np.asarray(variances), np.asarray(counts, float))


LATTICE_SIGNIFICANCE = 12.0
"""`count_lattice` takes the lattice as found when |φ| at its frequency exceeds this many times 1/√N, the
typical |φ| of N values without one (a search over a few hundred frequencies stays below ~4/√N), and
four times the median |φ| over the searched frequencies."""
LATTICE_VALUES = 1 << 21
"""`count_lattice` reads at most this many values (an even stride through larger images)."""


def _phi_magnitude(omega: np.ndarray, values: np.ndarray, chunk: int = 1 << 22) -> np.ndarray:
    """|mean(e^{iωy})| over `values` for each ω, about `chunk` complex numbers at a time."""
    rows = max(1, chunk // max(values.size, 1))
    return np.concatenate([np.abs(np.exp(1j * np.outer(omega[i:i + rows], values)).mean(1))
                           for i in range(0, len(omega), rows)])


def count_lattice(image: np.ndarray, a: float, b: float, span: float = 0.3) -> tuple[float, float] | None:
    """(a, b) read from the lattice of photon counts, or None where the read noise hides it.

    For y = a·k + c + g with k an integer count (any distribution), c an offset and g ~ N(0, b), the
    characteristic function φ(ω) = mean(e^{iωy}) has |φ(2π/a)| = e^{−b·(2π/a)²/2}, since e^{i2πk} = 1:
    the peak of |φ| in ω ∈ 2π/a·[1 − span, 1 + span] (a from the variance fit) gives a = 2π/ω* and
    b = −2·ln|φ(ω*)|/ω*². This reads the Poisson–Gaussian law itself, not its variance, so the minor term
    comes out as well as the major one, where a variance fit cannot: for a = 0.04, b = 10⁻⁴ even a
    variance-based estimator that knows the clean image has a Cramér–Rao std of b̂ of 89% (median over
    the first 12 BSD68 images; `oracle_relative_std` in bench/realnoise.py pg).
    The peak stands out when √b ≲ a/2: high-gain sensors, photon counting. Values on a quantisation grid
    of step q (8- or 16-bit files) have |φ| damped by sinc(ωq/2) (Widrow's quantisation model, which
    needs read noise of at least about half a step), taken out.
    Refused (None) when the peak is not significant (`LATTICE_SIGNIFICANCE`) or lies at the edge of the
    search; on a grid, when a is under two steps (the model needs ω < π/q), a whole number of them, or
    √b under half a step (the gaps of a stretched histogram, not counts); and when a·x + b disagrees with
    the variance fit (a, b) by more than 30% at the median or the 10th percentile of the values.
    """
    values = np.asarray(image, np.float64).ravel()
    values = values[:: max(1, -(-values.size // LATTICE_VALUES))]
    values = values[(values != 0) & (values != 1)]  # values clipped to 0 or 1 are off the lattice
    q = next((q for q in (1 / 255, 1 / 65535) if np.allclose(values / q, np.round(values / q), rtol=0, atol=0.01)), 0.0)
    if a <= 0 or a / (1 - span) < 2 * q or values.size < 1000:
        return None
    coarse = 2 * math.pi / a * np.linspace(1 - span, 1 + span, 241)
    if q:
        coarse = coarse[coarse < 0.95 * math.pi / q]  # |φ| of grid data mirrors about π/q
        if coarse.size < 8:
            return None
    coarse_mags = _phi_magnitude(coarse, values[:: max(1, values.size // 20000)])
    k = int(np.argmax(coarse_mags))
    fine = coarse[k] + (coarse[1] - coarse[0]) * np.linspace(-1.5, 1.5, 31)
    mags = _phi_magnitude(fine, values[:: max(1, values.size // (1 << 18))])
    j = int(np.argmax(mags))
    if j in (0, len(fine) - 1):
        return None
    lo, top, hi = np.log(np.maximum(mags[j - 1:j + 2], 1e-300))
    curvature = lo - 2 * top + hi
    shift = float(np.clip(0.5 * (lo - hi) / curvature, -1, 1)) if curvature < 0 else 0.0
    omega = fine[j] + shift * (fine[1] - fine[0])
    peak = float(_phi_magnitude(np.array([omega]), values)[0])
    if peak < max(LATTICE_SIGNIFICANCE / math.sqrt(values.size), 4 * float(np.median(coarse_mags))):
        return None
    a_lat = 2 * math.pi / omega
    damping = float(np.sinc(omega * q / (2 * math.pi))) if q else 1.0  # np.sinc(t) = sin(πt)/(πt)
    if peak >= damping:
        return None
    b_lat = -2 * math.log(peak / damping) / omega**2
    if q and (a_lat < 2 * q or abs(a_lat / q - round(a_lat / q)) < 0.05 or b_lat < (q / 2) ** 2):
        return None
    for level in np.quantile(values, [0.1, 0.5]):
        if abs((a_lat * level + b_lat) / max(a * level + b, 1e-12) - 1) > 0.3:
            return None
    return float(a_lat), float(b_lat)


def _fit_variance_line(m: np.ndarray, v: np.ndarray, count: np.ndarray, rounds: int = 10) -> tuple[float, float]:
    """(a, b) ≥ 0 of v ≈ a·m + b, by iteratively reweighted least squares: weights count / fit² (a variance
    estimate's spread grows with the variance) times a Cauchy weight 1 / (1 + (r/0.1)²) of the relative
    residual r, so that a few bins inflated by texture or shrunk by a mixed bin do not pull the line."""
    a, b = 0.0, float(np.median(v))
    robust = np.ones_like(v)
    for _ in range(rounds):
        fit = np.maximum(a * m + b, 1e-12)
        w = count / fit**2 * robust
        design = np.stack([m, np.ones_like(m)], 1) * np.sqrt(w)[:, None]
        a, b = np.linalg.lstsq(design, v * np.sqrt(w), rcond=None)[0]
        if a < 0:
            a, b = 0.0, float(np.sum(w * v) / np.sum(w))
        elif b < 0:
            a, b = float(np.sum(w * m * v) / np.sum(w * m * m)), 0.0
        robust = 1 / (1 + ((v - (a * m + b)) / (0.1 * np.maximum(a * m + b, 1e-12))) ** 2)
    return float(a), float(b)


POISSON_FREE = 0.01
"""a·max(y) below this fraction of b: the Poisson part is under 1% of the variance everywhere, and the
noise is taken as Gaussian with variance b (no transform)."""
COUNTS_TABLE = 1000.0
"""inverse_anscombe tabulates E[f(y) | x] up to this many counts x/a; above, its asymptote is exact to
far below a count."""


def anscombe_floor(a: float, b: float) -> float:
    """The value below which `anscombe` (a > 0) clips to 0: y/a + 3/8 + b/a² = 0 at y = −(3a/8 + b/a)."""
    return -(0.375 * a + b / a)


def anscombe(y: np.ndarray, a: float, b: float) -> np.ndarray:
    """Generalised Anscombe transform for Var[y | x] = a·x + b (Murtagh, Starck & Bijaoui 1995; in the
    gain/σ form of Mäkitalo & Foi 2013): f(y) = 2·√(max(y/a + 3/8 + b/a², 0)); f(y) has variance ≈ 1."""
    return 2 * np.sqrt(np.maximum(np.asarray(y, np.float64) / a + 0.375 + b / a**2, 0))


def _anscombe_expectation(lam: np.ndarray, s2: float, nodes: int = 64) -> np.ndarray:
    """E[f(z)] for z = Poisson(λ) + N(0, s2) and f(z) = 2√(max(z + 3/8 + s2, 0)) (counts scale: λ = x/a,
    s2 = b/a²): a Poisson sum over k of Gauss–Hermite quadrature over the Gaussian part."""
    from scipy.stats import poisson

    t, w = np.polynomial.hermite_e.hermegauss(nodes)
    w = w / math.sqrt(2 * math.pi)
    top = float(lam.max())
    k = np.arange(int(top + 12 * math.sqrt(top) + 40))
    g = 2 * np.sqrt(np.maximum(k[:, None] + math.sqrt(s2) * t[None, :] + 0.375 + s2, 0)) @ w
    return poisson.pmf(k[None, :], lam[:, None]) @ g


def inverse_anscombe(d: np.ndarray, a: float, b: float, top: float = 1.0) -> np.ndarray:
    """Exact unbiased inverse of `anscombe` (Mäkitalo & Foi, *Optimal inversion of the generalized
    Anscombe transformation for Poisson-Gaussian noise*, IEEE TIP 2013): the x with E[f(y) | x] = d,
    from E[f(y) | x] tabulated on x/a ∈ [0, min(1.5·top/a, COUNTS_TABLE)] (`_anscombe_expectation`) and
    interpolated; above the table, the asymptote x = a·(d²/4 − 1/8 − b/a²). The algebraic inverse
    a·(d²/4 − 3/8 − b/a²) is biased where counts are low; this one is not."""
    lam_top = min(1.5 * max(top, 1e-6) / a + 10, COUNTS_TABLE)
    lam = np.linspace(0, math.sqrt(lam_top), 1024) ** 2
    expect = _anscombe_expectation(lam, b / a**2)
    d = np.asarray(d, np.float64)
    return np.where(d <= expect[-1], a * np.interp(d, expect, lam), a * (d**2 / 4 - 0.125 - b / a**2))


def pg_denoise(denoise, image: np.ndarray, a: float, b: float) -> tuple[np.ndarray, dict]:
    """Poisson–Gaussian denoising with a Gaussian denoiser: stabilise (`anscombe`: noise std ≈ 1), map to
    [0,1] (t' = (f(y) − lo)/(hi − lo), noise std 1/(hi − lo)), denoise, map back and invert without bias
    (`inverse_anscombe`) — the variance-stabilisation route of Mäkitalo & Foi 2013.

    Args:
        denoise: f(image, σ) → image, a Gaussian denoiser on [0,1] numpy arrays.
        image: (H, W) or (H, W, C) on [0,1] (one a, b for all channels).
        a, b: Var[y | x] = a·x + b on the [0,1] scale; with a·max(y) < POISSON_FREE·b, Gaussian noise of
            variance b.
    Returns:
        (x̂, report: a, b, sigma_stabilised: the noise std the denoiser was given, on its [0,1] scale).
    """
    y = np.asarray(image, np.float64)
    if a * max(float(y.max()), 0.0) < POISSON_FREE * b or a <= 0:
        s = max(math.sqrt(max(b, 0.0)), SIGMA_FLOOR)
        return np.asarray(denoise(y.astype(np.float32), s), np.float64), {"a": a, "b": b, "sigma_stabilised": s}
    t = anscombe(y, a, b)
    lo, hi = float(t.min()), float(t.max())
    span = max(hi - lo, 1e-6)
    sigma = 1.0 / span
    d = np.asarray(denoise(((t - lo) / span).astype(np.float32), sigma), np.float64) * span + lo
    return inverse_anscombe(d, a, b, top=float(y.max())), {"a": a, "b": b, "sigma_stabilised": sigma}
