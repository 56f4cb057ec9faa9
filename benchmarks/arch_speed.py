"""The authors' network (the default) against abawtools 0.1's variant, in one run on this machine.

Training windows/s (forward + backward + AdamW step, batch 32, W=64) and inference frames/s
(predict_video: every window, stride 8, soft voting) at the paper's size (Dv = Da = 1024,
d = 256, l = 3, 8 heads), with each one's share of this CPU's fp32 matmul rate (FLOPs counted
from the layer shapes: 2 x multiply-adds, x3 for a training step).

    python benchmarks/arch_speed.py [--steps 5] [--frames 4000]
"""

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from train_memory import matmul_gflops  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

from abawtools import data, inference, tasks  # noqa: E402
from abawtools.model import ModelConfig, build_model  # noqa: E402


def flops_per_window(cfg, W=64):
    d, f = cfg.d_model, cfg.ffn_mult * cfg.d_model

    def attn(L, S):
        return L * d * d * 2 + S * d * d * 2 * 2 + 2 * L * S * d  # q, out; k, v; scores and values

    enc = attn(W, W) + 2 * W * d * f
    cross = attn(W, W) + (2 * W * d * f if cfg.cross_ffn else 0)
    gate = W * 2 * d * (1 if cfg.gate == "frame" else d)
    proj = W * (cfg.visual_dim + cfg.audio_dim) * d
    head = W * (2 * d * d + d * 8)
    return 2 * (proj + 2 * cfg.layers * enc + 2 * cross + 2 * gate + head)


def step(model, opt, batch, y):
    opt.zero_grad()
    out = model(batch["visual"], batch["audio"], batch["visual_mask"], batch["audio_mask"])
    torch.nn.functional.cross_entropy(out.reshape(-1, 8), y.reshape(-1)).backward()
    opt.step()


class FakeVideo:
    def __init__(self, T, dv, da, rng):
        self.vid, self.frames, self.task = "bench", T, tasks.EXPR
        self.visual = rng.normal(size=(T, dv)).astype(np.float16)
        self.visual[rng.random(T) < 0.1] = np.nan
        self.audio = rng.normal(size=(T, da)).astype(np.float16)
        self.labels = rng.integers(0, 8, T)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--frames", type=int, default=4000)
    args = p.parse_args()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    video = FakeVideo(args.frames, 1024, 1024, rng)
    mm = matmul_gflops() * 1e9  # this CPU's fp32 2048^2 matmul, FLOP/s
    print(f"{os.cpu_count()} CPUs; fp32 2048^2 matmul: {mm / 1e9:.0f} GFLOP/s")
    results = {}
    for name, extra in (("authors (default)", {}), ("abawtools 0.1", ModelConfig.LEGACY)):
        cfg = ModelConfig(visual_dim=1024, audio_dim=1024, **extra)
        model = build_model(cfg)
        params = sum(p.numel() for p in model.parameters())
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        starts = rng.integers(0, args.frames - 64, size=32)
        batch = inference.to_tensors(data.cut_batch([(video, int(s)) for s in starts], 64), "cpu")
        y = torch.from_numpy(np.stack([video.labels[s : s + 64] for s in starts]))
        model.train()

        step(model, opt, batch, y)
        t = time.perf_counter()
        for _ in range(args.steps):
            step(model, opt, batch, y)
        train_rate = 32 * args.steps / (time.perf_counter() - t)
        model.eval()
        t = time.perf_counter()
        inference.predict_video(model, video, batch_size=256)
        infer_rate = args.frames / (time.perf_counter() - t)
        fw = flops_per_window(cfg)
        windows_per_s_infer = infer_rate / 64 * 8  # every frame sits in W/S = 8 windows
        results[name] = (train_rate, infer_rate)
        print(f"{name:18s} {params:>9,} params  train {train_rate:6.1f} windows/s "
              f"({100 * train_rate * 3 * fw / mm:3.0f} % of matmul)  infer {infer_rate:7.0f} frames/s "
              f"({100 * windows_per_s_infer * fw / mm:3.0f} % of matmul)")
    (a_tr, a_in), (o_tr, o_in) = results.values()
    print(f"authors / 0.1: train {a_tr / o_tr:.2f}x, infer {a_in / o_in:.2f}x")


if __name__ == "__main__":
    main()
