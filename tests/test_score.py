import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import abaw, write_label_file

from abawtools import CLASSES, submission


def reference_scores(truths, preds):
    """Independent computation: loops over pooled frames, F1 from counts, sklearn's macro rule."""
    t_all, p_all = [], []
    for t, p in zip(truths, preds):
        for a, b in zip(t, p):
            if a != -1:
                t_all.append(int(a))
                p_all.append(int(b))
    f1s = {}
    for c in range(8):
        tp = sum(1 for a, b in zip(t_all, p_all) if a == c and b == c)
        fp = sum(1 for a, b in zip(t_all, p_all) if a != c and b == c)
        fn = sum(1 for a, b in zip(t_all, p_all) if a == c and b != c)
        if tp + fp + fn == 0:
            continue  # absent from truth and prediction: not in the mean
        f1s[c] = 2 * tp / (2 * tp + fp + fn)
    acc = sum(1 for a, b in zip(t_all, p_all) if a == b) / len(t_all)
    return sum(f1s.values()) / len(f1s), acc, f1s


def make_videos(tmp_path, rng, n=5, absent=(7,)):
    label_dir = tmp_path / "labels"
    pred_dir = tmp_path / "pred"
    label_dir.mkdir()
    pred_dir.mkdir()
    classes = [c for c in range(8) if c not in absent]
    truths, preds = [], []
    for i in range(n):
        T = int(rng.integers(40, 200))
        truth = rng.choice(classes, size=T)
        truth[rng.random(T) < 0.15] = -1
        # predictions: right ~60% of the time, never predicts the absent classes
        pred = np.where(rng.random(T) < 0.6, np.maximum(truth, 0), rng.choice(classes, size=T))
        write_label_file(label_dir / f"vid{i}.txt", truth)
        if i % 2:
            logits = rng.normal(size=(T, 8)).astype(np.float32)
            logits[np.arange(T), pred] += 10
            np.save(pred_dir / f"vid{i}.npy", logits)
        else:
            write_label_file(pred_dir / f"vid{i}.txt", pred)
        truths.append(truth)
        preds.append(pred)
    return label_dir, pred_dir, truths, preds


def test_pooled_macro_f1_against_independent_computation(run, tmp_path, rng):
    label_dir, pred_dir, truths, preds = make_videos(tmp_path, rng)
    res = run(["score", "--pred-dir", pred_dir, "--label-dir", label_dir])
    assert res.exit_code == 0, res.stderr
    out = json.loads(res.stdout)
    macro, acc, f1s = reference_scores(truths, preds)
    assert out["macro_f1"] == pytest.approx(macro, abs=1e-12)
    assert out["accuracy"] == pytest.approx(acc, abs=1e-12)
    assert out["absent_classes"] == ["Other"]
    for c, f in f1s.items():
        assert out["per_class"][CLASSES[c]]["f1"] == pytest.approx(f, abs=1e-12)
    assert out["videos"] == 5
    assert out["frames"] == sum(int((t >= 0).sum()) for t in truths)
    # pooled, not a mean over videos
    per_video = np.mean([reference_scores([t], [p])[0] for t, p in zip(truths, preds)])
    assert abs(per_video - out["macro_f1"]) > 1e-6
    cm = np.array(out["confusion_matrix"])
    assert cm.sum() == out["frames"] and np.trace(cm) == round(acc * out["frames"])


def test_pair_submission_and_table(run, tmp_path, rng):
    label_dir, pred_dir, truths, preds = make_videos(tmp_path, rng, n=3)
    res = run(["score", pred_dir / "vid0.txt", label_dir / "vid0.txt"])
    assert json.loads(res.stdout)["macro_f1"] == pytest.approx(reference_scores(truths[:1], preds[:1])[0])

    sub = tmp_path / "sub.csv"
    submission.write_submission(str(sub), {f"vid{i}": p for i, p in enumerate(preds)})
    res = run(["score", "--submission", sub, "--label-dir", label_dir, "--format", "table"])
    assert res.exit_code == 0, res.stderr
    macro = reference_scores(truths, preds)[0]
    assert f"macro F1 {macro:.4f}" in res.stdout
    assert "(absent: not in the mean)" in res.stdout.splitlines()[8]  # the Other row


