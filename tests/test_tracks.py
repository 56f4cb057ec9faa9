"""The VA and AU tracks beside EXPR: label files read by their header, the losses and metrics
against independent restatements, unannotated frames (-5, -1) left out of training and scoring,
a planted signal learnt well above chance through the CLI, and tracks never mixed silently."""

import json
import os
import re

import numpy as np
import pytest
import torch
from conftest import invoke

from abawtools import formats, loss, scoring, tasks

AU_HEADER = ",".join(tasks.AU_NAMES)


def _write(path, header, rows):
    with open(path, "w") as fh:
        fh.write(header + "\n" + "".join(",".join(f"{v:g}" for v in np.atleast_1d(r)) + "\n" for r in rows))


def make_track_set(root, task, rng, n_videos=5, t_range=(120, 200), dv=16, da=8):
    """Per-video features that carry a VA or AU signal: visual = signal @ a fixed projection +
    noise (some frames NaN: no face), audio = noise; -5 / -1 on a few stretches."""
    proj = np.random.default_rng(7).normal(size=(task.outputs, dv)) * 2
    for d in ("visual", "audio", "labels"):
        os.makedirs(root / d, exist_ok=True)
    for i in range(n_videos):
        T = int(rng.integers(*t_range))
        if task is tasks.VA:
            y = np.clip(np.cumsum(rng.normal(0, 0.08, size=(T, 2)), axis=0), -1, 1)
            y = np.clip(y - y.mean(axis=0), -1, 1)
        else:
            seg = np.repeat(rng.random((T // 20 + 1, 12)) < 0.35, 20, axis=0)[:T]
            y = seg.astype(np.float64)
        v = y @ proj + rng.normal(0, 0.5, size=(T, dv))
        v[rng.random(T) < 0.1] = np.nan
        labels = y.copy()
        s = int(rng.integers(0, T - 10))
        labels[s : s + 10] = task.invalid  # an unannotated stretch
        np.save(root / "visual" / f"v{i}.npy", v.astype(np.float32))
        np.save(root / "audio" / f"v{i}.npy", rng.normal(size=(T, da)).astype(np.float32))
        _write(root / "labels" / f"v{i}.txt", task.header, labels)
    return root


# ------------------------------------------------------------------------- files
def test_annotations_are_read_by_their_header(tmp_path):
    _write(tmp_path / "va.txt", "valence,arousal", [[0.5, -0.25], [-5, -5], [1, -1]])
    task, labels = formats.read_annotation(str(tmp_path / "va.txt"))
    assert task is tasks.VA and labels.shape == (3, 2) and task.valid(labels).tolist() == [True, False, True]
    _write(tmp_path / "au.txt", AU_HEADER, [[1] * 12, [-1] * 12, [0] * 12])
    task, labels = formats.read_annotation(str(tmp_path / "au.txt"))
    assert task is tasks.AU and labels.shape == (3, 12) and task.valid(labels).tolist() == [True, False, True]
    for header, line, error in [("valence,arousal", "0.5", "expected 2 comma-separated"),
                                ("valence,arousal", "1.5,0", "outside [-1, 1]"),
                                (AU_HEADER, ",".join(["2"] * 12), "is not 0, 1 or -1"),
                                ("valence,arousal", "a,b", "expected numbers")]:
        (tmp_path / "bad.txt").write_text(f"{header}\n0,0\n{line}\n" if header.startswith("v") else
                                          f"{header}\n{line}\n")
        with pytest.raises(Exception, match=re.escape(error)):
            formats.read_annotation(str(tmp_path / "bad.txt"))
    # written back in the same layout
    formats.write_labels(str(tmp_path / "back.txt"), labels, tasks.AU)
    assert formats.read_annotation(str(tmp_path / "back.txt"))[1].tolist() == labels.tolist()


# --------------------------------------------------------------- losses and metrics
def test_ccc_loss_and_metric_against_an_independent_computation():
    rng = np.random.default_rng(0)
    y = rng.uniform(-1, 1, size=(200, 2))
    p = 0.6 * y + rng.normal(0, 0.3, size=y.shape)

    def ccc(a, b):  # Lin (1989), from the correlation coefficient
        r = np.corrcoef(a, b)[0, 1]
        return 2 * r * a.std() * b.std() / (a.var() + b.var() + (a.mean() - b.mean()) ** 2)

    want = [ccc(p[:, i], y[:, i]) for i in range(2)]
    assert scoring.ccc(p[:, 0], y[:, 0]) == pytest.approx(want[0], abs=1e-12)
    target = y.copy()
    target[:30] = -5  # unannotated: left out of the loss
    got = loss.ccc_loss(torch.tensor(p), torch.tensor(target)).item()
    sub = [ccc(p[30:, i], y[30:, i]) for i in range(2)]
    assert got == pytest.approx(1 - np.mean(sub), abs=1e-5)
    none = loss.ccc_loss(torch.tensor(p, requires_grad=True), torch.full((200, 2), -5.0))
    assert none.item() == 0 and none.requires_grad


def test_au_loss_leaves_invalid_frames_out_and_weights_positives():
    import torch.nn.functional as F

    rng = np.random.default_rng(1)
    logits = torch.tensor(rng.normal(size=(50, 12)), dtype=torch.float32)
    target = torch.tensor((rng.random((50, 12)) < 0.3).astype(np.int64))
    target[:5] = -1
    w = torch.tensor(loss.au_pos_weights(target[5:].sum(0).numpy(), 45), dtype=torch.float32)
    want = F.binary_cross_entropy_with_logits(logits[5:], target[5:].float(), pos_weight=w)
    assert loss.au_loss(logits, target, w).item() == pytest.approx(want.item(), rel=1e-5)
    assert (loss.au_pos_weights([0, 5, 40], 45) == [1.0, 8.0, 1.0]).all()  # none positive: 1; capped at 10


def test_au_score_is_the_mean_of_per_au_f1():
    rng = np.random.default_rng(2)
    y = (rng.random((300, 12)) < 0.3).astype(np.int64)
    p = np.where(rng.random(y.shape) < 0.8, y, 1 - y)
    y[:20] = -1
    result = scoring.score_task(tasks.AU, [("a", p[:150], y[:150]), ("b", p[150:], y[150:])])
    keep = (y >= 0).all(1)
    f1 = []
    for i in range(12):
        tp = np.sum((y[keep, i] == 1) & (p[keep, i] == 1))
        f1.append(2 * tp / (np.sum(y[keep, i] == 1) + np.sum(p[keep, i] == 1)))
    assert result["score"] == pytest.approx(np.mean(f1), abs=1e-12) and result["frames"] == int(keep.sum())


# ------------------------------------------------------------------------ the CLI
@pytest.mark.parametrize("name", ["va", "au"])
def test_a_track_end_to_end_learns_its_planted_signal(tmp_path, name):
    task = tasks.TASKS[name]
    rng = np.random.default_rng(3)
    tr = make_track_set(tmp_path / "train", task, rng)
    va = make_track_set(tmp_path / "val", task, rng, n_videos=3)
    for split, d in (("train", tr), ("val", va)):
        result = invoke("window", "--visual-dir", d / "visual", "--audio-dir", d / "audio", "--label-dir",
                        d / "labels", "-W", "32", "-S", "8", "--max-invalid", "1" if split == "val" else "0.25",
                        "-o", tmp_path / f"{split}.csv")
        assert ("valence in [" if name == "va" else "positive frames per AU in windows: AU1=") in result.stderr
    result = invoke("train", tmp_path / "train.csv", "--val", tmp_path / "val.csv", "-o", tmp_path / "m.safetensors",
                    "--epochs", "12" if name == "va" else "25", "--lr", "3e-3", "--d-model", "32", "--layers", "1", "--heads", "4",
                    "--batch-size", "16", "--warmup", "0")
    invoke("infer", "-m", tmp_path / "m.safetensors", "--visual-dir", va / "visual", "--audio-dir", va / "audio",
           "--like-dir", va / "labels", "-o", tmp_path / "out/")
    out = np.load(tmp_path / "out" / "v0.npy")
    assert out.shape[1] == task.outputs and np.isfinite(out).all()
    if name == "va":
        assert np.abs(out).max() <= 1
    invoke("smooth", *sorted((tmp_path / "out").glob("*.npy")), "-o", tmp_path / "pred/")
    head = (tmp_path / "pred" / "v0.txt").read_text().splitlines()[0]
    assert head == task.header
    scored = json.loads(invoke("score", "--pred-dir", tmp_path / "pred", "--label-dir", va / "labels",
                               "--plot", tmp_path / "report.png").stdout)
    assert scored["task"] == name
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # VA curves / AU bars
    table = invoke("score", "--pred-dir", tmp_path / "pred", "--label-dir", va / "labels", "--format", "table").stdout
    assert ("mean CCC" if name == "va" else "mean F1") in table
    best = json.loads(json.dumps(result.stderr.split("val ")[-1]))
    print(name, "score", scored["score"], "| train said:", best.strip())
    if name == "va":
        assert scored["score"] > 0.5  # mean CCC; chance is 0
    else:
        # chance: predicting every AU present everywhere gives F1 = 2q / (1 + q) for a positive rate q
        q = np.mean([np.mean(formats.read_labels(str(va / "labels" / f))[:, i][
            (formats.read_labels(str(va / "labels" / f)) >= 0).all(1)]) for f in os.listdir(va / "labels")
            for i in range(12)])
        assert scored["score"] > 2 * q / (1 + q) + 0.15


def test_tracks_never_mix_silently(tmp_path, run):
    rng = np.random.default_rng(4)
    va = make_track_set(tmp_path / "va", tasks.VA, rng, n_videos=2)
    au = make_track_set(tmp_path / "au", tasks.AU, rng, n_videos=2)
    os.rename(au / "labels" / "v1.txt", va / "labels" / "v1.txt")  # a VA folder with an AU file in it
    result = run(["window", "--visual-dir", va / "visual", "--audio-dir", va / "audio", "--label-dir", va / "labels",
                  "-o", tmp_path / "w.csv"])
    assert result.exit_code == 1 and "mixes tasks: VA" in result.stderr and "AU (" in result.stderr
    # a VA prediction scored against AU labels
    np.save(tmp_path / "p.npy", np.zeros((len(formats.read_labels(str(au / "labels" / "v0.txt"))), 2), np.float32))
    result = run(["score", tmp_path / "p.npy", au / "labels" / "v0.txt"])
    assert result.exit_code == 1 and "Valence-Arousal (VA) predictions" in result.stderr and "(AU) labels" in result.stderr
    # a VA template for AU outputs
    (tmp_path / "t.csv").write_text("image_location,valence,arousal\nv0/00001.jpg,,\n")
    np.save(tmp_path / "v0.npy", np.zeros((3, 12), np.float32))
    result = run(["smooth", tmp_path / "v0.npy", "--format", "submission", "--template", tmp_path / "t.csv",
                  "-o", tmp_path / "s.csv"])
    assert result.exit_code == 1 and "VA template" in result.stderr and not (tmp_path / "s.csv").exists()


def test_au_thresholds_tuned_then_applied_by_smooth(tmp_path):
    rng = np.random.default_rng(5)
    labels = (rng.random((200, 12)) < 0.3).astype(np.int64)
    logits = np.where(labels == 1, 0.8, -0.2) + rng.normal(0, 0.5, size=labels.shape) - 0.6  # biased low
    (tmp_path / "p").mkdir()
    (tmp_path / "l").mkdir()
    np.save(tmp_path / "p" / "a.npy", logits.astype(np.float32))
    _write(tmp_path / "l" / "a.txt", AU_HEADER, labels)
    at_half = json.loads(invoke("score", "--pred-dir", tmp_path / "p", "--label-dir", tmp_path / "l").stdout)
    tuned = json.loads(invoke("score", "--pred-dir", tmp_path / "p", "--label-dir", tmp_path / "l",
                              "--tune-thresholds", tmp_path / "th.json").stdout)
    record = json.load(open(tmp_path / "th.json"))
    assert tuned["score"] == pytest.approx(record["mean_f1_tuned"]) and tuned["score"] > at_half["score"]
    assert record["mean_f1_at_0.5"] == pytest.approx(at_half["score"])
    invoke("smooth", tmp_path / "p" / "a.npy", "-k", "1", "--thresholds", tmp_path / "th.json", "-o", tmp_path / "a.txt")
    applied = formats.read_labels(str(tmp_path / "a.txt"))
    t = np.array([record["thresholds"][n] for n in tasks.AU_NAMES])
    np.testing.assert_array_equal(applied, (1 / (1 + np.exp(-logits.astype(np.float32))) >= t - 1e-6).astype(int))


@pytest.mark.parametrize("name", ["va", "au"])
def test_finetune_stage_two_on_va_and_au_labels(tmp_path, name):
    """finetune --affwild2 with VA / AU label folders: a regression head (1 - CCC) or 12 sigmoid
    outputs (BCE), validated by the track's metric; extract-visual --logits then writes (T, 2) /
    (T, 12), and `score` on them gives exactly the best validation score finetune stored."""
    import imagedata
    from affwild2tree import va_au_labels

    rng = np.random.default_rng(6)
    cropped, expr = imagedata.affwild2(str(tmp_path / "aw"), ["a", "b", "c"], rng, (40, 60))
    _, expr_val = imagedata.affwild2(str(tmp_path / "aw"), ["d", "e"], rng, (40, 60), "Validation_Set")
    task = tasks.TASKS[name]
    dirs = {}
    for split, src in (("train", expr), ("val", expr_val)):
        dirs[split] = tmp_path / name / split
        dirs[split].mkdir(parents=True)
        for f in os.listdir(src):
            labels = formats.read_labels(os.path.join(src, f))
            va, au = va_au_labels(np.maximum(labels, 0), labels < 0, np.random.default_rng(len(labels)))
            formats.write_labels(str(dirs[split] / f), va if name == "va" else au, task)
    beit = imagedata.tiny_backbone(str(tmp_path / "beit"), "beit")
    result = invoke("finetune", "--model", beit, "--affwild2", cropped, dirs["train"], "--val", cropped, dirs["val"],
                    "-o", tmp_path / "ft", "--epochs", "3", "--lr", "2e-3", "--batch-size", "16", "--accumulate", "1",
                    "--workers", "0", "--head-lr-mult", "1")
    assert ("val mean CCC" if name == "va" else "val mean AU F1") in result.stderr
    record = json.load(open(tmp_path / "ft" / "finetune.json"))
    assert record["classes"] == list(task.columns) and record["training"]["task"] == name
    best = record["training"]["best"]["val_score"]
    vids = sorted(f[:-4] for f in os.listdir(dirs["val"]))
    invoke("extract-visual", *[os.path.join(cropped, v) for v in vids], "--no-detect", "--model", tmp_path / "ft",
           "--logits", "--like-dir", dirs["val"], "-o", f"{tmp_path / 'out'}/")
    out = np.load(tmp_path / "out" / f"{vids[0]}.npy")
    assert out.shape == (len(formats.read_labels(str(dirs["val"] / f"{vids[0]}.txt"))), task.outputs)
    assert np.isfinite(out).all() and (name != "va" or np.abs(out).max() <= 1)
    scored = json.loads(invoke("score", "--pred-dir", tmp_path / "out", "--label-dir", dirs["val"]).stdout)
    assert scored["task"] == name and scored["score"] == pytest.approx(best, abs=1e-6)


def test_an_ensemble_of_two_tracks_is_refused(tmp_path, run):
    rng = np.random.default_rng(8)
    paths = {}
    for name in ("va", "au"):
        d = make_track_set(tmp_path / name, tasks.TASKS[name], rng, n_videos=2, t_range=(70, 90))
        invoke("window", "--visual-dir", d / "visual", "--audio-dir", d / "audio", "--label-dir", d / "labels",
               "-W", "32", "-o", tmp_path / f"{name}.csv")
        paths[name] = tmp_path / f"{name}.safetensors"
        invoke("train", tmp_path / f"{name}.csv", "-o", paths[name], "--epochs", "1", "--d-model", "16", "--layers",
               "1", "--heads", "2")
    v = tmp_path / "va"
    result = run(["infer", "-m", paths["va"], "-m", paths["au"], "--visual", v / "visual" / "v0.npy", "--audio",
                  v / "audio" / "v0.npy", "-o", tmp_path / "o.npy"])
    assert result.exit_code == 1 and "an ensemble averages models of one track" in result.stderr
    assert not (tmp_path / "o.npy").exists()
