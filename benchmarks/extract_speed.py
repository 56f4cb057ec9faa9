"""CPU front end: decode + detect + crop + built-in HOG features, vs decode alone (the ceiling).

    python benchmarks/extract_speed.py [--seconds 20] [--size 640x480]

Makes a 25 fps H.264 clip of the fixture face moving over a background (PyAV), then times, in the
same run: OpenCV decode alone; the full `extract-visual` path (threaded decode + face detection
(Haar, BlazeFace's two looks, BlazeFace with --align) + crop + HOG); and `extract-audio` (PyAV demux + resample + log-mel) as a real-time factor.

The verification's cost (--trust-score) and ONet's check's (--check-score): a second clip of a
real face that the first look scores below 0.85 in every frame (Grace Hopper, tests/data/real), so
every frame is verified and checked: BlazeFace with and without each, aligned (the default: the
second look runs anyway) and --no-align. The small-face tiles' cost (--small-faces): a third clip
without a face (a cartoon background of tests/data/real), where every frame is tiled.
"""

import argparse
import math
import os
import tempfile
import time

import numpy as np

from abawtools import audio, demo, visual

REAL = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "real")
REAL_FACE = os.path.join(REAL, "faces", "grace_hopper.jpg")
FACELESS = os.path.join(REAL, "cartoon", "backgrounds", "abstract_1.jpg")


def make_clip(path, seconds, size, face_path=None, background=None):
    import cv2

    w, h = size
    face = demo.load_face(face_path, size=int(h * 0.5)) if face_path else demo.load_face(size=int(h * 0.5))
    fh, fw = face.shape[:2]
    T = int(seconds * demo.FPS)
    bg = cv2.resize(cv2.imread(background) if background else demo.background(0), (w, h))

    def frames():
        for t in range(T):
            img = bg.copy()
            if background is None:  # a face moving over it; a given background stays faceless
                x = int((w - fw) * (0.5 + 0.4 * math.sin(t / 40)))
                y = int((h - fh) * (0.5 + 0.3 * math.sin(t / 25)))
                img[y : y + fh, x : x + fw] = face
            else:  # the picture drifting, as a title sequence's background does
                img = np.roll(img, t * 2, axis=1)
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

    verified = {}
    real = os.path.join(os.path.dirname(path), "real.mp4")
    make_clip(real, args.seconds, size, REAL_FACE)
    faceless = os.path.join(os.path.dirname(path), "faceless.mp4")
    make_clip(faceless, args.seconds, size, background=FACELESS)
    settings = [(f"{mode}, {what}", clip, dict(align=align, **kw)) for mode, align in (("aligned", True), ("--no-align", False))
                for clip, what, kw in ((real, "default", {}), (real, "not verified", {"trust_score": 0.6}),
                                       (real, "not checked", {"check_score": 0}),
                                       (real, "neither", {"trust_score": 0.6, "check_score": 0}),
                                       (faceless, "faceless, default", {}),
                                       (faceless, "faceless, --no-small-faces", {"small_faces": False}))]
    for name, clip, kw in settings:
        cropper = visual.FaceCropper(extractor.spec, detector="blazeface", **kw)
        t = time.perf_counter()
        feats = visual.extract(visual.VideoFile(clip), extractor, cropper, batch_size=64)
        verified[name] = (len(feats) / (time.perf_counter() - t), np.isfinite(feats).all(axis=1).mean())

    t = time.perf_counter()
    rows = audio.extract(path)
    rtf = (time.perf_counter() - t) / args.seconds

    print(f"{T} frames, {size[0]}x{size[1]} @ {demo.FPS} fps, H.264, {os.cpu_count()} CPUs")
    print(f"decode alone (OpenCV):                    {decode:7.0f} frames/s")
    for name, (full, found) in paths.items():
        print(f"decode + {name:15s} + crop + HOG: {full:7.0f} frames/s  = {full / decode:.2f} of decode "
              f"(face in {found:.0%} of frames)")
    print("a real face the first look scores below 0.85 (every frame verified and checked), and a faceless clip:")
    for name, (full, found) in verified.items():
        print(f"  BlazeFace {name:42s} {full:7.0f} frames/s (face in {found:.0%} of frames)")
    for mode in ("aligned", "--no-align"):
        fps = {k.split(", ", 1)[1]: v[0] for k, v in verified.items() if k.startswith(mode + ",")}
        print(f"  {mode}: the verification costs {100 * (1 - fps['not checked'] / fps['neither']):.1f} %, ONet's "
              f"check {100 * (1 - fps['not verified'] / fps['neither']):.1f} %, both {100 * (1 - fps['default'] / fps['neither']):.1f} % "
              f"of the front end's frames/s; without a face, the tiles run at "
              f"{fps['faceless, default'] / fps['faceless, --no-small-faces']:.2f}x the untiled rate")
    print(f"extract-audio fbank: {len(rows)} rows, real-time factor {rtf:.4f} ({1 / rtf:.0f}x faster than real time)")


if __name__ == "__main__":
    main()
