"""CPU front end: decode + detect + crop + built-in HOG features, vs decode alone (the ceiling).

    python benchmarks/extract_speed.py [--seconds 20] [--size 640x480]

Makes a 25 fps H.264 clip of the fixture face moving over a background (PyAV), then times, in the
same run: OpenCV decode alone; the full `extract-visual` path (threaded decode + face detection
(Haar, BlazeFace's two looks, BlazeFace with --align) + crop + HOG); and `extract-audio` (PyAV demux + resample + log-mel) as a real-time factor.
"""

import argparse
import math
import os
import tempfile
import time

import numpy as np

from abawtools import audio, demo, visual


def make_clip(path, seconds, size):
    import cv2

    w, h = size
    face = demo.load_face(size=int(h * 0.5))
    fh, fw = face.shape[:2]
    T = int(seconds * demo.FPS)
    bg = cv2.resize(demo.background(0), (w, h))

    def frames():
        for t in range(T):
            img = bg.copy()
            x = int((w - fw) * (0.5 + 0.4 * math.sin(t / 40)))
            y = int((h - fh) * (0.5 + 0.3 * math.sin(t / 25)))
            img[y : y + fh, x : x + fw] = face
            yield img

    wav = 0.3 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * demo.RATE)) / demo.RATE)
    demo.write_media(path, frames(), size, wav)
    return T


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--size", default="640x480")
    args = ap.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    path = os.path.join(tempfile.mkdtemp(), "clip.mp4")
    T = make_clip(path, args.seconds, size)

    t = time.perf_counter()
    n = sum(1 for _ in visual.VideoFile(path))
    decode = n / (time.perf_counter() - t)

    extractor = visual.HogExtractor()
    paths = {}
    for name, cropper in (("Haar", visual.FaceCropper(extractor.spec)),
                          ("BlazeFace", visual.FaceCropper(extractor.spec, detector="blazeface")),
                          ("BlazeFace+align", visual.FaceCropper(extractor.spec, detector="blazeface", align=True))):
        t = time.perf_counter()
        feats = visual.extract(visual.VideoFile(path), extractor, cropper, batch_size=64)
        paths[name] = (len(feats) / (time.perf_counter() - t), np.isfinite(feats).all(axis=1).mean())

    t = time.perf_counter()
    rows = audio.extract(path)
    rtf = (time.perf_counter() - t) / args.seconds

    print(f"{T} frames, {size[0]}x{size[1]} @ {demo.FPS} fps, H.264, {os.cpu_count()} CPUs")
    print(f"decode alone (OpenCV):                    {decode:7.0f} frames/s")
    for name, (full, found) in paths.items():
        print(f"decode + {name:15s} + crop + HOG: {full:7.0f} frames/s  = {full / decode:.2f} of decode "
              f"(face in {found:.0%} of frames)")
    print(f"extract-audio fbank: {len(rows)} rows, real-time factor {rtf:.4f} ({1 / rtf:.0f}x faster than real time)")


if __name__ == "__main__":
    main()
