#!/usr/bin/env python3
"""PyTorch peer of benches/update.rs: one torch.optim step (foreach) on the same
three parameter sets (LeNet-5, ResNet-20, a 2048-4096-4096-10 MLP), printed as
JSON lines.

    python3 crates/optim/benches/torch_optim.py [--device cpu|cuda] [--iters 20]

Each line: {"set", "optimizer", "device", "threads", "params", "median_ms"}.
`compare_torch.py` runs it beside the Rust benchmark and prints the table.
"""
import argparse
import json
import statistics
import time

import torch


def layer(prefix, weight):
    return [(f"{prefix}.weight", weight), (f"{prefix}.bias", [weight[0]])]


def shape_sets():
    """The shapes of update.rs's `shape_sets`, in the same order."""
    lenet5 = (layer("conv1", [6, 1, 5, 5]) + layer("conv2", [16, 6, 5, 5])
              + layer("fc1", [120, 400]) + layer("fc2", [84, 120]) + layer("fc3", [10, 84]))
    resnet20 = [("conv1.weight", [16, 3, 3, 3])] + layer("bn1", [16])
    inplanes = 16
    for stage, planes in enumerate([16, 32, 64]):
        for block in range(3):
            p = f"layer{stage + 1}.{block}"
            for conv, cin in [(1, inplanes), (2, planes)]:
                resnet20.append((f"{p}.conv{conv}.weight", [planes, cin, 3, 3]))
                resnet20 += layer(f"{p}.bn{conv}", [planes])
            inplanes = planes
    resnet20 += layer("fc", [10, 64])
    mlp = layer("fc1", [4096, 2048]) + layer("fc2", [4096, 4096]) + layer("fc3", [10, 4096])
    return [("lenet5", lenet5), ("resnet20", resnet20), ("mlp25m", mlp)]


def make_params(shapes, device):
    params = [(torch.randn(s, device=device) * 0.05).requires_grad_(True) for _, s in shapes]
    for p in params:
        p.grad = torch.randn_like(p) * 0.01
    return params


OPTIMIZERS = [
    ("sgd", lambda ps: torch.optim.SGD(ps, lr=0.1, foreach=True)),
    ("momentum", lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, foreach=True)),
    ("adagrad", lambda ps: torch.optim.Adagrad(ps, lr=0.01, foreach=True)),
    ("rmsprop", lambda ps: torch.optim.RMSprop(ps, lr=1e-3, foreach=True)),
    ("adam", lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=True)),
    ("adamw", lambda ps: torch.optim.AdamW(ps, lr=1e-3, weight_decay=0.01, foreach=True)),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--iters", type=int, default=20)
    args = ap.parse_args()
    device = torch.device(args.device)
    for set_name, shapes in shape_sets():
        for name, make in OPTIMIZERS:
            params = make_params(shapes, device)
            opt = make(params)
            opt.step()  # allocate state outside the timing
            # Small sets take microseconds: time enough steps per sample.
            n = sum(p.numel() for p in params)
            reps = max(1, 2_000_000 // n)
            times = []
            for _ in range(args.iters):
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                for _ in range(reps):
                    opt.step()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times.append((time.perf_counter() - t0) / reps)
            print(json.dumps({
                "set": set_name,
                "optimizer": name,
                "device": str(device),
                "threads": torch.get_num_threads(),
                "params": n,
                "median_ms": statistics.median(times) * 1e3,
            }), flush=True)


if __name__ == "__main__":
    main()
