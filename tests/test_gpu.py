"""Every CUDA path end to end through the CLI, on tiny models built from a config: `pytest -m gpu`.

They skip where no GPU is usable. `ABAW_TEST_DEVICE=cpu` runs the same tests on the CPU (what
`benchmarks/gpu_check.py --device cpu --quick` does in CI), so the tests themselves cannot rot
between the rare sessions with a GPU; the DDP test needs two GPUs and skips otherwise.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import invoke, make_feature_set

DEVICE = os.environ.get("ABAW_TEST_DEVICE", "cuda")
ON_GPU = DEVICE.startswith("cuda")

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(ON_GPU and not torch.cuda.is_available(), reason="no CUDA GPU (ABAW_TEST_DEVICE=cpu "
                                 "runs these on the CPU)")]


@pytest.fixture(scope="module")
def feats(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpu")
    make_feature_set(root / "d", np.random.default_rng(0), n_videos=4, t_range=(90, 140))
    d = root / "d"
    invoke("window", "--visual-dir", d / "visual", "--audio-dir", d / "audio", "--label-dir", d / "labels",
           "-o", root / "t.csv")
    return root


SMALL = ["--d-model", "32", "--layers", "1", "--heads", "4", "--batch-size", "16"]


def test_blazeface_batched_on_the_device_finds_the_cpu_faces():
    from test_blazeface import _rolled_frames

    from abawtools.facefinder import FaceFinder

    frames = _rolled_frames(0, n=6) + _rolled_frames(60, n=6)
    here, cpu = FaceFinder(device=DEVICE).find_batch(frames), FaceFinder(device="cpu").find_batch(frames)
    assert [len(f) for f in here] == [len(f) for f in cpu] and sum(map(len, cpu)) >= 10
    for a, b in zip(here, cpu):
        for (sa, box_a, _), (sb, box_b, _) in zip(a, b):
            assert abs(sa - sb) < 1e-2 and np.abs(np.subtract(box_a, box_b)).max() <= 1


def test_extract_visual_with_blazeface_on_the_device(tmp_path):
    from test_blazeface import _rolled_frames

    from abawtools import demo

    demo.write_media(str(tmp_path / "r.mp4"), iter(_rolled_frames(30, n=8, still=True)), (640, 480))
    out = {}
    for device in (DEVICE, "cpu"):
        invoke("extract-visual", tmp_path / "r.mp4", "--device", device, "-o", tmp_path / f"{device}.npy")
        out[device] = np.load(tmp_path / f"{device}.npy")
    assert (np.isfinite(out[DEVICE]).all(1) == np.isfinite(out["cpu"]).all(1)).all()
    assert np.isfinite(out[DEVICE]).all(1).sum() >= 7


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_extract_visual_hf_backbone_in_half_precision_is_close_to_fp32(tmp_path, dtype):
    if dtype == "fp16" and not ON_GPU:
        pytest.skip("fp16 convolutions are a GPU path")
    import imagedata

    rng = np.random.default_rng(0)
    for t in range(6):
        imagedata.write_image(str(tmp_path / "v" / f"{t + 1:05d}.jpg"), t % 7, rng)
    vit = imagedata.tiny_backbone(str(tmp_path / "vit"), "vit")
    for d in ("fp32", dtype):
        invoke("extract-visual", tmp_path / "v", "--no-detect", "--model", vit, "--device", DEVICE, "--dtype", d,
               "-o", tmp_path / f"{d}.npy")
    full, half = np.load(tmp_path / "fp32.npy"), np.load(tmp_path / f"{dtype}.npy")
    assert np.isfinite(half).all()
    assert np.abs(half - full).max() < 0.1 * np.abs(full).max()


def test_extract_audio_speech_model_on_the_device(tmp_path):
    import soundfile as sf
    from test_extract import _tiny_speech

    path = _tiny_speech(tmp_path, 2)
    sf.write(tmp_path / "s.wav", np.random.default_rng(1).normal(size=3 * 16000).astype(np.float32) * 0.1, 16000)
    for device in (DEVICE, "cpu"):
        invoke("extract-audio", tmp_path / "s.wav", "--model", path, "--device", device, "-o",
               tmp_path / f"{device}.npy")
    here, cpu = np.load(tmp_path / f"{DEVICE}.npy"), np.load(tmp_path / "cpu.npy")
    assert here.shape == cpu.shape == (149, 32)
    np.testing.assert_allclose(here, cpu, atol=1e-3, rtol=1e-3)


def test_train_in_bf16_stops_and_resumes_exactly(feats, tmp_path):
    from safetensors.numpy import load_file

    common = ["train", feats / "t.csv", "--epochs", "2", *SMALL, "--accumulate", "1", "--device", DEVICE, "--dtype", "bf16"]
    invoke(*common, "-o", tmp_path / "straight.safetensors")
    stopped = invoke(*common, "-o", tmp_path / "resumed.safetensors", "--stop-after-steps", "3", check=False)
    assert stopped.exit_code == 75, stopped.stderr
    result = invoke(*common, "-o", tmp_path / "resumed.safetensors")
    assert "resumed from" in result.stderr
    a, b = load_file(tmp_path / "straight.safetensors"), load_file(tmp_path / "resumed.safetensors")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_finetune_in_bf16_both_stages(tmp_path):
    import imagedata

    rng = np.random.default_rng(0)
    images = imagedata.image_folder(str(tmp_path / "images"), 4, rng)
    cropped, labels = imagedata.affwild2(str(tmp_path / "aw"), ["a", "b"], rng, (30, 40))
    beit = imagedata.tiny_backbone(str(tmp_path / "beit"), "beit")
    fast = ["--epochs", "1", "--batch-size", "8", "--accumulate", "1", "--workers", "0", "--device", DEVICE,
            "--dtype", "bf16"]
    invoke("finetune", "--model", beit, "--images", images, "-o", tmp_path / "s1", *fast)
    result = invoke("finetune", "--model", tmp_path / "s1", "--affwild2", cropped, labels, "--val", cropped, labels,
                    "-o", tmp_path / "s2", *fast)
    assert "head rebuilt: 7 classes -> 8" in result.stderr
    invoke("extract-visual", os.path.join(cropped, "a"), "--no-detect", "--model", tmp_path / "s2", "--logits",
           "--device", DEVICE, "--dtype", "bf16", "--like", os.path.join(labels, "a.txt"), "-o", tmp_path / "a.npy")
    logits = np.load(tmp_path / "a.npy")
    assert logits.shape[1] == 8 and np.isfinite(logits).all()


def test_infer_in_bf16_and_an_ensemble_match_the_cpu(feats, tmp_path):
    paths = []
    for seed in (0, 1):
        p = tmp_path / f"m{seed}.safetensors"
        invoke("train", feats / "t.csv", "--epochs", "1", *SMALL, "--seed", seed, "--device", "cpu", "-o", p)
        paths.append(p)
    v, a = feats / "d" / "visual" / "v0.npy", feats / "d" / "audio" / "v0.npy"
    members = [x for p in paths for x in ("-m", p)]
    invoke("infer", *members, "--visual", v, "--audio", a, "--device", "cpu", "--dtype", "fp32", "-o", tmp_path / "c.npy")
    invoke("infer", *members, "--visual", v, "--audio", a, "--device", DEVICE, "--dtype", "bf16", "-o", tmp_path / "g.npy")
    cpu, here = np.load(tmp_path / "c.npy"), np.load(tmp_path / "g.npy")
    assert np.isfinite(here).all() and here.shape == cpu.shape
    assert np.abs(here - cpu).max() < 0.1 * max(np.abs(cpu).max(), 1.0)
    assert (here.argmax(1) == cpu.argmax(1)).mean() > 0.9


@pytest.mark.skipif(not ON_GPU or torch.cuda.device_count() < 2, reason="DDP over NCCL needs two GPUs")
def test_ddp_over_nccl_on_two_gpus_matches_one(feats, tmp_path):
    common = [feats / "t.csv", "--epochs", "2", *SMALL, "--dropout", "0", "--modality-dropout", "0",
              "--dtype", "fp32"]
    invoke("train", *common, "--device", "cuda", "-o", tmp_path / "one.safetensors")
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    proc = subprocess.run([torchrun, "--standalone", "--nproc-per-node", "2", "-m", "abawtools", "train",
                           *map(str, common), "--device", "cuda", "-o", str(tmp_path / "two.safetensors")],
                          capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    from abawtools.model import load_model

    one, _ = load_model(str(tmp_path / "one.safetensors"))
    two, info = load_model(str(tmp_path / "two.safetensors"))
    assert info["training"]["world_size"] == 2
    for (k, a), b in zip(one.state_dict().items(), two.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3, msg=k)
