"""Face detection + alignment on 640x480 frames, in one run: OpenCV's Haar cascade (its 320-px
detection width, as extract-visual runs it) against BlazeFace (run by torch): the first look alone,
the two looks of extract-visual's default on upright faces (no second look needed) and on faces
rolled by 60 degrees (a second look each), and with --align (a second look for every face plus the
warp onto the template); what ONet's check costs there (--check-score 0 without it), and the
small-face tiles on frames without a face (a cartoon background of tests/data/real;
--no-small-faces without them). CPU figures are frames/s on one thread; with a GPU, also the
batched projection on it. Prints the ratios to Haar.

    python benchmarks/detect_speed.py [--frames 128] [--batch 64]
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from abawtools import demo, visual  # noqa: E402

FACELESS = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "real", "cartoon", "backgrounds", "abstract_1.jpg")
from abawtools.blazeface import BlazeFace  # noqa: E402
from abawtools.facefinder import FaceFinder  # noqa: E402


def frames(n, angle, seed=0):
    import cv2

    face = demo.load_face(size=160)
    if angle:
        M = cv2.getRotationMatrix2D((80, 80), angle, 1.0)
        face = cv2.warpAffine(face, M, (160, 160), borderValue=(90, 90, 90))
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        frame = np.full((480, 640, 3), 90, np.uint8)
        x, y = rng.integers(0, 480), rng.integers(0, 320)
        frame[y : y + 160, x : x + 160] = face
        out.append(frame)
    return out


def rate(fn, items, batch):
    fn(items[:batch])  # warm up (and, on a GPU, its kernels)
    t = time.perf_counter()
    found = 0
    for i in range(0, len(items), batch):
        found += sum(bool(f) for f in fn(items[i : i + batch]))
    return len(items) / (time.perf_counter() - t), found


def projection(net, items, batch):
    """What a GPU would leave to the CPU: the network's FLOPs per frame, and the per-frame CPU work
    around it (letterbox, decoding the anchors + suppression) timed with the network's outputs
    taken as given."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 3, net.size, net.size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net.net(x)
    gflop = counter.get_total_flops() / 1e9
    t = time.perf_counter()
    prepared = [net.letterbox(f) for f in items]
    letterbox = (time.perf_counter() - t) / len(items)
    with torch.no_grad():
        outputs = net.net(torch.from_numpy(np.stack([p[0] for p in prepared[:batch]])).permute(0, 3, 1, 2).float())
    real, net.net = net.net, lambda _x: outputs
    try:
        t = time.perf_counter()
        net.detect_prepared([p[0] for p in prepared[:batch]], [p[1] for p in prepared[:batch]])
        decode = (time.perf_counter() - t) / batch
    finally:
        net.net = real
    print(f"GPU projection: the full-range network is {gflop:.2f} GFLOP per frame (an H100 at even 5 % of "
          f"its 67 TFLOP/s fp32: {3.35e12 / (gflop * 1e9):,.0f} frames/s); the CPU work left per frame is "
          f"letterbox {letterbox * 1e3:.2f} ms + decode/suppress {decode * 1e3:.2f} ms (input tensor included) "
          f"= {1 / (letterbox + decode):.0f} frames/s per core, before decoding the video")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--frames", type=int, default=128)
    p.add_argument("--batch", type=int, default=64, help="frames per detector call, as extract-visual's --batch-size")
    args = p.parse_args()
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    upright, rolled = frames(args.frames, 0), frames(args.frames, 60)
    haar = visual.FaceCropper(visual.HogExtractor.spec)
    first, two = BlazeFace("full"), FaceFinder()
    aligner = visual.FaceCropper(visual.HogExtractor.spec, detector="blazeface", align=True)
    unchecked = visual.FaceCropper(visual.HogExtractor.spec, detector="blazeface", align=True, check_score=0)
    untiled = visual.FaceCropper(visual.HogExtractor.spec, detector="blazeface", align=True, small_faces=False)
    bg = cv2.resize(cv2.imread(FACELESS), (640, 480))
    faceless = [np.roll(bg, 2 * t, axis=1) for t in range(args.frames)]

    def aligned(cropper):
        def run(batch):
            faces = cropper.find_batch(batch)
            return [[cropper.region(im, f[0])] if f else [] for im, f in zip(batch, faces)]
        return run

    align = aligned(aligner)

    runs = [("Haar (320 px)", lambda b: [haar.find_all(f) for f in b], upright),
            ("BlazeFace first look", first.detect_batch, upright),
            ("two looks, upright faces", two.find_batch, upright),
            ("two looks, 60-degree roll", two.find_batch, rolled),
            ("aligned (default), upright", align, upright),
            ("aligned (default), rolled", align, rolled),
            ("aligned, unchecked, upright", aligned(unchecked), upright),
            ("aligned, faceless frames", align, faceless),
            ("aligned, faceless, untiled", aligned(untiled), faceless)]
    rates = {}
    print(f"CPU, one thread, {args.frames} frames of 640x480, batches of {args.batch}:")
    for name, fn, items in runs:
        rates[name], found = rate(fn, items, args.batch)
        print(f"  {name:30s} {rates[name]:7.1f} frames/s  face in {found}/{len(items)}  "
              f"({rates[name] / rates['Haar (320 px)']:.2f}x Haar)")
    print(f"  ONet's check costs {100 * (1 - rates['aligned (default), upright'] / rates['aligned, unchecked, upright']):.1f} % "
          f"of the aligned rate; frames without a face run at "
          f"{rates['aligned, faceless frames'] / rates['aligned, faceless, untiled']:.2f}x with the small-face tiles")
    projection(first, upright, args.batch)
    if torch.cuda.is_available():
        print(f"GPU ({torch.cuda.get_device_name()}), the network on it, the rest on one CPU thread:")
        gpu, net = FaceFinder(device="cuda"), BlazeFace("full", device="cuda")
        for name, fn, items in (("two looks, upright faces", gpu.find_batch, upright),
                                ("two looks, 60-degree roll", gpu.find_batch, rolled)):
            r, found = rate(fn, items, args.batch)
            print(f"  {name:30s} {r:7.1f} frames/s  face in {found}/{len(items)}")
        x = torch.zeros(args.batch, 3, 192, 192, device="cuda")
        with torch.no_grad():
            net.net(x)
            torch.cuda.synchronize()
            t, reps = time.perf_counter(), 20
            for _ in range(reps):
                net.net(x)
            torch.cuda.synchronize()
        print(f"  the full-range network alone: {reps * args.batch / (time.perf_counter() - t):.0f} frames/s "
              f"(batch {args.batch}, fp32)")


if __name__ == "__main__":
    main()
