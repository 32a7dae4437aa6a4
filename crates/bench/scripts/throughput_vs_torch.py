#!/usr/bin/env python3
"""Training throughput, bigbatch vs PyTorch eager on the CPU, in one session.

Builds the `throughput` benchmark once (release), then for every row (model x
batch x threads) runs bigbatch's benchmark and the peer script
`shared/peers/torch_throughput.py` alternately, `--repeat` times each, and
prints the Markdown ratio table of the best run of each engine (bigbatch
examples/s / PyTorch examples/s) plus every run's raw JSON line.

  python3 crates/bench/scripts/throughput_vs_torch.py                 # every row
  python3 crates/bench/scripts/throughput_vs_torch.py --models lenet5 --threads 1
  PYTHON=/tmp/tv/bin/python python3 crates/bench/scripts/throughput_vs_torch.py

Environment: PYTHON (the interpreter with torch; default python3),
CARGO_TARGET_DIR (as for cargo). Standard library only.
"""
import argparse, json, os, platform, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PEER = ROOT.parent / "shared" / "peers" / "torch_throughput.py"
MODELS = ["lenet5", "resnet8", "resnet20", "mlp"]


def build():
    out = subprocess.run(
        ["cargo", "bench", "-p", "bigbatch-bench", "--bench", "throughput", "--no-run",
         "--message-format=json"],
        cwd=ROOT, check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == "throughput" \
                and msg.get("executable"):
            return msg["executable"]
    sys.exit("throughput benchmark executable not found")


def lines(cmd, threads):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True, env=env).stdout
    return [json.loads(l) for l in out.splitlines() if l.startswith("{")]


def cpu_model():
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    ap.add_argument("--batch", type=int, nargs="+", default=[32, 128, 512])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--steps", type=int, default=None,
                    help="timed steps per row for both engines (default: ~examples-based)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs of each engine per row, alternating; the best of each is "
                         "reported (on a shared machine noise only ever slows a run down)")
    ap.add_argument("--python", default=os.environ.get("PYTHON", "python3"))
    a = ap.parse_args()
    if a.repeat < 1:
        ap.error("--repeat must be at least 1")
    exe = build()
    rows = []
    for model in a.models:
        for threads in a.threads:
            for batch in a.batch:
                # About 4 s of PyTorch time per row unless told otherwise.
                steps = a.steps or max(5, min(30, {"lenet5": 16000, "mlp": 40000,
                                                    "resnet8": 1000, "resnet20": 400}[model] // batch))
                common = ["--model", model, "--batch", str(batch),
                          "--steps", str(steps), "--warmup", "2"]
                best = {}
                for _ in range(a.repeat):
                    for engine, cmd in [
                        ("ours", [exe, *common]),
                        ("peer", [a.python, str(PEER), *common, "--threads", str(threads)]),
                    ]:
                        run = lines(cmd, threads)[0]
                        print(json.dumps(run), file=sys.stderr)
                        if run["examples_per_s"] > best.get(engine, {}).get("examples_per_s", 0):
                            best[engine] = run
                rows.append((model, batch, threads, best["ours"], best["peer"]))
    print(f"{time.strftime('%Y-%m-%d')}, {cpu_model()}, {os.cpu_count()} vCPUs, "
          f"{rows[0][4]['peer'] if rows else ''}, best of {a.repeat} alternating runs\n")
    print("| model | batch | threads | bigbatch ex/s | PyTorch ex/s | ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    for model, batch, threads, ours, peer in rows:
        o, p = ours["examples_per_s"], peer["examples_per_s"]
        print(f"| {model} | {batch} | {threads} | {o:,.0f} | {p:,.0f} | {o / p:.2f} |")


if __name__ == "__main__":
    main()
