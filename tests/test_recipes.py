"""The recipes in examples/ run for real: the Makefile (incremental, parallel), the shell pipe,
the ablation tables and the one-command demo's building blocks."""

import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from conftest import FACE_PNG, make_feature_set, tool_env

from abawtools import demo

pytestmark = pytest.mark.slow  # the example scripts end to end, in real processes

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
EXAMPLES = os.path.join(ROOT, "examples")
TINY = "--epochs 3 --d-model 32 --layers 1 --heads 4 --lr 2e-3 --batch-size 16"


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    demo.make_dataset(str(root), n_train=3, n_val=1, seconds=3.0, face_path=FACE_PNG)
    return root


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_makefile_builds_scores_and_rebuilds_only_what_changed(clips):
    args = ["make", "-s", "-f", os.path.join(EXAMPLES, "Makefile"), "-j2", "CROPPED=", "VIDEOS=videos/train videos/val",
            "TRAIN_LABELS=labels/train", "VAL_LABELS=labels/val", "OUT=work", f"TRAIN_FLAGS={TINY}"]
    proc = subprocess.run(args, cwd=clips, env=tool_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "macro F1" in proc.stdout
    assert (clips / "work" / "score.json").exists()
    assert sorted(os.listdir(clips / "work" / "visual")) == ["train00.npy", "train01.npy", "train02.npy", "val00.npy"]
    # up to date: nothing to do; a newer prediction redoes the score and nothing upstream
    assert subprocess.run([*args, "-q", "work/score.json"], cwd=clips, env=tool_env()).returncode == 0
    os.utime(clips / "work" / "pred" / "val00.txt")
    dry = subprocess.run([*args, "-n"], cwd=clips, env=tool_env(), capture_output=True, text=True).stdout
    assert "abaw score" in dry and "abaw train" not in dry and "extract" not in dry


def test_pipeline_sh_one_video_through_pipes(clips):
    model = clips / "work" / "model.safetensors"
    if not model.exists():
        pytest.skip("needs the Makefile test's model")
    proc = subprocess.run(["bash", os.path.join(EXAMPLES, "pipeline.sh"), model, "videos/val/val00.mp4",
                           "labels/val/val00.txt"], cwd=clips, env=tool_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert re.search(r"macro F1 \d\.\d{4}", proc.stdout)


def test_ablation_sh_prints_both_tables(tmp_path):
    from conftest import abaw

    make_feature_set(tmp_path / "d", np.random.default_rng(0), n_videos=2, t_range=(70, 90))
    make_feature_set(tmp_path / "v", np.random.default_rng(1), n_videos=1, t_range=(70, 90), prefix="w")
    for split in ("d", "v"):
        s = tmp_path / split
        abaw("window", "--visual-dir", s / "visual", "--audio-dir", s / "audio", "--label-dir", s / "labels",
             "-o", tmp_path / f"{split}.csv")
    proc = subprocess.run(["bash", os.path.join(EXAMPLES, "ablation.sh"), "d.csv", "v.csv", "v", "v/labels", "abl",
                           "--", "--epochs", "1", "--batch-size", "32"],
                          cwd=tmp_path, env=tool_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    t2 = lines.index("Table 2. Baseline with different modality fusion weights (lambda).")
    t3 = [i for i, line in enumerate(lines) if line.startswith("Table 3.")][0]
    assert lines[t2 + 1].split() == ["Weight", "Accuracy", "F1-Score"]
    rows2 = [line.split() for line in lines[t2 + 2 : t2 + 6]]
    assert [r[0] for r in rows2] == ["0.0", "0.5", "0.7", "1.0"]
    rows3 = [line.split() for line in lines[t3 + 2 : t3 + 10]]
    assert [tuple(r[:3]) for r in rows3][4] == ("0.10", "256", "3")
    for r in rows2 + rows3:
        acc, f1 = float(r[-2]), float(r[-1])
        assert 0 <= acc <= 1 and 0 <= f1 <= 1
    # the baseline's lambda really reaches the model
    from abawtools.model import load_model

    assert load_model(str(tmp_path / "abl" / "baseline_l0.7.safetensors"))[0].cfg.fusion_lambda == 0.7
