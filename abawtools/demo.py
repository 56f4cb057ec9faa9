"""Real media for the demo and the tests: short clips made from one face photo, with sound.

    python -m abawtools.demo DIR [--train 6] [--val 2] [--seconds 10]

What it is, honestly: every clip shows the same photograph (an astronaut's public-domain NASA
portrait) moving across a 320x240 frame; the "expression" of each segment is simulated by a dark
bar drawn across the lower face at a class-specific angle, and the soundtrack is a tone whose
pitch depends on the class, plus noise. Some segments have no face at all (the photo leaves the
frame) and some frames are unlabelled (-1). It exercises every tool on real H.264/AAC files; it
says nothing about recognising real emotions.
"""

import argparse
import math
import os

import numpy as np

from abawtools import CLASSES, formats

FPS = 25
SIZE = (320, 240)
RATE = 16000
HERE = os.path.dirname(os.path.abspath(__file__))
FACE_CANDIDATES = (os.path.join(HERE, "..", "examples", "data", "face.jpg"),)


def load_face(path=None, size=150):
    import cv2

    for candidate in ([path] if path else []) + list(FACE_CANDIDATES):
        if candidate and os.path.exists(candidate):
            img = cv2.imread(candidate)
            if img.shape[0] > 300:  # the full 512x512 portrait: cut the head and shoulders
                img = img[0:300, 80:380]
            return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    raise FileNotFoundError("no face image found (examples/data/face.jpg)")


def expression_overlay(face, label):
    """The face with a class-specific bar across its lower half (a stand-in for an expression)."""
    import cv2

    out = face.copy()
    h, w = out.shape[:2]
    cx, cy = w // 2, int(h * 0.64)
    angle = math.pi * label / len(CLASSES)
    dx, dy = int(0.22 * w * math.cos(angle)), int(0.12 * h * math.sin(angle))
    cv2.line(out, (cx - dx, cy - dy), (cx + dx, cy + dy), (20, 20, 20), max(2, w // 40))
    return out


def background(t):
    x = np.linspace(0, 1, SIZE[0])[None, :, None]
    y = np.linspace(0, 1, SIZE[1])[:, None, None]
    base = 90 + 60 * x * np.array([1.0, 0.8, 0.6]) + 40 * y * np.array([0.5, 0.7, 1.0])
    return np.clip(base + 5 * math.sin(t / 7.0), 0, 255).astype(np.uint8)


def make_labels(frames, rng, seg=(25, 70)):
    """Piecewise-constant labels; -1 for a few short unlabelled stretches."""
    labels, faceless = [], []
    while len(labels) < frames:
        n = int(rng.integers(*seg))
        labels += [int(rng.integers(0, len(CLASSES)))] * n
        faceless += [bool(rng.random() < 0.12)] * n
    labels, faceless = np.array(labels[:frames]), np.array(faceless[:frames])
    invalid = np.zeros(frames, bool)
    for s in rng.integers(0, frames, size=2):
        invalid[s : s + 8] = True
    return labels, faceless, invalid


def write_crops(folder, labels, faceless, overlays):
    """folder/%05d.jpg (frame t -> t + 1) for each frame with a face: 112x112, like cropped_aligned."""
    import cv2

    os.makedirs(folder, exist_ok=True)
    small = [cv2.resize(o, (112, 112), interpolation=cv2.INTER_AREA) for o in overlays]
    for t in np.flatnonzero(~np.asarray(faceless)):
        cv2.imwrite(os.path.join(folder, f"{t + 1:05d}.jpg"), small[labels[t]])


def write_clip(path, labels, faceless, face, rng, with_audio=True, crops_dir=None, lossless=False):
    """A demo clip: the face (with its class overlay) moving, a class tone; returns the frame count.

    `crops_dir`: also write each face frame's crop as crops_dir/%05d.jpg (frame t -> t + 1), 112x112,
    the way Aff-Wild2's cropped_aligned ships (no file where there is no face)."""
    T = len(labels)
    fh, fw = face.shape[:2]
    overlays = [expression_overlay(face, c) for c in range(len(CLASSES))]

    if crops_dir:
        write_crops(crops_dir, labels, faceless, overlays)

    def frames():
        for t in range(T):
            img = background(t)
            if not faceless[t]:
                x = int((SIZE[0] - fw) * (0.5 + 0.4 * math.sin(2 * math.pi * t / (FPS * 6))))
                y = int((SIZE[1] - fh) * (0.5 + 0.3 * math.sin(2 * math.pi * t / (FPS * 4))))
                img[y : y + fh, x : x + fw] = overlays[labels[t]]
            yield img

    wav = None
    if with_audio:
        spf = RATE // FPS
        freq = np.repeat(220.0 * 2 ** (np.asarray(labels) / 4.0), spf)  # class c: 220 Hz x 2^(c/4)
        wav = 0.3 * np.sin(2 * np.pi * np.cumsum(freq) / RATE) + 0.02 * rng.normal(size=len(freq))
    write_media(path, frames(), SIZE, wav, lossless=lossless)
    return T


def write_media(path, frames, size, wav=None, fps=FPS, lossless=False):
    """An H.264 mp4 from BGR uint8 frames, with an AAC mono 16 kHz track when `wav` is given (PyAV).

    `lossless` (qp 0): the decoded frames are the same in every run. Lossy, libx264's output here
    varied from run to run (decoded pixels up to ~50 apart on identical frames, even with one
    thread), so the demo writes its clips losslessly to repeat its figures exactly."""
    import av

    container = av.open(path, "w")
    vs = container.add_stream("h264", rate=fps, options={"qp": "0"} if lossless else {})
    vs.width, vs.height, vs.pix_fmt = size[0], size[1], "yuv420p"
    if wav is not None:
        aus = container.add_stream("aac", rate=RATE)
        aus.layout = "mono"
    for img in frames:
        for packet in vs.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img[:, :, ::-1]), format="rgb24")):
            container.mux(packet)
    for packet in vs.encode():
        container.mux(packet)
    if wav is not None:
        wav = np.asarray(wav, dtype=np.float32)
        for lo in range(0, len(wav), 1024):
            af = av.AudioFrame.from_ndarray(np.ascontiguousarray(wav[None, lo : lo + 1024]), format="flt", layout="mono")
            af.sample_rate, af.pts = RATE, lo
            for packet in aus.encode(af):
                container.mux(packet)
        for packet in aus.encode():
            container.mux(packet)
    container.close()


