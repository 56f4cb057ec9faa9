"""`abaw train` on Aff-Wild2-size synthetic features: peak RSS, windows/s, FLOP rate vs a matmul.

    python benchmarks/train_memory.py [--frames 1200000] [--videos 240] [--steps 60] [--workdir DIR]

Writes float16 features (1024 visual + 1024 audio dims by default: ~4.9 GB for 1.2 M frames),
runs `abaw window` and `abaw train` for --steps steps in a child process, and prints the child's
peak RSS (target <= 2 GB), its training throughput, and the train step's FLOP rate as a fraction
of a plain float32 matmul's on this CPU.
"""

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from abawtools import formats, loss
from abawtools.model import ModelConfig, build_model


def matmul_gflops(n=2048, repeat=10):
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(repeat):
        a @ b
    return 2 * n**3 * repeat / (time.perf_counter() - t) / 1e9


def step_flops(cfg, batch):
    model = build_model(cfg).train()
    W = cfg.window
    v = torch.randn(batch, W, cfg.visual_dim)
    a = torch.randn(batch, W, cfg.audio_dim)
    m = torch.ones(batch, W, dtype=torch.bool)
    y = torch.randint(0, 8, (batch, W))
    with FlopCounterMode(display=False) as counter:
        loss.focal_loss(model(v, a, m, m), y).backward()
    return counter.get_total_flops()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=1_200_000)
    ap.add_argument("--videos", type=int, default=240)
    ap.add_argument("--dims", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    work = args.workdir or tempfile.mkdtemp(prefix="abaw-train-bench-")
    rng = np.random.default_rng(0)
    dirs = {d: os.path.join(work, d) for d in ("visual", "audio", "labels")}
    for d in dirs.values():
        os.makedirs(d, exist_ok=True)
    per = args.frames // args.videos
    t = time.perf_counter()
    for i in range(args.videos):
        path = os.path.join(dirs["visual"], f"v{i:03d}.npy")
        if not os.path.exists(path):
            for kind in ("visual", "audio"):
                x = rng.standard_normal(size=(per, args.dims), dtype=np.float32).astype(np.float16)
                np.save(os.path.join(dirs[kind], f"v{i:03d}.npy"), x)
            formats.write_labels(os.path.join(dirs["labels"], f"v{i:03d}.txt"), rng.integers(0, 8, size=per))
    print(f"features: {args.videos} videos x {per} frames x ({args.dims}+{args.dims}) float16 in {work} "
          f"({time.perf_counter() - t:.0f} s to write)")
    abaw = [sys.executable, "-m", "abawtools"]
    manifest = os.path.join(work, "train.csv")
    subprocess.run([*abaw, "window", "--visual", dirs["visual"], "--audio", dirs["audio"], "--labels", dirs["labels"],
                    "-o", manifest], check=True, capture_output=True)
    t = time.perf_counter()
    proc = subprocess.run([*abaw, "train", manifest, "-o", os.path.join(work, "m.safetensors"), "--epochs", "1",
                           "--batch-size", str(args.batch_size), "--stop-after-steps", str(args.steps),
                           "--resume", os.path.join(work, f"ck{time.time_ns()}")],
                          capture_output=True, text=True)
    wall = time.perf_counter() - t
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode != 75:
        print(proc.stderr)
        raise SystemExit("train did not stop after --steps as expected")
    # windows/s of the steps alone: time the same number of steps again from the log's clock
    cfg = ModelConfig(visual_dim=args.dims, audio_dim=args.dims)
    flops = step_flops(cfg, args.batch_size)
    m = re.search(r"(\d+) windows from", proc.stderr)
    print(f"train: {m.group(1) if m else '?'} windows in the manifest; ran {args.steps} steps of {args.batch_size} "
          f"windows in {wall:.1f} s wall (start-up and the normalisation pass over all features included)")
    print(f"peak RSS of the train process: {peak_kb / 1024:.0f} MB (target <= 2048 MB)")
    steps_t = time_steps(cfg, args.batch_size, 10)
    print(f"train step alone (d=256, l=3, batch {args.batch_size}): {args.batch_size / steps_t:.0f} windows/s, "
          f"{flops / 1e9:.1f} GFLOP/step -> {flops / steps_t / 1e9:.1f} GFLOP/s")
    mm = matmul_gflops()
    print(f"plain 2048^2 float32 matmul: {mm:.1f} GFLOP/s -> train step at {flops / steps_t / 1e9 / mm:.0%} of it "
          f"({torch.get_num_threads()} threads)")


def time_steps(cfg, batch, n):
    torch.manual_seed(0)
    model = build_model(cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    W = cfg.window
    v, a = torch.randn(batch, W, cfg.visual_dim), torch.randn(batch, W, cfg.audio_dim)
    m = torch.ones(batch, W, dtype=torch.bool)
    y = torch.randint(0, 8, (batch, W))
    for i in range(n + 2):
        if i == 2:
            t = time.perf_counter()
        opt.zero_grad()
        loss.focal_loss(model(v, a, m, m), y).backward()
        opt.step()
    return (time.perf_counter() - t) / n


if __name__ == "__main__":
    main()
