"""The one command to run when a GPU is at hand: every CUDA path tested, then every figure that
matters on a GPU node, in one table, in about 5 minutes on one GPU.

    python benchmarks/gpu_check.py                      # on a GPU node: the full figures
    python benchmarks/gpu_check.py --device cpu --quick # the same plumbing on a CPU, < 3 min (CI runs it)

1. `pytest -m gpu` (tests/test_gpu.py: BlazeFace, extract-visual bf16/fp16, extract-audio, train
   bf16 with stop and exact resume, finetune bf16 both stages, infer bf16 + ensemble, DDP/NCCL on
   two GPUs), with ABAW_TEST_DEVICE set to --device: passed / failed / skipped.
2. Figures, each with its share of the device's measured bf16 matmul rate where it is compute:
   BlazeFace frames/s (batched) and the CPU work left per frame; BEiT-large extraction frames/s
   from a cropped_aligned folder (built from its config: nothing downloaded); WavLM-large's
   real-time factor; the window model's training windows/s and inference frames/s at the
   paper's size (d=256, 3 layers, 1024+1024 dims, W=64, S=8); BEiT-large fine-tuning images/s and
   the DataLoader workers that keep it fed; the peak GPU memory of each.
The table goes to stdout and to --out (markdown), to be put in docs/performance.md with the date.
`--quick` shrinks every model and every count (the figures are then only a smoke test).
"""

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
sys.path.insert(0, ROOT)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device, fn, repeat=1):
    """Seconds per call of fn() after one warm-up call, and the peak device memory in GiB."""
    fn()
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    sync(device)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return (time.perf_counter() - t) / repeat, peak


def matmul_tflops(device, quick):
    n = 1024 if quick or device.type != "cuda" else 8192
    dtype = torch.bfloat16
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    seconds, _ = timed(device, lambda: a @ b, repeat=3 if quick else 20)
    return 2 * n**3 / seconds / 1e12


def run_gpu_tests(device):
    env = dict(os.environ, ABAW_TEST_DEVICE=device)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-o", "addopts=", "-m", "gpu", "-q", "-rfE", "-p",
                           "no:cacheprovider",
                           os.path.join(ROOT, "tests", "test_gpu.py")], cwd=ROOT, env=env, capture_output=True, text=True)
    import re

    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    counts = {}
    for word in ("passed", "failed", "skipped", "error"):
        m = re.search(rf"(\d+) {word}", last)
        counts[word] = int(m.group(1)) if m else 0
    return proc.returncode, counts, proc.stdout[-3000:]


# ---------------------------------------------------------------------------------- figures
def frames_with_faces(n):
    import cv2

    from abawtools import demo

    face = demo.load_face(size=120)
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        M = cv2.getRotationMatrix2D((60, 60), (i * 17) % 60, 1.0)
        frame = np.full((480, 640, 3), 90, np.uint8)
        x, y = rng.integers(0, 520), rng.integers(0, 360)
        frame[y : y + 120, x : x + 120] = cv2.warpAffine(face, M, (120, 120), borderValue=(90, 90, 90))
        out.append(frame)
    return out


def figure_blazeface(device, quick, peak):
    from abawtools.blazeface import BlazeFace
    from abawtools.facefinder import FaceFinder

    frames = frames_with_faces(32 if quick else 512)
    finder = FaceFinder(device=str(device), refine=True)  # extract-visual's default: aligned crops
    seconds, mem = timed(device, lambda: finder.find_batch(frames))
    net = BlazeFace("full")
    t = time.perf_counter()
    for f in frames[:32]:
        net.letterbox(f)
    letterbox = (time.perf_counter() - t) / 32
    fps = len(frames) / seconds
    flops = 0.21e9 * fps  # the full-range network; second looks add a little
    return [("BlazeFace, two looks + alignment, batched, 640x480", f"{fps:,.0f} frames/s",
             f"{flops / 1e12 / peak:.1%}", mem),
            ("  CPU work left per frame (letterbox)", f"{letterbox * 1e3:.2f} ms", "", float("nan"))]


def beit_config(quick):
    from transformers import BeitConfig

    if quick:
        return BeitConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                          image_size=64, patch_size=16, use_mean_pooling=True)
    return BeitConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                      image_size=224, patch_size=16, use_mean_pooling=True)


