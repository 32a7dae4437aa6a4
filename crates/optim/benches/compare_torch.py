#!/usr/bin/env python3
"""One optimizer update on LeNet-5, ResNet-20 and a 25M MLP, bigbatch against torch.optim.

For 1 and 2 threads, runs the `*_fused` rows of `cargo bench -p bigbatch-optim
--bench update` (RAYON_NUM_THREADS) and `torch_optim.py` (OMP_NUM_THREADS) back
to back, so both see the same machine, and prints a Markdown table: median
times, PyTorch time / bigbatch time (above 1: bigbatch is faster), each
bigbatch row's bandwidth (bytes an update must move once ÷ time), and its
distance from the memory-bandwidth floor: its time over the time the floor's
bytes take at the best bandwidth any single-pass row (SGD, momentum, Adam,
AdamW) reached in the same run, so 1.00 is the best this machine streamed.

    PYTHON=/path/to/python-with-torch \\
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
# Parameters per set (update.rs's `shape_sets`, torch_optim.py's `shape_sets`).
PARAMS = {"lenet5": 61_706, "resnet20": 272_474, "mlp25m": 25_214_986}
# f32 tensors each optimizer must read and write once per update.
FLOOR_TENSORS = {"sgd": 3, "momentum": 5, "adagrad": 5, "rmsprop": 5, "adam": 7, "adamw": 7,
                 "lars": 5, "lamb": 7}
# The rows that make one pass, whose best rate is the machine's bandwidth.
SINGLE_PASS = ("sgd", "momentum", "adam", "adamw")


def gbps(set_name, name, ms):
    """The floor's bytes over the time, in GB/s."""
    return FLOOR_TENSORS[name] * PARAMS[set_name] * 4 / (ms / 1e3) / 1e9


def bigbatch(threads):
    """Median ms per (set, optimizer) `_fused` row, from criterion's bencher output."""
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    out = subprocess.run(
        ["cargo", "bench", "--quiet", "-p", "bigbatch-optim", "--bench", "update", "--",
         "--output-format", "bencher", "_fused"],
        cwd=ROOT, env=env, check=True, capture_output=True, text=True,
    ).stdout
    rows = {}
    for m in re.finditer(r"test update_(\w+)/(\w+)_fused \.\.\. bench:\s+([\d,]+) ns/iter", out):
        rows[(m.group(1), m.group(2))] = int(m.group(3).replace(",", "")) / 1e6
    if not rows:
        sys.exit(f"no fused rows in the benchmark output:\n{out}")
    return rows


def torch(threads, iters, python):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run(
        [python, str(PEER), "--iters", str(iters)],
        env=env, check=True, capture_output=True, text=True,
    ).stdout
    return {(d["set"], d["optimizer"]): d["median_ms"] for d in map(json.loads, out.splitlines())}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--iters", type=int, default=10)
    args = ap.parse_args()
    python = os.environ.get("PYTHON", sys.executable)
    print("| set | optimizer | threads | bigbatch ms | PyTorch ms | PyTorch ÷ bigbatch "
          "| bigbatch GB/s | × floor |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for threads in args.threads:
        ours = bigbatch(threads)
        theirs = torch(threads, args.iters, python)
        # The machine's streaming rate: the best single-pass row on the large set.
        best = max((gbps(s, n, ms) for (s, n), ms in ours.items()
                    if s == "mlp25m" and n in SINGLE_PASS), default=None)
        for (set_name, name), ms in ours.items():
            rate = gbps(set_name, name, ms)
            peer = theirs.get((set_name, name))
            ratio = f"{peer / ms:.2f}" if peer else "—"
            peer_ms = f"{peer:.3f}" if peer else "—"
            floor = f"{best / rate:.2f}" if best else "—"
            print(f"| {set_name} | {name} | {threads} | {ms:.3f} | {peer_ms} | {ratio} "
                  f"| {rate:.1f} | {floor} |", flush=True)


if __name__ == "__main__":
    main()
