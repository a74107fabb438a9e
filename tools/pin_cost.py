"""What the CPU kernel pin costs on this machine: `python -m mlc bench` training steps at the
pinned level (AVX2) and at the machine's own (MLC_CPU_KERNELS=native), in alternating processes
(the level is fixed per process), one thread each as `mlc runs` trains. Prints seconds per step
and the ratio pinned / native. Usage: python tools/pin_cost.py [--pairs 3] [--threads 1]"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from mlc.util.cpu import PIN_ENV

DETECTORS = ("fcos", "fcos_minus", "retinanet", "rpn")


def bench(kernels: str, threads: int, out: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in PIN_ENV}  # native: torch's own choice
    env.update(MLC_CPU_KERNELS=kernels, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    subprocess.run([sys.executable, "-m", "mlc", "bench", "--scale", "shapes", "--device", "cpu",
                    "--parts", "training", "--detectors", *DETECTORS, "--rounds", "3",
                    "--out", str(out)], env=env, check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3, help="pinned/native process pairs")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    seconds: dict[str, dict[str, list[float]]] = {"pinned": {}, "native": {}}
    levels = {}
    with tempfile.TemporaryDirectory() as tmp:
        for pair in range(args.pairs):
            for kernels in ("pinned", "native") if pair % 2 == 0 else ("native", "pinned"):
                report = bench(kernels, args.threads, Path(tmp) / f"{kernels}{pair}.json")
                levels[kernels] = report["cpu"]
                for det, t in report["training"].items():
                    seconds[kernels].setdefault(det, []).append(t["baseline"])
    for kernels, lv in levels.items():
        print(f"{kernels}: ATen {lv['aten_capability']}, oneDNN {lv['onednn_isa']}, "
              f"MKL {lv['mkl_isa']} ({lv['cpu_model']})")
    print(f"training step at shapes scale, {args.threads} thread(s), median of {args.pairs} "
          "processes each (3 rounds x 2 steps in each)")
    for det in DETECTORS:
        pinned = statistics.median(seconds["pinned"][det])
        native = statistics.median(seconds["native"][det])
        print(f"  {det:<11} pinned {pinned:.4f} s  native {native:.4f} s  pinned/native "
              f"{pinned / native:.3f}")


if __name__ == "__main__":
    main()
