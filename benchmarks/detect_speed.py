"""Face detection on 640x480 frames, one CPU thread: OpenCV's Haar cascade (its 320-px detection
width, as extract-visual runs it) against BlazeFace full range (192x192 input, run by torch), in
one run. Prints frames/s for each and the ratio.

    python benchmarks/detect_speed.py [--frames 100]
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from abawtools import demo, visual  # noqa: E402
from abawtools.blazeface import BlazeFace  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--frames", type=int, default=100)
    args = p.parse_args()
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    face = demo.load_face(size=160)
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(args.frames):
        frame = np.full((480, 640, 3), 90, np.uint8)
        x, y = rng.integers(0, 480), rng.integers(0, 320)
        frame[y : y + 160, x : x + 160] = face
        frames.append(frame)
    haar, blaze = visual.FaceCropper(visual.HogExtractor.spec), BlazeFace("full")
    blaze(frames[0])
    rates = {}
    for name, fn in (("Haar (320 px)", haar.find_all), ("BlazeFace full range", blaze)):
        t = time.perf_counter()
        found = sum(bool(fn(f)) for f in frames)
        rates[name] = len(frames) / (time.perf_counter() - t)
        print(f"{name:22s} {rates[name]:6.1f} frames/s per core, face found in {found}/{len(frames)}")
    a, b = rates.values()
    print(f"BlazeFace / Haar: {b / a:.2f}x")


if __name__ == "__main__":
    main()