def figure_extraction(device, quick, peak, work):
    import cv2
    from transformers import BeitModel

    from abawtools import demo, visual

    cfg = beit_config(quick)
    beit = os.path.join(work, "beit")
    BeitModel(cfg).save_pretrained(beit)
    with open(os.path.join(beit, "preprocessor_config.json"), "w") as fh:
        fh.write(f'{{"size": {{"height": {cfg.image_size}, "width": {cfg.image_size}}}, '
                 '"image_mean": [0.5,0.5,0.5], "image_std": [0.5,0.5,0.5]}')
    n, batch = (64, 16) if quick else (2048, 256)
    folder = os.path.join(work, "cropped_aligned", "v0")
    os.makedirs(folder, exist_ok=True)
    face = demo.load_face(size=112)
    for t in range(1, n + 1):
        cv2.imwrite(os.path.join(folder, f"{t:05d}.jpg"), face)
    dtype = torch.bfloat16 if device.type == "cuda" else None
    extractor = visual.HFImageExtractor(beit, device, dtype)
    cropper = visual.FaceCropper(extractor.spec, detect=False)
    seconds, mem = timed(device, lambda: visual.extract(visual.FrameFolder(folder), extractor, cropper, batch))
    fps = n / seconds
    tokens = (cfg.image_size // cfg.patch_size) ** 2 + 1
    flops = 2 * sum(p.numel() for p in extractor.model.parameters()) * tokens
    name = "BEiT-large 224" if not quick else "BEiT (tiny, --quick)"
    return [(f"{name} extraction from a cropped_aligned folder, bf16", f"{fps:,.0f} frames/s",
             f"{fps * flops / 1e12 / peak:.1%}", mem)], (beit, folder, cfg, flops)


def figure_wavlm(device, quick, peak, work):
    from transformers import WavLMConfig, WavLMModel

    from abawtools import audio

    if quick:
        cfg = WavLMConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                          conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
    else:
        cfg = WavLMConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                          conv_dim=(512,) * 7, feat_extract_norm="layer", do_stable_layer_norm=True)
    path = os.path.join(work, "wavlm")
    WavLMModel(cfg).save_pretrained(path)
    speech = audio.SpeechModel(path, device, torch.bfloat16 if device.type == "cuda" else None)
    seconds_of_audio = 5.0 if quick else 60.0
    wav = np.random.default_rng(0).normal(size=int(seconds_of_audio * 16000)).astype(np.float32) * 0.1
    seconds, mem = timed(device, lambda: audio.chunked_features(wav, speech))
    params = sum(p.numel() for p in speech.model.parameters())
    flops = 2 * params * 50 * seconds_of_audio  # 50 rows per second through the transformer, roughly
    name = "WavLM-large" if not quick else "WavLM (tiny, --quick)"
    return [(f"{name}, {seconds_of_audio:.0f} s of audio, bf16", f"real-time factor {seconds / seconds_of_audio:.4f}",
             f"{flops / seconds / 1e12 / peak:.1%}", mem)]


