"""Training throughput: 1 process vs `torchrun --nproc-per-node 2` (DDP, gloo) on this CPU.

    python benchmarks/ddp_throughput.py [--videos 12] [--frames 2000] [--dims 256] [--epochs 2]

Same data, model (d=256, l=3), global batch and seed; prints windows/s of the last epoch of each.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

from abawtools import formats


def last_rate(stderr):
    rates = re.findall(r"(\d+) windows/s", stderr)
    if not rates:
        raise SystemExit(stderr[-2000:])
    return float(rates[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", type=int, default=12)
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--dims", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="abaw-ddp-")
    rng = np.random.default_rng(0)
    for d in ("visual", "audio", "labels"):
        os.makedirs(os.path.join(work, d))
    for i in range(args.videos):
        for d in ("visual", "audio"):
            np.save(os.path.join(work, d, f"v{i}.npy"), rng.normal(size=(args.frames, args.dims)).astype(np.float16))
        formats.write_labels(os.path.join(work, "labels", f"v{i}.txt"), rng.integers(0, 8, args.frames))
    abaw = [sys.executable, "-m", "abawtools"]
    manifest = os.path.join(work, "t.csv")
    subprocess.run([*abaw, "window", "--visual", f"{work}/visual", "--audio", f"{work}/audio", "--labels",
                    f"{work}/labels", "-o", manifest], check=True, capture_output=True)
    common = ["train", manifest, "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--seed", "0"]
    one = subprocess.run([*abaw, *common, "-o", f"{work}/one.safetensors"], capture_output=True, text=True)
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    two = subprocess.run([torchrun, "--standalone", "--nproc-per-node", "2", "-m", "abawtools", *common,
                          "-o", f"{work}/two.safetensors"], capture_output=True, text=True,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    r1, r2 = last_rate(one.stderr), last_rate(two.stderr)
    print(f"{os.cpu_count()} CPUs, d=256 l=3, global batch {args.batch_size}, {args.dims}+{args.dims} dims")
    print(f"1 process (torch default threads): {r1:6.0f} windows/s")
    print(f"2 processes, DDP gloo, 1 thread each: {r2:6.0f} windows/s  ratio {r2 / r1:.2f}")


if __name__ == "__main__":
    main()