def make_dataset(root, n_train=6, n_val=2, seconds=10.0, seed=0, face_path=None, crops=False):
    """root/{videos,labels}/{train,val}: clips and their EXPR annotation files; with `crops`, also
    root/cropped_aligned/ID/%05d.jpg, the face crops in Aff-Wild2's layout."""
    rng = np.random.default_rng(seed)
    face = load_face(face_path)
    for split, n in (("train", n_train), ("val", n_val)):
        vdir, ldir = os.path.join(root, "videos", split), os.path.join(root, "labels", split)
        os.makedirs(vdir, exist_ok=True)
        os.makedirs(ldir, exist_ok=True)
        for i in range(n):
            vid = f"{split}{i:02d}"
            frames = int(seconds * FPS * rng.uniform(0.8, 1.2))
            labels, faceless, invalid = make_labels(frames, rng)
            write_clip(os.path.join(vdir, vid + ".mp4"), labels, faceless, face, rng, lossless=True,
                       crops_dir=os.path.join(root, "cropped_aligned", vid) if crops else None)
            truth = np.where(invalid, -1, labels)
            formats.write_labels(os.path.join(ldir, vid + ".txt"), truth)
    return root


def tiny_backbone(path, kind="vit", image=32):
    """A random-initialised Hugging Face vision backbone folder, built from a config (nothing is
    downloaded): for the demo and the tests, never for real work."""
    import json

    import torch
    import transformers as tf

    from abawtools.hf import quiet_transformers

    quiet_transformers()
    torch.manual_seed(0)  # the same tiny model every time: the demo's figures repeat
    common = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                  image_size=image, patch_size=8)
    build = {
        "beit": lambda: tf.BeitModel(tf.BeitConfig(**common, use_mean_pooling=True)),
        "vit": lambda: tf.ViTModel(tf.ViTConfig(**common)),
        "vitmae": lambda: tf.ViTMAEModel(tf.ViTMAEConfig(**common)),
        "resnet": lambda: tf.ResNetModel(tf.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                                                         layer_type="basic")),
        "convnext": lambda: tf.ConvNextModel(tf.ConvNextConfig(num_stages=2, hidden_sizes=[8, 16], depths=[1, 1],
                                                               drop_path_rate=0.5)),
    }
    build[kind]().save_pretrained(path)
    with open(os.path.join(path, "preprocessor_config.json"), "w") as fh:
        json.dump({"size": {"height": image, "width": image}, "resample": 2, "do_rescale": True,
                   "rescale_factor": 1 / 255, "image_mean": [0.5] * 3, "image_std": [0.5] * 3}, fh)
    return str(path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root")
    ap.add_argument("--train", type=int, default=6)
    ap.add_argument("--val", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cropped-aligned", action="store_true", help="also write ROOT/cropped_aligned/ID/*.jpg")
    ap.add_argument("--tiny-backbone", metavar="DIR", help="instead: write a tiny random backbone folder to DIR")
    args = ap.parse_args(argv)
    if args.tiny_backbone:
        tiny_backbone(args.tiny_backbone, "resnet", image=48)
        return
    make_dataset(args.root, args.train, args.val, args.seconds, args.seed, crops=args.cropped_aligned)
    print(f"wrote {args.train} training and {args.val} validation clips under {args.root}")


if __name__ == "__main__":
    main()
