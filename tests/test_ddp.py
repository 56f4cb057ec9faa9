"""torchrun + DistributedDataParallel on CPU (gloo): 2 processes follow 1 process's trajectory."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import abaw, make_feature_set

from abawtools.model import load_model

pytestmark = pytest.mark.slow  # torchrun processes


def test_two_processes_match_one(tmp_path):
    make_feature_set(tmp_path / "d", np.random.default_rng(0), n_videos=6)
    d = tmp_path / "d"
    abaw("window", "--visual-dir", d / "visual", "--audio-dir", d / "audio", "--label-dir", d / "labels",
         "-o", tmp_path / "t.csv")
    # dropout off: the two runs then do the same arithmetic, split differently (175 windows / 16:
    # the last batch has 15 windows, one rank gets 7 and the other 8)
    common = [tmp_path / "t.csv", "--epochs", "3", "--d-model", "32", "--layers", "1", "--heads", "4",
              "--lr", "2e-3", "--batch-size", "16", "--dropout", "0", "--modality-dropout", "0", "--seed", "1"]
    abaw("train", *common, "-o", tmp_path / "one.safetensors")
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([torchrun, "--standalone", "--nproc-per-node", "2", "-m", "abawtools", "train",
                           *map(str, common), "-o", str(tmp_path / "two.safetensors")],
                          capture_output=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    one, info1 = load_model(str(tmp_path / "one.safetensors"))
    two, info2 = load_model(str(tmp_path / "two.safetensors"))
    assert info2["training"]["world_size"] == 2
    l1 = [h["loss"] for h in info1["training"]["history"]]
    l2 = [h["loss"] for h in info2["training"]["history"]]
    assert l1 == pytest.approx(l2, rel=1e-4)
    for (k, a), b in zip(one.state_dict().items(), two.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4, msg=k)
