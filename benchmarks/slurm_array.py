"""An extraction job array on the local one-node Slurm vs the same work run serially.

    python benchmarks/slurm_array.py [--clips 8] [--seconds 10] [--tasks 2]   (root; installs Slurm)

Makes the clips, starts examples/slurm/local-cluster.sh, times `sbatch --wait --array=0-(N-1)
examples/slurm/extract.sbatch` against `abaw extract-visual` + `abaw extract-audio` over all clips
in one process, then stops the cluster. Slurm's own latency (scheduling, `--wait` polling) is in
the array's figure.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from abawtools import demo

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--tasks", type=int, default=2)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="abaw-slurm-")
    videos = os.path.join(work, "videos")
    os.makedirs(videos)
    rng = np.random.default_rng(0)
    face = demo.load_face()
    for i in range(args.clips):
        labels, faceless, _ = demo.make_labels(int(args.seconds * demo.FPS), rng)
        demo.write_clip(os.path.join(videos, f"c{i}.mp4"), labels, faceless, face, rng)
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    clips = sorted(os.path.join(videos, f) for f in os.listdir(videos))

    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "abawtools", "extract-visual", *clips, "-o", f"{work}/serial/visual/"],
                   check=True, capture_output=True, env=env)
    subprocess.run([sys.executable, "-m", "abawtools", "extract-audio", *clips, "-o", f"{work}/serial/audio50/"],
                   check=True, capture_output=True, env=env)
    serial = time.perf_counter() - t

    state = os.path.join(work, "slurm")
    cluster = os.path.join(ROOT, "examples", "slurm", "local-cluster.sh")
    subprocess.run(["bash", cluster, "start", state], check=True)
    try:
        env["SLURM_CONF"] = os.path.join(state, "slurm.conf")
        t = time.perf_counter()
        subprocess.run(["sbatch", "--wait", f"--array=0-{args.tasks - 1}",
                        os.path.join(ROOT, "examples", "slurm", "extract.sbatch"), videos, videos, "feats"],
                       check=True, capture_output=True, env=env, cwd=work)
        array = time.perf_counter() - t
    finally:
        subprocess.run(["bash", cluster, "stop", state], check=False)
    n = len(os.listdir(os.path.join(work, "feats", "visual")))
    print(f"{args.clips} clips x {args.seconds:.0f} s (320x240, 25 fps), {os.cpu_count()} CPUs; {n} outputs from the array")
    print(f"serial, one process each for visual and audio: {serial:6.1f} s")
    print(f"Slurm array of {args.tasks} tasks (sbatch --wait):  {array:6.1f} s   speed-up {serial / array:.2f}x")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
