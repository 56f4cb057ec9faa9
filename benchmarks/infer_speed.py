"""`infer`'s batched soft voting vs one forward per window (the public reference implementation).

    python benchmarks/infer_speed.py [--frames 20000] [--d-model 256] [--layers 3] [--batch-size 256]

Same model, same video, same run; prints frames/s of both and the ratio (target >= 10x on CPU).
"""

import argparse
import os
import tempfile
import time

import numpy as np
import torch

from abawtools import data, inference
from abawtools.model import ModelConfig, build_model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=20000)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--dims", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--loop-frames", type=int, default=4000, help="frames for the (slow) window loop")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    tmp = tempfile.mkdtemp()
    for name, T in (("v", args.frames), ("a", args.frames), ("v_loop", args.loop_frames), ("a_loop", args.loop_frames)):
        x = rng.normal(size=(T, args.dims)).astype(np.float16)
        if name.startswith("v"):
            x[rng.random(T) < 0.1] = np.nan
        np.save(os.path.join(tmp, name + ".npy"), x)
    cfg = ModelConfig(visual_dim=args.dims, audio_dim=args.dims, d_model=args.d_model, layers=args.layers)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    video = data.Video("v", os.path.join(tmp, "v.npy"), os.path.join(tmp, "a.npy"))
    small = data.Video("s", os.path.join(tmp, "v_loop.npy"), os.path.join(tmp, "a_loop.npy"))

    inference.predict_video(model, small, batch_size=args.batch_size)  # warm-up
    t = time.perf_counter()
    inference.predict_video(model, video, batch_size=args.batch_size)
    batched = args.frames / (time.perf_counter() - t)
    t = time.perf_counter()
    inference.predict_window_by_window(model, small)
    loop = args.loop_frames / (time.perf_counter() - t)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, W=64 S=8 d={args.d_model} l={args.layers}, "
          f"{args.dims}+{args.dims} dims")
    print(f"batched soft voting ({args.frames} frames, batch {args.batch_size}): {batched:8.0f} frames/s")
    print(f"one window at a time ({args.loop_frames} frames):               {loop:8.0f} frames/s")
    print(f"ratio: {batched / loop:.1f}x (target >= 10x)")


if __name__ == "__main__":
    main()
