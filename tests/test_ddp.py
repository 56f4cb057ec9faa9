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


def _trained_in_one_process(tmp_path, epochs):
    """The training flags both tests share, and one.safetensors trained with them in one process.

    Dropout off: the runs then do the same arithmetic, split differently (175 windows / 16: the
    last batch has 15 windows, one rank gets 7 and the other 8)."""
    make_feature_set(tmp_path / "d", np.random.default_rng(0), n_videos=6)
    d = tmp_path / "d"
    abaw("window", "--visual-dir", d / "visual", "--audio-dir", d / "audio", "--label-dir", d / "labels",
         "-o", tmp_path / "t.csv")
    common = [tmp_path / "t.csv", "--epochs", str(epochs), "--d-model", "32", "--layers", "1", "--heads", "4",
              "--lr", "2e-3", "--batch-size", "16", "--dropout", "0", "--modality-dropout", "0", "--seed", "1"]
    abaw("train", *common, "-o", tmp_path / "one.safetensors")
    return common


def test_two_processes_match_one(tmp_path):
    common = _trained_in_one_process(tmp_path, epochs=3)
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


def test_two_torchrun_nodes_on_localhost_match_one_process(tmp_path):
    """What examples/slurm/*.sbatch run on N nodes: one torchrun per node, a c10d rendezvous on
    the first node's address. Two such "nodes" on localhost give the model one process gives."""
    import socket

    common = _trained_in_one_process(tmp_path, epochs=2)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [torchrun, "--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint",
           f"127.0.0.1:{port}", "--rdzv-id", "test", "-m", "abawtools", "train", *map(str, common),
           "-o", str(tmp_path / "two.safetensors")]
    nodes = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) for _ in range(2)]
    outs = [n.communicate(timeout=300) for n in nodes]
    assert all(n.returncode == 0 for n in nodes), [o[1].decode()[-1500:] for o in outs]
    one, _ = load_model(str(tmp_path / "one.safetensors"))
    two, info = load_model(str(tmp_path / "two.safetensors"))
    assert info["training"]["world_size"] == 2
    for (k, a), b in zip(one.state_dict().items(), two.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-4, msg=k)
