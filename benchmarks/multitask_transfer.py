"""No negative transfer: one multi-task network against the three single-task networks, on the
same synthetic data, through the same commands (window, train, infer, score).

The data carry one planted signal for all three tasks, as faces do: each frame shows an expression
(piecewise constant), which has its place in the valence-arousal plane and its active AUs; the
visual features are that expression's prototype plus noise (10 % of frames faceless), the audio
noise. Each task is annotated on its own ~70 % of the frames (-5 / -1 elsewhere), as in
s-Aff-Wild2. The three single-task models train on their own track's folder, the multi-task model
on the three folders joined (`window --label-dir` repeated). Same network size, epochs, lr, seed.

    python benchmarks/multitask_transfer.py [--videos 8] [--epochs 12] [--seeds 1]

Prints each task's validation score of both, and P_MTL (VA CCC + EXPR F1 + AU F1) of the one
network against the sum of the three.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from abawtools import formats, tasks  # noqa: E402

VA_OF_CLASS = np.array([[0.0, 0.0], [-0.6, 0.7], [-0.7, 0.3], [-0.5, 0.8], [0.8, 0.5], [-0.7, -0.4], [0.3, 0.9],
                        [0.1, -0.3]])
AU_OF_CLASS = np.array([[(c * 5 + i * 3) % 7 < 3 for i in range(12)] for c in range(8)], np.int64)


def make_split(root, split, n, rng, dv=24, da=8, t_range=(250, 400)):
    proto = np.random.default_rng(11).normal(size=(8, dv)) * 1.5
    folders = {t: os.path.join(root, t.name, split) for t in (tasks.VA, tasks.EXPR, tasks.AU)}
    for d in [*folders.values(), os.path.join(root, "visual"), os.path.join(root, "audio")]:
        os.makedirs(d, exist_ok=True)
    for i in range(n):
        vid = f"{split}-{i}"
        T = int(rng.integers(*t_range))
        cls = np.repeat(rng.integers(0, 8, T // 30 + 1), 30)[:T]
        v = proto[cls] + rng.normal(0, 1.2, size=(T, dv))
        v[rng.random(T) < 0.1] = np.nan
        np.save(os.path.join(root, "visual", vid + ".npy"), v.astype(np.float32))
        np.save(os.path.join(root, "audio", vid + ".npy"), rng.normal(size=(T, da)).astype(np.float32))
        va = np.clip(VA_OF_CLASS[cls] + np.cumsum(rng.normal(0, 0.02, (T, 2)), axis=0) * 0.5, -1, 1)
        au = AU_OF_CLASS[cls].copy()
        expr = cls.copy()
        va[rng.random(T) < 0.3] = -5
        expr[rng.random(T) < 0.3] = -1
        au[rng.random(T) < 0.3] = -1
        for task, labels in ((tasks.VA, va.astype(np.float32)), (tasks.EXPR, expr), (tasks.AU, au)):
            formats.write_labels(os.path.join(folders[task], vid + ".txt"), labels, task)


def abaw(*args):
    proc = subprocess.run([sys.executable, "-m", "abawtools", *map(str, args)], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"abaw {' '.join(map(str, args))} failed: {proc.stderr[-2000:]}")
    return proc


def run(root, label_dirs, val_dirs, name, args, seed):
    common = ["--visual-dir", f"{root}/visual", "--audio-dir", f"{root}/audio"]
    abaw("window", *common, *[x for d in label_dirs for x in ("--label-dir", d)], "-W", 32, "-o", f"{root}/{name}-train.csv")
    abaw("window", *common, *[x for d in val_dirs for x in ("--label-dir", d)], "-W", 32, "--max-invalid", 1,
         "-o", f"{root}/{name}-val.csv")
    abaw("train", f"{root}/{name}-train.csv", "-o", f"{root}/{name}.safetensors", "--epochs", args.epochs, "--lr", 1e-3,
         "--d-model", 64, "--layers", 1, "--heads", 4, "--batch-size", 16, "--accumulate", 1, "--seed", seed)
    abaw("infer", "-m", f"{root}/{name}.safetensors", *common, "-o", f"{root}/{name}-out/")
    scores = {}
    for d in val_dirs:  # each task on its own labels (a multi-task model: the head of that track)
        result = json.loads(abaw("score", "--pred-dir", f"{root}/{name}-out", "--label-dir", d, "--allow-missing").stdout)
        scores[result["task"]] = result["score"]
    return scores


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--seeds", type=int, default=1)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as root:
        make_split(root, "Train_Set", args.videos, rng)
        make_split(root, "Validation_Set", max(2, args.videos // 3), rng)
        tracks = ("va", "expr", "au")
        train = {t: f"{root}/{t}/Train_Set" for t in tracks}
        val = {t: f"{root}/{t}/Validation_Set" for t in tracks}
        for seed in range(args.seeds):
            single = {t: run(root, [train[t]], [val[t]], f"{t}-{seed}", args, seed)[t] for t in tracks}
            multi = run(root, list(train.values()), list(val.values()), f"mtl-{seed}", args, seed)
            print(f"seed {seed}: {'task':6s} {'single':>7s} {'multi':>7s}")
            for t in tracks:
                print(f"        {t.upper():6s} {single[t]:7.4f} {multi[t]:7.4f}")
            s, m = sum(single.values()), sum(multi.values())
            print(f"        P_MTL  {s:7.4f} {m:7.4f}   multi - single: {m - s:+.4f} "
                  f"({'no negative transfer' if m >= s - 0.01 else 'NEGATIVE TRANSFER'})")


if __name__ == "__main__":
    main()