def figure_window_model(device, quick, peak):
    from abawtools.model import ModelConfig, build_model
    from abawtools.runtime import autocast

    dims = (64, 64) if quick else (1024, 1024)
    cfg = ModelConfig(visual_dim=dims[0], audio_dim=dims[1], d_model=32 if quick else 256, layers=1 if quick else 3,
                      heads=4 if quick else 8, window=64, stride=8)
    model = build_model(cfg).to(device)
    B = 8 if quick else 32
    v = torch.randn(B, 64, dims[0], device=device)
    a = torch.randn(B, 64, dims[1], device=device)
    vm = torch.ones(B, 64, dtype=torch.bool, device=device)
    am = torch.ones(B, 64, dtype=torch.bool, device=device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    dtype = torch.bfloat16

    def step():
        with autocast(device, dtype):
            out = model(v, a, vm, am)
        out.float().mean().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    seconds, mem = timed(device, step, repeat=3 if quick else 20)
    train_ws = B / seconds
    model.eval()

    def forward():
        with torch.no_grad(), autocast(device, dtype):
            model(v, a, vm, am)

    seconds_inf, mem_inf = timed(device, forward, repeat=3 if quick else 50)
    # every frame is in W/S = 8 windows: frames/s = windows/s x S
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(v[:1], a[:1], vm[:1], am[:1])
    flops = counter.get_total_flops()
    size = "d=256 l=3, 1024+1024 dims, W=64" if not quick else "tiny (--quick)"
    return [(f"window model training ({size}), batch {B}, bf16", f"{train_ws:,.0f} windows/s",
             f"{3 * flops * train_ws / 1e12 / peak:.1%}", mem),
            (f"window model inference ({size}), S=8", f"{B / seconds_inf * 8:,.0f} frames/s",
             f"{flops * B / seconds_inf / 1e12 / peak:.1%}", mem_inf)]


def figure_finetune(device, quick, peak, extraction):
    from transformers import BeitModel

    from abawtools import finetuning, imagesets, visual
    from abawtools.runtime import autocast

    beit, folder, cfg, flops = extraction
    backbone = BeitModel.from_pretrained(beit)
    spec = visual.ImageSpec.from_pretrained(beit, backbone.config)
    model = finetuning.BackboneClassifier(backbone, cfg.hidden_size, 8).to(device).train()
    B = 8 if quick else 32
    x = torch.randint(0, 255, (B, 3, spec.size, spec.size), dtype=torch.uint8, device=device)
    y = torch.randint(0, 8, (B,), device=device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def step():
        with autocast(device, torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(visual.normalize(x, spec)).float(), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    seconds, mem = timed(device, step, repeat=2 if quick else 10)
    ips = B / seconds
    names = sorted(os.listdir(folder))[:64]
    index = imagesets.ImageIndex("bench", [folder], np.zeros(len(names)), names, np.zeros(len(names)))
    data = finetuning.ImageDataset(index, spec)
    t = time.perf_counter()
    for i in range(len(index)):
        data[i]
    per_worker = len(index) / (time.perf_counter() - t)
    name = "BEiT-large" if not quick else "BEiT (tiny, --quick)"
    return [(f"{name} fine-tuning, batch {B}, bf16 autocast", f"{ips:,.0f} images/s", f"{3 * flops * ips / 1e12 / peak:.1%}",
             mem),
            ("  DataLoader workers to keep it fed (112x112 jpg -> input, one worker each)",
             f"{ips / per_worker:.1f} ({per_worker:,.0f} images/s per worker)", "", float("nan"))]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="tiny models and counts: the plumbing, not the figures")
    ap.add_argument("--out", default="gpu-check.md", help="the table, as markdown (default: gpu-check.md)")
    ap.add_argument("--skip-tests", action="store_true", help="figures only")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    from abawtools.hf import quiet_transformers

    quiet_transformers()
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU here; use --device cpu --quick to check the plumbing", file=sys.stderr)
        return 2
    start = time.monotonic()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    lines = [f"gpu_check {datetime.date.today()} on {name}, torch {torch.__version__}"
             + (" (--quick: tiny models, a smoke test)" if args.quick else ""), ""]
    rc = 0
    if not args.skip_tests:
        rc, counts, tail = run_gpu_tests(args.device)
        lines.append(f"pytest -m gpu: {counts['passed']} passed, {counts['failed']} failed, "
                     f"{counts['skipped']} skipped" + (f", {counts['error']} errors" if counts["error"] else ""))
        if rc not in (0, 5):
            print(tail, file=sys.stderr)
        lines.append("")
    torch.manual_seed(0)
    peak = matmul_tflops(device, args.quick)
    rows = [("bf16 matmul (the reference rate)", f"{peak:,.1f} TFLOP/s", "100%", float("nan"))]
    with tempfile.TemporaryDirectory(prefix="abaw-gpu-check-") as work:
        rows += figure_blazeface(device, args.quick, peak)
        extraction_rows, extraction = figure_extraction(device, args.quick, peak, work)
        rows += extraction_rows
        rows += figure_wavlm(device, args.quick, peak, work)
        rows += figure_window_model(device, args.quick, peak)
        rows += figure_finetune(device, args.quick, peak, extraction)
    lines += ["| what | figure | share of bf16 matmul | peak GPU memory |", "| --- | --- | --- | --- |"]
    for what, figure, share, mem in rows:
        lines.append(f"| {what} | {figure} | {share} | {'' if mem != mem else f'{mem:.2f} GiB'} |")
    lines += ["", f"(gpu_check took {time.monotonic() - start:.0f} s)"]
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    with open(args.out, "w") as fh:
        fh.write(text)
    return 1 if rc not in (0, 5) else 0


if __name__ == "__main__":
    sys.exit(main())
