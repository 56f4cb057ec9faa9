import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import abaw, invoke, make_feature_set, write_label_file

from abawtools import data, inference, windows
from abawtools.model import ModelConfig, build_model, load_model

SMALL = ["--d-model", "32", "--layers", "1", "--heads", "4", "--lr", "2e-3", "--batch-size", "16"]


def test_window_starts_tail_and_short_video():
    np.testing.assert_array_equal(windows.window_starts(100, 64, 8), [0, 8, 16, 24, 32, 36])
    np.testing.assert_array_equal(windows.window_starts(64, 64, 8), [0])
    np.testing.assert_array_equal(windows.window_starts(40, 64, 8), [0])  # padded, never negative
    np.testing.assert_array_equal(windows.window_starts(0, 64, 8), [])


def test_window_cli_drop_rule_padding_and_counts(run, tmp_path, rng):
    for d in ("visual", "audio", "labels"):
        (tmp_path / d).mkdir()
    labels = np.zeros(100, int)
    labels[:40] = -1  # windows starting at 0..8 have > 25 % invalid
    write_label_file(tmp_path / "labels" / "a.txt", labels)
    write_label_file(tmp_path / "labels" / "short_left.txt", [3] * 30)
    for vid, T in (("a", 100), ("short_left", 30)):
        np.save(tmp_path / "visual" / f"{vid}.npy", np.zeros((T, 4), np.float16))
    np.save(tmp_path / "audio" / "a.npy", np.zeros((100, 2), np.float32))
    np.save(tmp_path / "audio" / "short.npy", np.zeros((30, 2), np.float32))  # shared by short_left
    res = run(["window", "--visual", tmp_path / "visual", "--audio", tmp_path / "audio",
               "--labels", tmp_path / "labels", "-o", tmp_path / "m.csv"])
    assert res.exit_code == 0, res.stderr
    rows = windows.read_manifest(str(tmp_path / "m.csv"))
    a_starts = [r["start"] for r in rows if r["video"] == "a"]
    # fraction invalid of window s = max(0, 40 - s) / 64 -> s=16: 24/64 = 0.375 dropped, s=24: 0.25 kept
    assert a_starts == [24, 32, 36]
    short = [r for r in rows if r["video"] == "short_left"]
    assert [(r["start"], r["stop"], r["valid_fraction"]) for r in short] == [(0, 64, 1.0)]
    assert short[0]["audio"].endswith("audio/short.npy")
    assert "Neutral=" + str(48 + 56 + 60) in res.stderr and "Fear=30" in res.stderr


def test_label_counts_equal_a_window_by_window_count(rng):
    labels = rng.integers(-1, 8, size=150)
    starts = np.array([0, 8, 8, 40, 86, 120])  # a repeated window and one running past the end
    expected = np.zeros(8, int)
    for s in starts:
        seg = labels[s : s + 64]
        expected += np.bincount(seg[seg >= 0], minlength=8)
    np.testing.assert_array_equal(windows.label_counts(labels, starts, 64, 8), expected)


def test_padding_is_masked_and_labelled_minus_one(tmp_path, rng):
    np.save(tmp_path / "v.npy", rng.normal(size=(30, 4)).astype(np.float32))
    np.save(tmp_path / "a.npy", rng.normal(size=(30, 2)).astype(np.float32))
    write_label_file(tmp_path / "l.txt", [2] * 30)
    video = data.Video("v", str(tmp_path / "v.npy"), str(tmp_path / "a.npy"), str(tmp_path / "l.txt"))
    b = data.cut_batch([(video, 0)], 64)
    assert b["visual_mask"][0, :30].all() and not b["visual_mask"][0, 30:].any()
    assert not b["audio_mask"][0, 30:].any()
    assert (b["labels"][0, :30] == 2).all() and (b["labels"][0, 30:] == -1).all()


