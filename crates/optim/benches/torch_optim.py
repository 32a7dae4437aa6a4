#!/usr/bin/env python3
"""PyTorch peer of benches/update.rs: one torch.optim step (foreach) on ResNet-50's
parameter shapes, printed as JSON lines next to the memory-bandwidth floor.

Run in the same session as `cargo bench -p bigbatch-optim --bench update`:

    python3 crates/optim/benches/torch_optim.py [--device cpu|cuda] [--iters 20]

Each line: {"optimizer", "device", "threads", "params", "median_ms", "floor_mb",
"floor_gbps_at_median"}. The Rust bench prints the same floor per optimizer; the
ratio of the two medians is the comparison the issue asks for.
"""
import argparse
import json
import statistics
import time

import torch
import torchvision  # only for the architecture: the shapes must be the real ones


def resnet50_params(device):
    model = torchvision.models.resnet50()
    params = [p.detach().to(device).requires_grad_(True) for p in model.parameters()]
    assert sum(p.numel() for p in params) == 25_557_032
    for p in params:
        p.grad = torch.randn_like(p) * 0.01
    return params


# (name, constructor, f32 tensors read + written once per step)
OPTIMIZERS = [
    ("sgd", lambda ps: torch.optim.SGD(ps, lr=0.1, foreach=True), 3),
    ("momentum", lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, foreach=True), 5),
    ("adam", lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=True), 7),
    ("adamw", lambda ps: torch.optim.AdamW(ps, lr=1e-3, weight_decay=0.01, foreach=True), 7),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--iters", type=int, default=20)
    args = ap.parse_args()
    device = torch.device(args.device)
    for name, make, tensors in OPTIMIZERS:
        params = resnet50_params(device)
        opt = make(params)
        opt.step()  # allocate state outside the timing
        times = []
        for _ in range(args.iters):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            opt.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        n = sum(p.numel() for p in params)
        floor = tensors * n * 4
        median = statistics.median(times)
        print(json.dumps({
            "optimizer": name,
            "device": str(device),
            "threads": torch.get_num_threads(),
            "params": n,
            "median_ms": median * 1e3,
            "floor_mb": floor / 1e6,
            "floor_gbps_at_median": floor / median / 1e9,
        }))


if __name__ == "__main__":
    main()
