"""One trainer: denoising score matching on clean images (a prior) or noisy ones (Noise2Score).

loss = w(σ)·‖D(u + σn, σ) − u‖²,  w = 1/c_out²,  ln σ ~ U(ln σ_min, ln σ_max)
(Karras et al. 2022, EDM; the loss itself is `nets.edm_loss`, beside the preconditioning it weights).
With u = clean images, D is the MMSE Gaussian denoiser (a prior). With u = noisy images and small σ
(σ_a ≈ 0.001–0.1) it is amortised AR-DAE (Lim et al., ICML 2020): s(y, σ_a → 0) is the score of the
noisy density (Noise2Score, Kim & Ye, NeurIPS 2021).

Reproducibility: the patch of sample i and the noise of step t are drawn from generators seeded by
(seed, i) and (seed, t), so a run resumed from a checkpoint continues exactly as if uninterrupted.
The patch sampler, the checkpoint and the loop are kept together (~370 lines): they share that
seeding contract.
"""

from __future__ import annotations

import functools
import math
import os
import signal
import subprocess
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset

from . import __version__
from .engine import autocast, select_device
from .errors import InputError, ModelError, ScoretoolError
from .files import atomic_output, list_images
from .io import read_image, unit_sigma
from .nets import EDMPrecond, UNetConfig, adapt_channels, edm_loss, widen
from .weights import load_extra, load_model, read_metadata, save_model


@dataclass
class TrainConfig:
    """Every setting of a training run (recorded in the model's metadata as `train_config`)."""

    data: str
    mode: str = "clean"  # "clean" (prior) or "noisy" (Noise2Score)
    steps: int = 20000
    patch: int = 64
    batch: int = 32
    lr: float = 1e-3
    sigma_min: float = 0.002
    sigma_max: float = 10.0
    sigma_focus: tuple[float, float] | None = (0.01, 0.5)  # half the samples from here (denoising range)
    ema: float = 0.999
    seed: int = 0
    channels: int | None = None
    widths: list[int] | None = None  # None: [32, 64, 128], or the --init model's; wider than --init grows it (nets.widen)
    blocks_per_level: int = 2
    checkpoint_minutes: float = 5.0
    time_limit_minutes: float | None = None
    precision: str = "auto"
    init: str | None = None
    teacher: str | None = None  # distil: regress on this model's D(u + σn, σ) instead of u
    device: str = "cpu"  # "auto" = CUDA, then MPS, then CPU (engine.select_device)
    workers: int = 0  # DataLoader worker processes (0: patches are cut in the training process)
    lr_schedule: str = "steps"  # "time": the cosine decay ends at --time-limit if that comes first
    noise: dict = field(default_factory=dict)  # Noise2Score: family and parameter of the data (sigma in its pixel units)
    command: str = ""
    cache_mb: int = 1024
    colour_permute: bool = False  # colour images: half the patches get a random other channel order


OTHER_CHANNEL_ORDERS = ((0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))


class PatchDataset(Dataset):
    """Random augmented patches; sample i is a pure function of (seed, i). Images stream from disk
    through a bounded in-memory cache, so folders larger than memory train.

    Augmentation: a random crop, one of the 8 flips/rotations, and with `colour_permute` (colour only)
    one of the 5 other channel orders for half the patches: spatial structure and the statistics of
    each channel are kept (moved to another channel), the hues seen widen beyond one photo collection's."""

    def __init__(self, files: list[Path], patch: int, seed: int, channels: int, cache_mb: int,
                 colour_permute: bool = False):
        self.files, self.patch, self.seed, self.channels = files, patch, seed, channels
        self.colour_permute = colour_permute  # colour only: `train` refuses it for grey data
        self.cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self.cache_bytes, self.cache_limit = 0, cache_mb * 2**20

    def __len__(self) -> int:
        return 2**62

    def _image(self, k: int) -> np.ndarray:
        if k in self.cache:
            self.cache.move_to_end(k)
            return self.cache[k]
        img = read_image(self.files[k]).pixels[0]  # (H, W, C) float32 on [0,1]
        if img.shape[2] != self.channels:
            img = img.mean(axis=2, keepdims=True) if self.channels == 1 else np.repeat(img, 3, axis=2)
        self.cache[k] = img
        self.cache_bytes += img.nbytes
        while self.cache_bytes > self.cache_limit and len(self.cache) > 1:
            _, old = self.cache.popitem(last=False)
            self.cache_bytes -= old.nbytes
        return img

    def __getitem__(self, i: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, i])
        img = self._image(int(rng.integers(len(self.files))))
        p = self.patch
        h, w = img.shape[:2]
        if h < p or w < p:
            img = np.pad(img, ((0, max(0, p - h)), (0, max(0, p - w)), (0, 0)), mode="reflect")
            h, w = img.shape[:2]
        y0, x0 = int(rng.integers(h - p + 1)), int(rng.integers(w - p + 1))
        crop = img[y0 : y0 + p, x0 : x0 + p]
        crop = np.rot90(crop, int(rng.integers(4)))
        if rng.integers(2):
            crop = crop[:, ::-1]
        if self.colour_permute and rng.integers(2):
            crop = crop[:, :, list(OTHER_CHANNEL_ORDERS[int(rng.integers(len(OTHER_CHANNEL_ORDERS)))])]
        return torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1)))