@pytest.mark.parametrize("arch", ["dual", "baseline"])
@pytest.mark.parametrize("T", [20000 // 40, 61, 64])
def test_batched_soft_voting_equals_window_loop(tmp_path, rng, arch, T):
    v = rng.normal(size=(T, 10)).astype(np.float16)
    v[rng.random(T) < 0.2] = np.nan
    np.save(tmp_path / "v.npy", v)
    np.save(tmp_path / "a.npy", rng.normal(size=(T, 6)).astype(np.float32))
    cfg = ModelConfig(arch=arch, visual_dim=10, audio_dim=6, d_model=16, layers=1, heads=4,
                      audio_context=18 if arch == "baseline" else 0)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    video = data.Video("v", str(tmp_path / "v.npy"), str(tmp_path / "a.npy"))
    batched = inference.predict_video(model, video, batch_size=7)
    loop = inference.predict_window_by_window(model, video)
    assert batched.shape == (T, 8) and np.isfinite(batched).all()
    np.testing.assert_allclose(batched, loop, atol=1e-5)


def test_baseline_audio_context_is_the_video_level_mean(tmp_path, rng):
    """Frame t's audio = mean of rows t-18..t+18 of the whole video, also across window edges."""
    T = 150
    audio = rng.normal(size=(T, 6)).astype(np.float32)
    np.save(tmp_path / "v.npy", np.full((T, 10), np.nan, np.float32))  # no face: audio decision only
    np.save(tmp_path / "a.npy", audio)
    cfg = ModelConfig(arch="baseline", visual_dim=10, audio_dim=6, d_model=16, audio_context=18, dropout=0)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    video = data.Video("v", str(tmp_path / "v.npy"), str(tmp_path / "a.npy"))
    got = inference.predict_video(model, video)
    pooled = np.stack([audio[max(0, t - 18) : t + 19].mean(0) for t in range(T)])
    with torch.no_grad():
        expected = model.a_mlp(torch.from_numpy(pooled)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def _dataset(tmp_path, rng):
    make_feature_set(tmp_path / "train", rng, n_videos=8)
    make_feature_set(tmp_path / "val", rng, n_videos=3, prefix="w")
    for split in ("train", "val"):
        d = tmp_path / split
        abaw("window", "--visual", d / "visual", "--audio", d / "audio", "--labels", d / "labels",
             "-o", tmp_path / f"{split}.csv")
    return tmp_path / "train.csv", tmp_path / "val.csv"


def test_window_train_infer_smooth_score_learns(tmp_path, rng):
    train_csv, val_csv = _dataset(tmp_path, rng)
    model = tmp_path / "m.safetensors"
    result = invoke("train", train_csv, "--val", val_csv, "-o", model, "--epochs", "6", *SMALL)
    assert result.stdout == "" and "val macro F1" in result.stderr
    val = tmp_path / "val"
    for vid in ("w0", "w1", "w2"):
        logits = abaw("infer", "-m", model, "--visual", val / "visual" / f"{vid}.npy",
                      "--audio", val / "audio" / f"{vid}.npy").stdout
        pred = abaw("smooth", "-", stdin=logits).stdout
        (tmp_path / "pred").mkdir(exist_ok=True)
        (tmp_path / "pred" / f"{vid}.txt").write_bytes(pred)
    out = json.loads(abaw("score", "--pred-dir", tmp_path / "pred", "--label-dir", val / "labels").stdout)
    assert out["macro_f1"] >= 0.9, out["macro_f1"]
    # the model remembers what the best validation epoch scored through the same path
    _, info = load_model(str(model))
    assert info["training"]["best"]["val_macro_f1"] == pytest.approx(out["macro_f1"], abs=1e-6)


def test_no_face_video_gives_finite_audio_only_logits(tmp_path, rng):
    train_csv, _ = _dataset(tmp_path, rng)
    model = tmp_path / "m.safetensors"
    invoke("train", train_csv, "-o", model, "--epochs", "1", *SMALL)
    T = 90
    np.save(tmp_path / "nv.npy", np.full((T, 16), np.nan, np.float16))
    np.save(tmp_path / "na.npy", rng.normal(size=(T, 12)).astype(np.float32))
    out = np.load(__import__("io").BytesIO(
        invoke("infer", "-m", model, "--visual", tmp_path / "nv.npy", "--audio", tmp_path / "na.npy").stdout_bytes))
    assert out.shape == (T, 8) and np.isfinite(out).all()
    out = np.load(__import__("io").BytesIO(invoke("infer", "-m", model, "--visual", tmp_path / "nv.npy").stdout_bytes))
    assert out.shape == (T, 8) and np.isfinite(out).all()  # no face and no audio track either


def _weights(path):
    from safetensors.torch import load_file

    return load_file(str(path))


def test_resume_gives_the_same_weights(tmp_path, rng):
    train_csv, val_csv = _dataset(tmp_path, rng)
    common = [train_csv, "--val", val_csv, "--epochs", "3", *SMALL, "--seed", "7"]
    invoke("train", *common, "-o", tmp_path / "straight.safetensors")
    # interrupted mid-epoch 2 (as a SIGTERM would), then the same command continues it
    result = invoke("train", *common, "-o", tmp_path / "resumed.safetensors", "--resume", tmp_path / "ck",
                    "--stop-after-steps", "20", check=False)
    assert result.exit_code == 75 and not (tmp_path / "resumed.safetensors").exists()
    assert (tmp_path / "ck" / "PREEMPTED").read_text().startswith("stopped after 20 steps")
    assert "--resume" in result.stderr
    # the best epoch's weights in their own file, named by the checkpoint, not inside it
    state = torch.load(tmp_path / "ck" / "checkpoint.pt", weights_only=True)
    best = f"best-epoch{json.loads(state['best'])['epoch']}.pt"
    assert sorted(os.listdir(tmp_path / "ck")) == ["PREEMPTED", best, "checkpoint.pt"]
    assert state["best_file"] == best and "best_state" not in state
    invoke("train", *common, "-o", tmp_path / "resumed.safetensors", "--resume", tmp_path / "ck")
    assert not (tmp_path / "ck" / "PREEMPTED").exists()
    a, b = _weights(tmp_path / "straight.safetensors"), _weights(tmp_path / "resumed.safetensors")
    assert a.keys() == b.keys()
    # the history (epoch losses, validation scores) is the same too, not only the weights
    h1 = load_model(str(tmp_path / "straight.safetensors"))[1]["training"]["history"]
    h2 = load_model(str(tmp_path / "resumed.safetensors"))[1]["training"]["history"]
    for r1, r2 in zip(h1, h2):
        assert r1["loss"] == pytest.approx(r2["loss"], rel=1e-9) and r1["val_macro_f1"] == r2["val_macro_f1"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_sigusr1_writes_checkpoint_and_exits_75(tmp_path, rng):
    train_csv, _ = _dataset(tmp_path, rng)
    cmd = [sys.executable, "-m", "abawtools", "train", str(train_csv), "-o", str(tmp_path / "m.safetensors"),
           "--epochs", "200", *SMALL]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (tmp_path / "m.safetensors.ckpt" / "checkpoint.pt").exists() and time.time() < deadline:
        time.sleep(0.2)  # the first epoch has ended: training is under way
    proc.send_signal(signal.SIGUSR1)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err.decode()
    assert b"SIGUSR1" in err and not (tmp_path / "m.safetensors").exists()
    ck = torch.load(tmp_path / "m.safetensors.ckpt" / "checkpoint.pt", weights_only=True)
    assert ck["epoch"] >= 1


def test_seed_reproducible(tmp_path, rng):
    train_csv, _ = _dataset(tmp_path, rng)
    for name in ("a", "b"):
        invoke("train", train_csv, "-o", tmp_path / f"{name}.safetensors", "--epochs", "1", *SMALL, "--seed", "3")
    a, b = _weights(tmp_path / "a.safetensors"), _weights(tmp_path / "b.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def test_validation_videos_that_are_training_videos_are_said(tmp_path, rng, run):
    train_csv, val_csv = _dataset(tmp_path, rng)
    result = run(["train", train_csv, "--val", train_csv, "-o", tmp_path / "a.safetensors", "--epochs", "1", *SMALL])
    assert result.exit_code == 0, result.stderr
    assert "warning: 8 validation video(s) are training videos too (v0, v1, v2, v3, v4 ...): the validation " \
           "score is not held out" in result.stderr
    result = run(["train", train_csv, "--val", val_csv, "-o", tmp_path / "b.safetensors", "--epochs", "1", *SMALL])
    assert result.exit_code == 0 and "warning" not in result.stderr, result.stderr


def test_infer_errors(tmp_path, rng):
    train_csv, _ = _dataset(tmp_path, rng)
    model = tmp_path / "m.safetensors"
    invoke("train", train_csv, "-o", model, "--epochs", "1", *SMALL)
    np.save(tmp_path / "v.npy", np.zeros((10, 5), np.float32))
    result = invoke("infer", "-m", model, "--visual", tmp_path / "v.npy", "-o", tmp_path / "o.npy", check=False)
    assert result.exit_code == 1 and "model expects 16 + 12" in result.stderr
    assert not (tmp_path / "o.npy").exists()
    (tmp_path / "bad.safetensors").write_bytes(b"\x80\x04pickle")
    result = invoke("infer", "-m", tmp_path / "bad.safetensors", "--visual", tmp_path / "v.npy", check=False)
    assert result.exit_code == 1 and result.stderr.startswith("abaw infer: error: ")
    assert result.stderr.count("\n") == 1


def test_val_with_no_labelled_frame_is_refused_before_training(tmp_path, rng):
    train_csv, _ = _dataset(tmp_path, rng)
    d = tmp_path / "val"
    abaw("window", "--visual", d / "visual", "--audio", d / "audio", "--labels", d / "labels",
         "--max-invalid", "1", "-o", tmp_path / "val-all.csv")
    for f in (d / "labels").iterdir():  # every validation frame unlabelled after the manifest was made
        write_label_file(f, [-1] * (len(f.read_text().splitlines()) - 1))
    model = tmp_path / "m.safetensors"
    result = invoke("train", train_csv, "--val", tmp_path / "val-all.csv", "-o", model, "--epochs", "1", *SMALL,
                    check=False)
    assert result.exit_code == 1, result.stderr
    assert result.stderr.endswith("abaw train: error: --val: every frame of the validation videos is "
                                  "labelled -1, nothing to score\n")
    assert not model.exists()
