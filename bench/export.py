"""Exported denoisers against the PyTorch model: max |difference| at three sizes and two σ, and time per
call, for a bundled model as ONNX (onnxruntime, CPU) and TorchScript.

    python bench/export.py [--weights prior-gray] [--repeats 5] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, save_results  # noqa: E402

from scoretool.export import export_model  # noqa: E402
from scoretool.weights import load_model  # noqa: E402

SIZES = [(37, 53), (64, 64), (100, 80)]
SIGMAS = [25 / 255, 0.3]


def seconds(fn, repeats: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default="prior-gray")
    ap.add_argument("--repeats", type=int, default=5, help="timed calls per runtime and size")
    ap.add_argument("--dir", default="/tmp", help="folder for the exported files")
    args = ap.parse_args()
    import onnxruntime as ort

    folder = Path(args.dir)
    onnx_path, ts_path = folder / f"{args.weights}.export-bench.onnx", folder / f"{args.weights}.export-bench.pt"
    t0 = time.perf_counter()
    export_model(args.weights, onnx_path, overwrite=True)
    onnx_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    export_model(args.weights, ts_path, overwrite=True)
    ts_s = time.perf_counter() - t0
    net, _ = load_model(args.weights)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    ts = torch.jit.load(str(ts_path))
    rng = np.random.default_rng(0)
    rows = []
    for h, w in SIZES:
        x = rng.random((2, net.config.channels, h, w), dtype=np.float32)
        xt = torch.from_numpy(x)
        for s in SIGMAS:
            with torch.no_grad():
                ref = net(xt, s).numpy()
                d_ts = float(np.abs(ts(xt, torch.tensor(s)).numpy() - ref).max())
            d_onnx = float(np.abs(sess.run(None, {"x": x, "sigma": np.array(s, np.float32)})[0] - ref).max())
            rows.append({"size": f"{h}x{w}", "batch": 2, "sigma": s, "max_diff_onnx": d_onnx, "max_diff_torchscript": d_ts})
    x = rng.random((1, net.config.channels, 256, 256), dtype=np.float32)
    xt = torch.from_numpy(x)
    with torch.no_grad():
        timing = {"size": "256x256", "pytorch_ms": 1e3 * seconds(lambda: net(xt, 0.1), args.repeats),
                  "torchscript_ms": 1e3 * seconds(lambda: ts(xt, torch.tensor(0.1)), args.repeats),
                  "onnxruntime_ms": 1e3 * seconds(lambda: sess.run(None, {"x": x, "sigma": np.array(0.1, np.float32)}), args.repeats)}
    print(f"{args.weights}: export ONNX {onnx_s:.1f} s ({onnx_path.stat().st_size / 2**20:.1f} MiB), "
          f"TorchScript {ts_s:.1f} s; threads {torch.get_num_threads()}")
    print_table([{**r, "max_diff_onnx": f"{r['max_diff_onnx']:.2e}", "max_diff_torchscript": f"{r['max_diff_torchscript']:.2e}"}
                 for r in rows], ["size", "batch", "sigma", "max_diff_onnx", "max_diff_torchscript"])
    print()
    print_table([timing], list(timing))
    save_results(f"export-{args.weights}", {"command": "python bench/export.py " + " ".join(sys.argv[1:]),
                                            "weights": args.weights, "export_seconds": {"onnx": onnx_s, "torchscript": ts_s},
                                            "onnxruntime": ort.__version__, "rows": rows, "timing_batch1": timing})
    onnx_path.unlink()
    ts_path.unlink()


if __name__ == "__main__":
    main()
