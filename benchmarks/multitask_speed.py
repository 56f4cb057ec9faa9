"""What the three heads cost: training windows/s and inference frames/s of the multi-task window
model (22 outputs, three masked losses) against the single-task one (8 logits, the focal loss),
at the paper's size (Dv = Da = 1024, d = 256, 3 layers, 8 heads, W = 64), in one run.

    python benchmarks/multitask_speed.py [--steps 5] [--frames 4000] [--dims 1024]

The heads are the last layer's columns: their cost beside the trunk should be a few percent.
"""

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from abawtools import data, inference, tasks  # noqa: E402
from abawtools.model import ModelConfig, build_model  # noqa: E402


class FakeVideo:
    def __init__(self, T, dims, task, rng):
        self.vid, self.frames, self.task = "bench", T, task
        self.visual = rng.normal(size=(T, dims)).astype(np.float16)
        self.visual[rng.random(T) < 0.1] = np.nan
        self.audio = rng.normal(size=(T, dims)).astype(np.float16)
        if task is tasks.MTL:
            self.labels = np.concatenate([rng.uniform(-1, 1, (T, 2)), rng.integers(0, 8, (T, 1)),
                                          rng.integers(0, 2, (T, 12))], axis=1).astype(np.float32)
            self.labels[rng.random(T) < 0.3, 2] = -1  # partial labels: the masks do work
        else:
            self.labels = rng.integers(0, 8, T)


def measure(task, args, rng):
    cfg = ModelConfig(visual_dim=args.dims, audio_dim=args.dims, num_classes=task.outputs, task=task.name)
    model = build_model(cfg)
    video = FakeVideo(args.frames, args.dims, task, rng)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    starts = rng.integers(0, args.frames - 64, size=32)
    batch = inference.to_tensors(data.cut_batch([(video, int(s)) for s in starts], 64), "cpu")

    def step():
        opt.zero_grad()
        out = model(batch["visual"], batch["audio"], batch["visual_mask"], batch["audio_mask"])
        task.loss(out, batch["labels"])[0].backward()
        opt.step()

    model.train()
    step()
    t = time.perf_counter()
    for _ in range(args.steps):
        step()
    train = 32 * args.steps / (time.perf_counter() - t)
    model.eval()
    t = time.perf_counter()
    inference.predict_video(model, video, batch_size=256)
    infer = args.frames / (time.perf_counter() - t)
    return train, infer, sum(p.numel() for p in model.parameters())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--frames", type=int, default=4000)
    ap.add_argument("--dims", type=int, default=1024)
    args = ap.parse_args()
    torch.manual_seed(0)
    results = {}
    for task in (tasks.EXPR, tasks.MTL):
        train, infer, params = measure(task, args, np.random.default_rng(0))
        results[task.name] = (train, infer)
        print(f"{task.title:12s} {params:>10,} params  train {train:7.1f} windows/s  infer {infer:8.0f} frames/s")
    (s_tr, s_in), (m_tr, m_in) = results["expr"], results["mtl"]
    print(f"multi-task / single-task: train {m_tr / s_tr:.2f}x, infer {m_in / s_in:.2f}x")


if __name__ == "__main__":
    main()
