"""The sbatch recipes run for real on a one-node Slurm on localhost (examples/slurm/local-cluster.sh).

Skipped where Slurm cannot be started (not root, or no slurmctld and no apt); `.ci/run` installs
Slurm and sets ABAW_REQUIRE_SLURM=1, which turns that skip into a failure.
"""

import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import FACE_PNG, abaw

from abawtools import demo

pytestmark = pytest.mark.slow  # a real one-node Slurm

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SLURM = os.path.join(ROOT, "examples", "slurm")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    state = tmp_path_factory.mktemp("slurm")
    required = os.environ.get("ABAW_REQUIRE_SLURM") == "1"
    if os.geteuid() != 0 or not (shutil.which("slurmctld") or shutil.which("apt-get")):
        if required:
            pytest.fail("ABAW_REQUIRE_SLURM=1 but Slurm cannot be installed here")
        pytest.skip("needs root and Slurm (or apt-get to install it)")
    proc = subprocess.run(["bash", os.path.join(SLURM, "local-cluster.sh"), "start", str(state)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        if required:
            pytest.fail("local Slurm did not start:\n" + proc.stderr)
        pytest.skip("local Slurm did not start: " + proc.stderr[-300:])
    env = dict(os.environ)
    env["SLURM_CONF"] = str(state / "slurm.conf")
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
    for k in [k for k in env if k.startswith("SLURM_") and k != "SLURM_CONF"]:
        del env[k]
    yield env
    subprocess.run(["bash", os.path.join(SLURM, "local-cluster.sh"), "stop", str(state)], check=False)
    assert not subprocess.run(["pgrep", "-f", f"slurmctld -f {state}"], capture_output=True).stdout
    assert not subprocess.run(["pgrep", "-f", "slurmstepd"], capture_output=True).stdout


def sbatch(env, cwd, *args):
    out = subprocess.run(["sbatch", "--parsable", *map(str, args)], env=env, cwd=cwd, capture_output=True,
                         text=True, check=True).stdout
    return out.strip().split(";")[0]


def test_extract_array_each_video_exactly_once(cluster, tmp_path):
    rng = np.random.default_rng(0)
    face = demo.load_face(FACE_PNG)
    videos = tmp_path / "videos"
    videos.mkdir()
    for i, seconds in enumerate((1.0, 1.5, 2.0, 2.5, 3.0)):
        T = int(seconds * demo.FPS)
        demo.write_clip(str(videos / f"c{i}.mp4"), np.zeros(T, int), np.zeros(T, bool), face, rng)
    subprocess.run(["sbatch", "--wait", "--array=0-3", os.path.join(SLURM, "extract.sbatch"), videos, videos, "feats"],
                   env=cluster, cwd=tmp_path, check=True, capture_output=True)
    for kind in ("visual", "audio50"):
        assert sorted(os.listdir(tmp_path / "feats" / kind)) == [f"c{i}.npy" for i in range(5)]
    done = {}
    for log in tmp_path.glob("abaw-extract-*.log"):
        for vid in re.findall(r"^(c\d): \d+ frames", log.read_text(), re.M):
            done.setdefault(vid, []).append(log.name)
    assert sorted(done) == [f"c{i}" for i in range(5)]
    assert all(len(v) == 1 for v in done.values()), done  # no video extracted twice
    assert len({n for v in done.values() for n in v}) == 4  # all four tasks had work


def _preempt_requeue_and_wait(cluster, job, ckpt, done):
    """Once `ckpt` exists: USR1 to the batch script (what --signal=B:USR1@120 does before the time
    limit), wait for the requeued job to pend, start it, and wait for `done`."""
    deadline = time.time() + 180
    while not ckpt.exists() and time.time() < deadline:
        time.sleep(0.5)
    assert ckpt.exists(), "no checkpoint: the job did not start"
    subprocess.run(["scancel", "--batch", "--signal=USR1", job], env=cluster, check=True)
    deadline = time.time() + 120
    while time.time() < deadline:  # the job goes back to the queue ...
        state = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], env=cluster, capture_output=True, text=True)
        if state.stdout.strip() == "PENDING":
            break
        time.sleep(0.5)
    # ... where Slurm holds a requeued job about two minutes; start it now instead (not within the
    # same second as the requeue: slurmd refuses a credential from the second it was revoked in)
    time.sleep(2.5)
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], env=cluster, check=True)
    deadline = time.time() + 300
    while not done.exists() and time.time() < deadline:
        time.sleep(1)


@pytest.mark.parametrize("nproc", ["1", "2"])
def test_train_requeues_after_usr1_and_resumes(cluster, tmp_path, nproc):
    from conftest import make_feature_set

    make_feature_set(tmp_path / "d", np.random.default_rng(0), n_videos=6)
    d = tmp_path / "d"
    abaw("window", "--visual-dir", d / "visual", "--audio-dir", d / "audio", "--label-dir", d / "labels",
         "-o", tmp_path / "t.csv")
    env = dict(cluster, NPROC=nproc, OMP_NUM_THREADS="1")  # NPROC=2: srun + torchrun (c10d) + DDP (gloo)
    nodes = ["--nodes", "1"] if nproc == "2" else []  # the multi-node recipe, on the one node there is
    job = sbatch(env, tmp_path, *nodes, os.path.join(SLURM, "train.sbatch"), "t.csv", "t.csv", "m.safetensors",
                 "--epochs", "6", "--d-model", "32", "--layers", "1", "--heads", "4", "--batch-size", "16")
    _preempt_requeue_and_wait(cluster, job, tmp_path / "m.safetensors.ckpt" / "checkpoint.pt", tmp_path / "m.safetensors")
    log = (tmp_path / f"abaw-train-{job}.log").read_text()
    assert (tmp_path / "m.safetensors").exists(), log
    assert "requeueing job" in log and "resumed from" in log and "SIGUSR1" in log
    assert f"{nproc} process(es)" in log


def test_finetune_requeues_after_usr1_and_resumes(cluster, tmp_path):
    import imagedata

    rng = np.random.default_rng(0)
    imagedata.image_folder(str(tmp_path / "faces"), 16, rng)
    imagedata.tiny_backbone(str(tmp_path / "tiny"), "resnet")
    job = sbatch(dict(cluster, OMP_NUM_THREADS="1"), tmp_path, os.path.join(SLURM, "finetune.sbatch"), "ft",
                 "--model", "tiny", "--images", "faces", "--epochs", "12", "--batch-size", "8", "--accumulate", "1",
                 "--workers", "0", "--checkpoint-every", "5")
    _preempt_requeue_and_wait(cluster, job, tmp_path / "ft.ckpt" / "checkpoint.pt", tmp_path / "ft" / "head.safetensors")
    log = (tmp_path / f"abaw-finetune-{job}.log").read_text()
    assert (tmp_path / "ft" / "head.safetensors").exists(), log
    assert "requeueing job" in log and "resumed from" in log and "SIGUSR1" in log