class StepSampler(torch.utils.data.Sampler):
    """Indices of the samples of steps start, start+1, … for this process (rank) of `world`."""

    def __init__(self, start_step: int, batch: int, rank: int = 0, world: int = 1):
        self.start, self.batch, self.rank, self.world = start_step, batch, rank, world

    def __iter__(self):
        step = self.start
        while True:
            base = (step * self.world + self.rank) * self.batch
            yield from range(base, base + self.batch)
            step += 1


def learning_rate(cfg: TrainConfig, step: int, time_fraction: float = 0.0) -> float:
    """Linear warm-up over 200 steps, then cosine decay to 2% of lr at `steps` — or, with
    lr_schedule = "time", at whichever comes first of `steps` and the time limit (`time_fraction`
    is the part of this run's time limit used), so a fixed time budget still ends annealed."""
    warm = min(1.0, (step + 1) / 200)
    t = min(step / max(cfg.steps, 1), 1.0)
    if cfg.lr_schedule == "time":
        t = max(t, min(time_fraction, 1.0))
    return cfg.lr * warm * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t)))


def sample_sigma(cfg: TrainConfig, n: int, g: torch.Generator) -> torch.Tensor:
    """ln σ ~ U(ln σ_min, ln σ_max), except that half the samples come from the `sigma_focus`
    sub-range (the σ of everyday denoising), so the wide range needed to sample from pure noise
    does not starve the range users denoise at."""
    lo, hi = math.log(cfg.sigma_min), math.log(cfg.sigma_max)
    u = torch.rand(n, generator=g, device=g.device)
    log_sigma = lo + (hi - lo) * u
    if cfg.sigma_focus:
        flo, fhi = (math.log(min(max(v, cfg.sigma_min), cfg.sigma_max)) for v in cfg.sigma_focus)
        focus = torch.rand(n, generator=g, device=g.device) < 0.5
        log_sigma = torch.where(focus, flo + (fhi - flo) * u, log_sigma)
    return log_sigma.exp()


def dsm_loss(net, u: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor, device, precision="auto",
             teacher=None):
    """`nets.edm_loss` of `net` (an EDMPrecond, or one wrapped by DistributedDataParallel) under the
    training precision."""
    sigma_data = (net.module if hasattr(net, "module") else net).config.sigma_data
    with autocast(device, precision):
        return edm_loss(net, u, sigma, noise, sigma_data, teacher)


def git_revision() -> str:
    """The commit of the running code (short hash), with "+changes" when tracked files other than bench results
    differ from it; "unknown" outside a git checkout. Recorded in models and bench JSON files."""
    git = functools.partial(subprocess.run, capture_output=True, text=True, cwd=Path(__file__).parent, timeout=5)
    try:
        rev = git(["git", "rev-parse", "--short", "HEAD"]).stdout.strip()
        changed = git(["git", "diff", "--quiet", "HEAD", "--", ":/", ":(exclude,top)bench/results"]).returncode == 1
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (rev + ("+changes" if changed else "")) if rev else "unknown"


