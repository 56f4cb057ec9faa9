"""Which temporal filter, per track: the score of `smooth` with each length and method on the
outputs of a window model trained on synthetic VA and AU data (the tests' kind of data: a
planted signal in the visual features, slow valence/arousal drifts, AU segments of ~20 frames).

    python benchmarks/smoothing_by_task.py [--videos 8] [--epochs 12]

The defaults of `abaw smooth` (VA: mean over 101 frames; AU: median over 7) are HSEmotion's
(Savchenko, ABAW 6-8: +-50 frames for VA, +-3-5 for AU) on real Aff-Wild2; this prints how they
rank on this synthetic data, where the right length follows from how fast the labels change, so
read it as a check that the defaults are sane, not as a measurement on Aff-Wild2.
"""

import argparse
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from abawtools import data, formats, inference, tasks, windows  # noqa: E402


def make_set(root, task, rng, n, t_range=(300, 500), dv=16, da=8):
    proj = np.random.default_rng(7).normal(size=(task.outputs, dv)) * 2
    for d in ("visual", "audio", "labels"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    for i in range(n):
        T = int(rng.integers(*t_range))
        if task is tasks.VA:
            y = np.cumsum(rng.normal(0, 0.05, size=(T, 2)), axis=0)
            y = np.clip(y - y.mean(axis=0), -1, 1)
        else:
            y = np.repeat(rng.random((T // 20 + 1, 12)) < 0.35, 20, axis=0)[:T].astype(np.float64)
        v = y @ proj + rng.normal(0, 1.5, size=(T, dv))  # noisier than the tests: smoothing has work to do
        np.save(os.path.join(root, "visual", f"v{i}.npy"), v.astype(np.float32))
        np.save(os.path.join(root, "audio", f"v{i}.npy"), rng.normal(size=(T, da)).astype(np.float32))
        formats.write_labels(os.path.join(root, "labels", f"v{i}.txt"), y.astype(task.label_dtype), task)


def rows_of(root, window=32, stride=8):
    rows = []
    for f in sorted(os.listdir(os.path.join(root, "labels"))):
        vid = f[:-4]
        T = len(formats.read_labels(os.path.join(root, "labels", f)))
        for s in windows.window_starts(T, window, stride):
            rows.append({"video": vid, "visual": os.path.join(root, "visual", vid + ".npy"),
                         "audio": os.path.join(root, "audio", vid + ".npy"),
                         "labels": os.path.join(root, "labels", f), "frames": T, "start": int(s),
                         "stop": int(s) + window, "valid_fraction": 1.0})
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=12)
    args = ap.parse_args()
    from abawtools.model import ModelConfig
    from abawtools.training import TrainOptions, train

    kernels = (1, 3, 7, 11, 25, 51, 101)
    for task in (tasks.VA, tasks.AU):
        rng = np.random.default_rng(0)
        with tempfile.TemporaryDirectory() as work:
            make_set(os.path.join(work, "train"), task, rng, args.videos)
            make_set(os.path.join(work, "val"), task, rng, max(2, args.videos // 2))
            cfg = ModelConfig(d_model=32, layers=1, heads=4, window=32, stride=8)
            opts = TrainOptions(epochs=args.epochs, lr=3e-3, batch_size=16, warmup=0.0)
            model, _, _ = train(rows_of(os.path.join(work, "train")), cfg, opts, os.path.join(work, "ckpt"),
                                log=lambda *a: None)
            videos = list(data.open_videos(rows_of(os.path.join(work, "val"))).values())
            outputs = [(v, inference.predict_video(model, v)) for v in videos]
            default_k, default_method = task.default_filter
            print(f"{task.title}: score by filter length (default {default_method} k={default_k})")
            for method in ("median", "mean"):
                scores = []
                for k in kernels:
                    pairs = [(v.vid, task.smooth(out, k, method)[0], v.labels) for v, out in outputs]
                    scores.append(task.score(pairs)["score"])
                print(f"  {method:6s} " + "  ".join(f"k={k}: {s:.4f}" for k, s in zip(kernels, scores)))


if __name__ == "__main__":
    main()
