"""`smooth` and `score` over Aff-Wild2 scale: 548 videos, 2.7 M frames, 8 logits.

    python benchmarks/smooth_score_scale.py [--videos 548] [--frames 2700000] [--workdir DIR]

Runs the real commands (`abaw smooth LOGITS... -o DIR`, `abaw score --pred-dir --label-dir`) on
synthetic files and prints wall times. Target (issue 2): each within 3 s on this machine.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from abawtools import formats


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", type=int, default=548)
    ap.add_argument("--frames", type=int, default=2_700_000)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    work = args.workdir or tempfile.mkdtemp(prefix="abaw-bench-")
    logits_dir, label_dir, pred_dir = (os.path.join(work, d) for d in ("logits", "labels", "pred"))
    for d in (logits_dir, label_dir, pred_dir):
        os.makedirs(d, exist_ok=True)
    lengths = rng.multinomial(args.frames - args.videos * 100, np.ones(args.videos) / args.videos) + 100
    for i, T in enumerate(lengths):
        np.save(os.path.join(logits_dir, f"v{i:03d}.npy"), rng.normal(size=(T, 8)).astype(np.float32))
        labels = rng.integers(-1, 8, size=T)
        formats.write_labels(os.path.join(label_dir, f"v{i:03d}.txt"), labels)
    inputs = sorted(os.path.join(logits_dir, f) for f in os.listdir(logits_dir))
    abaw = [sys.executable, "-m", "abawtools"]

    t = time.perf_counter()
    subprocess.run([*abaw, "smooth", *inputs, "-o", pred_dir], check=True)
    smooth_s = time.perf_counter() - t
    t = time.perf_counter()
    out = subprocess.run([*abaw, "score", "--pred-dir", pred_dir, "--label-dir", label_dir],
                         check=True, capture_output=True).stdout
    score_s = time.perf_counter() - t
    print(f"{args.videos} videos, {int(lengths.sum())} frames (work dir {work})")
    print(f"abaw smooth (median, k=11): {smooth_s:5.2f} s  ({lengths.sum() / smooth_s / 1e6:.2f} M frames/s)  target <= 3 s")
    print(f"abaw score  (pooled F1):    {score_s:5.2f} s  ({lengths.sum() / score_s / 1e6:.2f} M frames/s)  target <= 3 s")
    print(f"score output bytes: {len(out)}")


if __name__ == "__main__":
    main()