def checkpoint_path(output: Path) -> Path:
    """The checkpoint beside a model file: NAME.safetensors → NAME.ckpt.safetensors."""
    return output.with_name(output.name.replace(".safetensors", "") + ".ckpt.safetensors")


def _save_checkpoint(path: Path, net, ema, opt, step: int, cfg: TrainConfig, info: dict) -> None:
    """Write the training state atomically; a state with NaN or infinite tensors is never written (the
    previous checkpoint stays), so a checkpoint can always be resumed."""
    extra = {f"ema.{k}": v for k, v in ema.net.state_dict().items()}
    for i, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            extra[f"opt.{i}.{k}"] = torch.as_tensor(v)
    tensors = [*net.state_dict().values(), *extra.values()]
    if not all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point()):
        raise ScoretoolError(f"step {step}: the weights or optimiser state are not finite; training stopped"
                             + (f" (the last checkpoint {path} is kept)" if path.exists() else ""))
    with atomic_output(path) as tmp:
        save_model(tmp, net, {**info, "checkpoint_step": step, "train_config": asdict(cfg)}, extra)


RESUME_FIXED = {"mode": "--clean/--noisy", "channels": "image channels", "patch": "--patch", "batch": "--batch",
                "seed": "--seed", "colour_permute": "--colour-permute", "sigma_min": "--sigma-min", "sigma_max": "--sigma-max"}
"""Settings a resumed run must share with its checkpoint's (they fix the network's input, the σ range and the
data order); the learning rate, the steps and the time limit may change. Not checked: the folder's files and
the number of torchrun processes, which also set the data order."""


def _check_same_run(path: Path, cfg: TrainConfig) -> None:
    """Refuse --resume when a RESUME_FIXED setting differs from the checkpoint's run (it would not continue
    that run, and the record would claim the new setting for every step)."""
    try:
        saved = read_metadata(path)[1].get("train_config") or {}
    except Exception:  # noqa: BLE001 - a damaged checkpoint is _load_checkpoint's to report
        return
    changed = [f"{flag} {saved[k]} → {getattr(cfg, k)}" for k, flag in RESUME_FIXED.items()
               if k in saved and saved[k] != getattr(cfg, k)]
    if changed:
        raise ScoretoolError(f"--resume continues {path} exactly, but its run had other settings: {', '.join(changed)} "
                             f"(give the same settings and data, or start afresh with --overwrite)")


def _load_checkpoint(path: Path, net, ema, opt, steps: int) -> int:
    """Restore net, EMA and optimiser from a checkpoint; a damaged one (unreadable, non-finite tensors,
    another architecture, missing state, a step outside 0..steps) is refused (ModelError) before training."""
    try:
        fresh, info = load_model(path)
        net.load_state_dict(fresh.state_dict())
        extra = load_extra(path)
        ema.net.load_state_dict({k[4:]: v for k, v in extra.items() if k.startswith("ema.")})
        state = opt.state_dict()
        for key, v in extra.items():
            if key.startswith("opt."):
                _, i, name = key.split(".", 2)
                state["state"].setdefault(int(i), {})[name] = v
        opt.load_state_dict(state)
        step = int(info["checkpoint_step"])
    except ModelError as e:
        raise ModelError(f"--resume: damaged checkpoint: {e}") from None
    except Exception as e:  # noqa: BLE001 - whatever is wrong, the checkpoint cannot be resumed
        raise ModelError(f"--resume: damaged checkpoint {path} ({type(e).__name__}: {e})") from None
    if not 0 <= step <= steps:
        raise ModelError(f"--resume: damaged checkpoint {path} (step {step} outside 0..{steps})")
    return step


class StopRequest:
    """SIGTERM / SIGINT (kill, Ctrl-C) while training: finish the step, write the checkpoint and the model,
    then stop — like --time-limit. A second signal interrupts at once. Main thread only (signal rule)."""

    def __init__(self):
        self.requested, self._old = False, {}

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def train(cfg: TrainConfig, output: Path, resume: bool = False,
          on_step: Callable[[int, float, float], None] | None = None,
          on_skip: Callable[[str], None] | None = None) -> dict:
    """Train and write the EMA weights to `output`; returns the training record (also in metadata).
    SIGTERM / SIGINT stop it cleanly with a checkpoint and a usable model (StopRequest). Files of the
    folder that are not readable images are left out before the first step, each passed to `on_skip`
    ("FILE: problem") and listed in the record's `skipped_files`."""
    with StopRequest() as stop:
        return _train(cfg, output, resume, on_step, on_skip, stop)


