"""`abaw finetune`'s input pipeline and training step on this machine, and what a GPU would need.

Prints: decode + resize images/s per DataLoader worker for 112x112 Aff-Wild2 crops and 256x256
static images (to the model's 224 input); training images/s of a ViT-Small-sized random model and
its share of this CPU's fp32 matmul rate; the projection for BEiT-large on one H100 (FLOPs per
image x 3 for a training step at a stated TFLOP/s) and how many workers keep it fed; the memory of
an index of 2 M Aff-Wild2 frames.

    python benchmarks/finetune_speed.py [--images 256] [--steps 3]
"""

import argparse
import os
import resource
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from train_memory import matmul_gflops  # noqa: E402  (benchmarks/ is on sys.path when run as a script)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=256)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--h100-tflops", type=float, default=400.0, help="assumed bf16 rate reached in training")
    args = p.parse_args()
    from abawtools import imagesets

    rng = np.random.default_rng(0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    n, videos = 2_000_000, 548
    per = n // videos
    parts = []
    for v in range(videos):
        frames = np.arange(per)
        parts.append(imagesets.ImageIndex(f"v{v}", [f"/data/cropped_aligned/{v}"], np.zeros(per),
                                          np.char.mod("%05d.jpg", frames + 1).astype(np.bytes_),
                                          rng.integers(0, 8, per), video=np.zeros(per), frame=frames))
    index = imagesets.ImageIndex.concat(parts)
    del parts
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"index of {len(index):,} Aff-Wild2 frames: {index.nbytes / 2**20:.0f} MiB of arrays; "
          f"peak RSS grew by {(after - before) / 1024:.0f} MiB while building it")


    import cv2
    import torch

    from abawtools import visual
    from abawtools.finetuning import BackboneClassifier, ImageDataset, feature_dim

    spec = visual.ImageSpec(size=224, resample=3, mean=(0.5,) * 3, std=(0.5,) * 3)
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        for side in (112, 256):
            folder = os.path.join(tmp, f"s{side}", "happy")
            os.makedirs(folder)
            for i in range(args.images):
                img = (rng.random((side, side, 3)) * 40 + np.linspace(0, 200, side)[None, :, None]).astype(np.uint8)
                cv2.imwrite(os.path.join(folder, f"{i}.jpg"), img)
            index = imagesets.image_folder(os.path.dirname(folder))
            data = ImageDataset(index, spec)
            cv2.setNumThreads(1)
            t = time.perf_counter()
            batch = torch.stack([data[i][0] for i in range(len(index))])
            rates[side] = len(index) / (time.perf_counter() - t)
            print(f"input pipeline, one worker: {side}x{side} jpg -> 224x224: {rates[side]:7.0f} images/s "
                  f"(decode + resize + tensor)")
    import transformers as tf

    vit_s = tf.ViTModel(tf.ViTConfig(hidden_size=384, num_hidden_layers=12, num_attention_heads=6,
                                     intermediate_size=1536, image_size=224, patch_size=16))
    model = BackboneClassifier(vit_s, feature_dim(vit_s, spec), 8)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    n = min(16, len(batch))  # batch 16, or every image when --images is smaller
    x = visual.normalize(batch[:n], spec)
    y = torch.randint(0, 8, (n,))
    model.train()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    t = time.perf_counter()
    for _ in range(args.steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    step_rate = n * args.steps / (time.perf_counter() - t)
    tokens = (224 // 16) ** 2 + 1

    def vit_flops(d, layers, mlp):  # forward multiply-adds x 2, per image
        return 2 * layers * (tokens * (4 * d * d + 2 * d * mlp) + 2 * tokens * tokens * d)

    fs = vit_flops(384, 12, 1536)
    mm = matmul_gflops() * 1e9  # this CPU's fp32 2048^2 matmul, FLOP/s
    print(f"train step, ViT-Small (22 M params) at 224, batch 16: {step_rate:.1f} images/s = "
          f"{step_rate * 3 * fs / 1e9:.0f} GFLOP/s, {100 * step_rate * 3 * fs / mm:.0f} % of a 2048^2 fp32 matmul "
          f"({mm / 1e9:.0f} GFLOP/s)")
    fl = vit_flops(1024, 24, 4096)
    gpu_rate = args.h100_tflops * 1e12 / (3 * fl)
    print(f"projection, BEiT-large on one H100 at {args.h100_tflops:.0f} TFLOP/s bf16: {fl / 1e9:.0f} GFLOP "
          f"per image forward, x3 per training step -> {gpu_rate:.0f} images/s; workers to feed it: "
          f"{gpu_rate / rates[112]:.1f} (112x112 crops), {gpu_rate / rates[256]:.1f} (256x256 images)")


if __name__ == "__main__":
    main()