def test_unmatched_names_reported(run, tmp_path, rng):
    label_dir, pred_dir, truths, preds = make_videos(tmp_path, rng, n=3)
    os.remove(label_dir / "vid2.txt")
    write_label_file(label_dir / "extra.txt", [0, 1])
    res = run(["score", "--pred-dir", pred_dir, "--label-dir", label_dir])
    # a labelled video without a prediction: the score would not be the split's
    assert res.exit_code == 1 and res.stdout == ""
    assert "1 labelled video(s) of" in res.stderr and "extra (--allow-missing scores the others)" in res.stderr
    res = run(["score", "--pred-dir", pred_dir, "--label-dir", label_dir, "--allow-missing"])
    out = json.loads(res.stdout)
    assert out["unmatched_predictions"] == ["vid2"] and out["unmatched_labels"] == ["extra"]
    assert "vid2" in res.stderr and "extra" in res.stderr
    assert out["videos"] == 2
    os.remove(label_dir / "extra.txt")  # predictions without labels are only listed
    assert run(["score", "--pred-dir", pred_dir, "--label-dir", label_dir]).exit_code == 0


def test_length_mismatch_names_video_and_lengths(tmp_path):
    write_label_file(tmp_path / "v7.txt", [0] * 10)
    write_label_file(tmp_path / "p.txt", [0] * 9)
    proc = abaw("score", tmp_path / "p.txt", tmp_path / "v7.txt", check=False)
    assert proc.returncode == 1
    assert proc.stderr.decode() == (
        "abaw score: error: v7: the prediction has 9 frames, the annotation 10: make T the annotation's "
        "(extract-visual and align with --like-dir LABEL_DIR)\n")


def test_all_frames_invalid_is_an_error_not_a_zero(tmp_path):
    write_label_file(tmp_path / "v1.txt", [-1, -1, -1])
    write_label_file(tmp_path / "p.txt", [0, 1, 2])
    proc = abaw("score", tmp_path / "p.txt", tmp_path / "v1.txt", check=False)
    assert proc.returncode == 1 and proc.stdout == b""
    assert proc.stderr.decode() == "abaw score: error: nothing to score: all 3 frames are labelled -1\n"


def test_json_keeps_matrix_rows_on_one_line(run, tmp_path, rng):
    label_dir, pred_dir, truths, preds = make_videos(tmp_path, rng, n=2)
    out = run(["score", "--pred-dir", pred_dir, "--label-dir", label_dir]).stdout
    cm = json.loads(out)["confusion_matrix"]
    lines = [line.rstrip(",") for line in out.splitlines()]
    for row in cm:
        assert "    [" + ", ".join(map(str, row)) + "]" in lines
    assert '  "classes": ' + json.dumps(list(CLASSES)) + "," in out.splitlines()


def test_usage_errors_exit_2(tmp_path):
    assert abaw("score", check=False).returncode == 2
    assert abaw("score", "--pred-dir", tmp_path, check=False).returncode == 2


def test_real_shell_pipe_smooth_into_score(tmp_path, rng):
    T = 300
    truth = np.repeat(rng.integers(0, 8, size=T // 30), 30)
    logits = rng.normal(size=(T, 8)).astype(np.float32)
    logits[np.arange(T), truth] += 2.0
    np.save(tmp_path / "logits.npy", logits)
    write_label_file(tmp_path / "labels.txt", truth)
    py = sys.executable
    cmd = (f"'{py}' -m abawtools smooth - < '{tmp_path}/logits.npy' "
           f"| '{py}' -m abawtools score - '{tmp_path}/labels.txt'")
    proc = subprocess.run(cmd, shell=True, capture_output=True, check=True)
    out = json.loads(proc.stdout)
    from scipy import ndimage

    pred = ndimage.median_filter(logits, size=(11, 1), mode="nearest").argmax(1)
    assert out["macro_f1"] == pytest.approx(reference_scores([truth], [pred])[0])
    assert proc.stderr == b""


def test_pipe_into_head_ends_quietly(tmp_path, rng):
    np.save(tmp_path / "l.npy", rng.normal(size=(200000, 8)).astype(np.float32))
    proc = subprocess.run(f"'{sys.executable}' -m abawtools smooth '{tmp_path}/l.npy' | head -2",
                          shell=True, capture_output=True)
    assert proc.stdout.decode().splitlines()[0].startswith("Neutral")
    assert b"Traceback" not in proc.stderr and b"BrokenPipe" not in proc.stderr


def test_plot_writes_png(run, tmp_path, rng):
    pytest.importorskip("matplotlib")
    label_dir, pred_dir, *_ = make_videos(tmp_path, rng, n=2)
    res = run(["score", "--pred-dir", pred_dir, "--label-dir", label_dir, "--plot", tmp_path / "r.png"])
    assert res.exit_code == 0, res.stderr
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