def readable_images(files: list[Path]) -> tuple[list[Path], list[str], set[int], set[float]]:
    """Every file decoded once (and dropped): the readable images, "FILE: problem" for the others, the
    channel counts and the widths of the value ranges seen (255 for 8-bit, 1 for float). So a bad file is
    reported before training, not met hours into it."""
    good, bad, channels, spans = [], [], set(), set()
    for f in files:
        try:
            image = read_image(f)
        except InputError as e:
            bad.append(str(e))
        else:
            good.append(f)
            channels.add(image.pixels.shape[-1])
            spans.add(image.value_range[1] - image.value_range[0])
    return good, bad, channels, spans


def grey_level_sigma(sigma: float, spans: set[float]) -> float:
    """`train --sigma`, given in the training images' pixel units (as every --sigma), in grey levels of 255 as
    models record it (noise.sigma); their value ranges must have one width."""
    if len(spans) != 1:
        raise ScoretoolError(f"--sigma {sigma:g} is in the images' pixel units, but the folder mixes value ranges "
                             f"({', '.join(f'0..{v:g}' for v in sorted(spans))}): train on one kind of file")
    return 255 * unit_sigma(sigma, (0.0, next(iter(spans))))


def _train(cfg: TrainConfig, output: Path, resume: bool, on_step, on_skip, stop: StopRequest) -> dict:
    output = Path(output)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if cfg.lr_schedule not in ("steps", "time"):
        raise ScoretoolError(f"--lr-schedule {cfg.lr_schedule}: expected steps or time")
    if cfg.lr_schedule == "time" and cfg.time_limit_minutes is None:
        raise ScoretoolError("--lr-schedule time needs --time-limit")
    device = select_device(cfg.device)
    if device.type == "cuda":
        if world > 1:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    files, skipped, channels, spans = readable_images(list_images(Path(cfg.data))[0])
    if not files:
        raise ScoretoolError(f"{cfg.data}: no readable images to train on" + (f" ({skipped[0]})" if skipped else ""))
    noise_record = {**cfg.noise, "sigma": grey_level_sigma(cfg.noise["sigma"], spans)} if "sigma" in cfg.noise else cfg.noise
    for problem in skipped if on_skip and rank == 0 else ():
        on_skip(problem)
    if cfg.channels is None:
        cfg.channels = 3 if 3 in channels else 1
    if cfg.colour_permute and cfg.channels != 3:
        raise ScoretoolError("--colour-permute: the data are grey (one channel); it reorders colour channels")
    torch.manual_seed(cfg.seed)
    if cfg.init:
        net, _ = load_model(cfg.init)
        net = adapt_channels(net, cfg.channels)
        if cfg.widths:
            try:
                net = widen(net, cfg.widths)
            except ValueError as e:
                raise ScoretoolError(f"--init {cfg.init} --widths: {e}") from None
        config = net.config
    else:
        config = UNetConfig(channels=cfg.channels, widths=list(cfg.widths or [32, 64, 128]), blocks_per_level=cfg.blocks_per_level)
        net = EDMPrecond(config)
    teacher = None
    if cfg.teacher:
        teacher, _ = load_model(cfg.teacher)
        teacher = adapt_channels(teacher, cfg.channels).eval().requires_grad_(False)
        teacher = teacher.to(device, memory_format=torch.channels_last)
    net = net.train().to(device, memory_format=torch.channels_last)
    ema = EDMPrecond(config).to(device, memory_format=torch.channels_last)
    ema.load_state_dict(net.state_dict())
    ema.requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    ckpt = checkpoint_path(output)
    start = 0
    if resume:
        if not ckpt.exists():
            raise ScoretoolError(f"--resume: no checkpoint {ckpt} to resume from")
        _check_same_run(ckpt, cfg)
        start = _load_checkpoint(ckpt, net, ema, opt, cfg.steps)
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(net, device_ids=[device] if device.type == "cuda" else None)
    else:
        model = net
    info = {
        "kind": "prior" if cfg.mode == "clean" else "noise2score",
        "sigma_min": cfg.sigma_min, "sigma_max": cfg.sigma_max, "sigma_focus": cfg.sigma_focus,
        "training_data": f"{cfg.data} ({len(files)} {'clean' if cfg.mode == 'clean' else 'noisy'} images)",
        "command": cfg.command, "git_revision": git_revision(), "scoretool_version": __version__,
        "noise": noise_record, "init": cfg.init, "teacher": cfg.teacher,
        "patch": cfg.patch, "batch": cfg.batch * world, "processes": world, "colour_permute": cfg.colour_permute,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else device.type,
        "skipped_files": skipped,
    }
    data = PatchDataset(files, cfg.patch, cfg.seed, cfg.channels, cfg.cache_mb, cfg.colour_permute)
    loader = iter(DataLoader(data, batch_size=cfg.batch, sampler=StepSampler(start, cfg.batch, rank, world),
                             num_workers=cfg.workers, pin_memory=device.type == "cuda",
                             prefetch_factor=4 if cfg.workers else None, persistent_workers=cfg.workers > 0))
    t0 = last_ckpt = time.monotonic()
    train_seconds = float(read_metadata(ckpt)[1].get("train_seconds", 0.0)) if resume else 0.0
    step, loss_avg = start, None
    stopped_by_time = stopped_by_signal = False
    limit_s = cfg.time_limit_minutes * 60 if cfg.time_limit_minutes is not None else None
    ema_params, net_params = list(ema.parameters()), list(net.parameters())
    while step < cfg.steps:
        u = next(loader).to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        # σ and noise of step t come from a generator on the training device seeded by (seed, t)
        g = torch.Generator(device).manual_seed(cfg.seed * 1_000_003 + step * world + rank)
        sigma = sample_sigma(cfg, u.shape[0], g)
        noise = torch.randn(u.shape, generator=g, device=device).contiguous(memory_format=torch.channels_last)
        time_fraction = (time.monotonic() - t0) / limit_s if limit_s else 0.0
        for group in opt.param_groups:
            group["lr"] = learning_rate(cfg, step, time_fraction)
        loss = dsm_loss(model, u, sigma, noise, device, cfg.precision, teacher)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            decay = min(cfg.ema, (1 + step) / (10 + step))
            torch._foreach_lerp_(ema_params, net_params, 1 - decay)
        step += 1
        loss_value = loss.item()  # one host sync per step
        if not math.isfinite(loss_value):
            raise ScoretoolError(f"step {step}: the loss is {loss_value}; training stopped without writing {output}"
                                 + (f" (the last checkpoint {ckpt} is kept)" if ckpt.exists() else ""))
        loss_avg = loss_value if loss_avg is None else 0.98 * loss_avg + 0.02 * loss_value
        now = time.monotonic()
        if on_step and rank == 0:
            on_step(step, loss_avg, (step - start) * cfg.batch * world / max(now - t0, 1e-9))
        out_of_time = limit_s is not None and now - t0 >= limit_s
        if out_of_time:
            stopped_by_time = True
        if stop.requested:
            out_of_time, stopped_by_signal = True, True
        if rank == 0 and (now - last_ckpt >= cfg.checkpoint_minutes * 60 or out_of_time or step == cfg.steps):
            info["train_seconds"] = train_seconds + now - t0
            _save_checkpoint(ckpt, net, ema, opt, step, cfg, info)
            last_ckpt = now
        if world > 1:
            flag = torch.tensor([1.0 if out_of_time else 0.0], device=device)
            dist.all_reduce(flag)
            out_of_time = flag.item() > 0
        if out_of_time:
            break
    info.update(steps=step, steps_planned=cfg.steps, final_loss=loss_avg,
                train_seconds=train_seconds + time.monotonic() - t0, stopped_by_time_limit=stopped_by_time, stopped_by_signal=stopped_by_signal,
                threads=torch.get_num_threads())
    if rank == 0:
        with atomic_output(output) as tmp:
            save_model(tmp, ema, info)
    if world > 1:
        dist.barrier()
    return info
