"""Backbone throughput where it matters (a GPU): BEiT-large at 224^2 and WavLM-large.

    python benchmarks/gpu_extract.py [--device cuda] [--dtype bf16] [--frames 4096] [--batch-size 256]

Builds BEiT-large and WavLM-large from their configurations (random weights: the throughput is
the same as the fine-tuned ones, and nothing is downloaded), writes a cropped_aligned-style
folder of JPEG face crops, and prints:
- `extract-visual --no-detect` frames/s on that folder (the real path: threaded JPEG decode,
  batched resize/normalise, the model) and the model's FLOP rate as a fraction of a bf16 matmul's
  measured on the same device (target >= 40 % on an H100);
- WavLM-large's real-time factor on 60 s of audio through the chunked path.
Runs on the CPU too (use --frames 64 --batch-size 16 there), only slowly.
"""

import argparse
import os
import tempfile
import time

import numpy as np
import torch


def matmul_tflops(device, dtype, n=8192, repeat=20):
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    sync(device)
    t = time.perf_counter()
    for _ in range(repeat):
        a @ b
    sync(device)
    return 2 * n**3 * repeat / (time.perf_counter() - t) / 1e12


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="bf16")
    ap.add_argument("--frames", type=int, default=4096)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--audio-seconds", type=float, default=60.0)
    args = ap.parse_args()
    from transformers import BeitConfig, BeitModel, WavLMConfig, WavLMModel

    from abawtools import audio, demo, visual
    from abawtools.runtime import torch_dtype

    device = torch.device(args.device)
    dtype = torch_dtype(args.dtype)
    work = tempfile.mkdtemp(prefix="abaw-gpu-")
    beit_dir = os.path.join(work, "beit-large")
    cfg = BeitConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                     image_size=224, patch_size=16, use_mean_pooling=True)
    BeitModel(cfg).save_pretrained(beit_dir)
    with open(os.path.join(beit_dir, "preprocessor_config.json"), "w") as fh:
        fh.write('{"size": {"height": 224, "width": 224}, "image_mean": [0.5,0.5,0.5], "image_std": [0.5,0.5,0.5]}')
    import cv2

    folder = os.path.join(work, "cropped_aligned", "v0")
    os.makedirs(folder)
    face = demo.load_face(size=112)
    for t in range(1, args.frames + 1):
        cv2.imwrite(os.path.join(folder, f"{t:05d}.jpg"), face)

    extractor = visual.HFImageExtractor(beit_dir, device, dtype)
    cropper = visual.FaceCropper(extractor.spec, detect=False)
    visual.extract(visual.FrameFolder(folder), extractor, cropper, args.batch_size, frames=args.batch_size)  # warm-up
    sync(device)
    t = time.perf_counter()
    visual.extract(visual.FrameFolder(folder), extractor, cropper, args.batch_size)
    sync(device)
    fps = args.frames / (time.perf_counter() - t)

    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        extractor.model(pixel_values=torch.zeros(1, 3, 224, 224, device=device, dtype=dtype or torch.float32))
    flops = counter.get_total_flops()
    peak = matmul_tflops(device, dtype or torch.float32, n=8192 if device.type == "cuda" else 1024, repeat=20 if device.type == "cuda" else 3)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device {name}, torch {torch.__version__}, dtype {args.dtype}")
    print(f"BEiT-large 224^2: {flops / 1e9:.0f} GFLOP/frame; extract-visual --no-detect on {args.frames} JPEG crops: "
          f"{fps:.0f} frames/s = {fps * flops / 1e12:.1f} TFLOP/s")
    print(f"matmul floor on this device: {peak:.1f} TFLOP/s -> BEiT-large at {fps * flops / 1e12 / peak:.0%} (target >= 40 %)")

    wavlm_dir = os.path.join(work, "wavlm-large")
    WavLMModel(WavLMConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                           conv_dim=(512,) * 7, feat_extract_norm="layer", do_stable_layer_norm=True)).save_pretrained(wavlm_dir)
    speech = audio.SpeechModel(wavlm_dir, device, dtype)
    wav = np.random.default_rng(0).normal(size=int(args.audio_seconds * 16000)).astype(np.float32) * 0.1
    audio.chunked_features(wav[: 16000 * 2], speech)  # warm-up
    sync(device)
    t = time.perf_counter()
    audio.chunked_features(wav, speech)
    sync(device)
    rtf = (time.perf_counter() - t) / args.audio_seconds
    print(f"WavLM-large on {args.audio_seconds:.0f} s of audio (30 s chunks, 2 s context): real-time factor {rtf:.4f}")


if __name__ == "__main__":
    main()
