#!/usr/bin/env python3
"""One ResNet-50-sized optimizer update, bigbatch against torch.optim, side by side.

For 1 and 2 threads, runs the `*_fused` rows of `cargo bench -p bigbatch-optim
--bench update` (RAYON_NUM_THREADS) and `torch_optim.py` (OMP_NUM_THREADS) back
to back, so both see the same machine, and prints a Markdown table: median
times, PyTorch time / bigbatch time (above 1: bigbatch is faster), each
bigbatch row's bandwidth (bytes an update must move once ÷ time), and its
distance from the memory-bandwidth floor: its time over the time the floor's
bytes take at the best bandwidth any single-pass row (SGD, momentum, Adam,
AdamW) reached in the same run, so 1.00 is the best this machine streamed.

    PYTHON=/path/to/python-with-torch-and-torchvision \\
        python3 crates/optim/benches/compare_torch.py [--threads 1 2] [--iters 10]
"""
import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PEER = Path(__file__).with_name("torch_optim.py")
PARAMS = 25_557_032
# f32 tensors each optimizer must read and write once per update.
FLOOR_TENSORS = {"sgd": 3, "momentum": 5, "adagrad": 5, "rmsprop": 5, "adam": 7, "adamw": 7,
                 "lars": 5, "lamb": 7}
# The rows that make one pass, whose best rate is the machine's bandwidth.
SINGLE_PASS = ("sgd", "momentum", "adam", "adamw")


def gbps(name, ms):
    """The floor's bytes over the time, in GB/s."""
    return FLOOR_TENSORS[name] * PARAMS * 4 / (ms / 1e3) / 1e9


def bigbatch(threads):
    """Median ms per `<name>_fused` row, from criterion's bencher output."""
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    out = subprocess.run(
        ["cargo", "bench", "--quiet", "-p", "bigbatch-optim", "--bench", "update", "--",
         "--output-format", "bencher", "_fused"],
        cwd=ROOT, env=env, check=True, capture_output=True, text=True,
    ).stdout
    rows = {}
    for m in re.finditer(r"test resnet50_update/(\w+)_fused \.\.\. bench:\s+([\d,]+) ns/iter", out):
        rows[m.group(1)] = int(m.group(2).replace(",", "")) / 1e6
    if not rows:
        sys.exit(f"no fused rows in the benchmark output:\n{out}")
    return rows


def torch(threads, iters, python):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run(
        [python, str(PEER), "--iters", str(iters)],
        env=env, check=True, capture_output=True, text=True,
    ).stdout
    return {d["optimizer"]: d["median_ms"] for d in map(json.loads, out.splitlines())}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--iters", type=int, default=10)
    args = ap.parse_args()
    python = os.environ.get("PYTHON", sys.executable)
    print("| optimizer | threads | bigbatch ms | PyTorch ms | PyTorch ÷ bigbatch "
          "| bigbatch GB/s | × floor |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for threads in args.threads:
        ours = bigbatch(threads)
        theirs = torch(threads, args.iters, python)
        best = max((gbps(n, ms) for n, ms in ours.items() if n in SINGLE_PASS), default=None)
        for name, ms in ours.items():
            rate = gbps(name, ms)
            peer = theirs.get(name)
            ratio = f"{peer / ms:.2f}" if peer else "—"
            peer_ms = f"{peer:.1f}" if peer else "—"
            floor = f"{best / rate:.2f}" if best else "—"
            print(f"| {name} | {threads} | {ms:.1f} | {peer_ms} | {ratio} | {rate:.1f} | {floor} |",
                  flush=True)


if __name__ == "__main__":
    main()
