"""Start-up cost of the command line: wall and CPU seconds of `scoretool --help` and `scoretool COMMAND
--help` (best of --repeats, interleaved), beside a bare `python -c pass`, and whether torch was imported.

    python bench/startup.py [--repeats 5] [--pythonpath OTHER_CHECKOUT --name startup-before]

Runs `python -m scoretool` from a neutral folder with PYTHONPATH = this checkout (or --pythonpath), so
another checkout can be measured the same way. CPU seconds (user + sys of the child) are the robust
figure on a shared machine; wall seconds are what a user waits on a quiet one.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, print_table, save_results  # noqa: E402

COMMANDS = [["--help"], ["restore", "--help"], ["denoise", "--help"], ["ood", "fit", "--help"]]
PROBE = "import runpy, sys; sys.argv = ['scoretool', *sys.argv[1:]]; \
exec('try:\\n runpy.run_module(\"scoretool\", run_name=\"__main__\")\\nexcept SystemExit: pass'); \
print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', file=sys.stderr)"


def run(argv: list[str], env: dict, cwd: str) -> tuple[float, float, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, out.stderr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--pythonpath", default=str(ROOT), help="checkout whose scoretool is measured")
    ap.add_argument("--name", default="startup")
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": args.pythonpath}
    cases = {"python -c pass": [sys.executable, "-c", "pass"]}
    cases.update({"scoretool " + " ".join(c): [sys.executable, "-c", PROBE, *c] for c in COMMANDS})
    best = {k: [float("inf"), float("inf"), ""] for k in cases}
    with tempfile.TemporaryDirectory() as cwd:
        for _ in range(args.repeats):
            for k, argv in cases.items():
                wall, cpu, err = run(argv, env, cwd)
                best[k] = [min(best[k][0], wall), min(best[k][1], cpu), "torch" if "TORCH" in err.split() else
                           ("no torch" if "NO-TORCH" in err else "")]
    rows = [{"command": k, "wall s": w, "cpu s": c, "imports": t} for k, (w, c, t) in best.items()]
    print(f"start-up, PYTHONPATH={args.pythonpath}, best of {args.repeats}")
    print_table(rows, ["command", "wall s", "cpu s", "imports"])
    save_results(args.name, {"bench": "startup", "pythonpath": args.pythonpath, "repeats": args.repeats, "rows": rows})


if __name__ == "__main__":
    main()
