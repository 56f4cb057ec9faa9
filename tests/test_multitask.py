"""The multi-task track (ABAW's MTL challenge) through the same commands: s-Aff-Wild2's files as
they ship, the masked losses, P_MTL against an independent computation, the submission's rows,
and the documented blocks run as written on fake trees of both data regimes."""

import csv
import json
import os
import re
import subprocess

import numpy as np
import pytest
import saffwild2tree
import torch
from conftest import invoke, one_line_error, tool_env

from abawtools import annotations, submission, tasks

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
MTL = tasks.MTL




# ---------------------------------------------------------------------------- the files
def _annotation(path, rows):
    path.write_text(saffwild2tree.HEADER + "\n" + "".join(r + "\n" for r in rows))


AUS0 = ",".join(["0"] * 12)


def test_an_identical_duplicate_is_read_once_and_said(tmp_path):
    _annotation(tmp_path / "a.txt", [f"v/00001.jpg,0.5,0.25,3,{AUS0}", f"v/00002.jpg,-5,-5,-1,{AUS0}",
                                     f"v/00002.jpg,-5,-5,-1,{AUS0}", f"v/00004.jpg,0.1,0.2,-1,{','.join(['-1'] * 12)}"])
    videos, notes = annotations.read_file(str(tmp_path / "a.txt"))
    labels = videos["v"]
    assert labels.shape == (4, 15) and notes and "line 4" in notes[0]
    assert labels[0, :3].tolist() == [0.5, 0.25, 3.0]
    assert labels[2].tolist() == MTL.padding().tolist()  # frame 3 not listed: unannotated in every task
    heads = {h.task.name: MTL.head_valid(labels, h).tolist() for h in MTL.heads}
    assert heads == {"va": [True, False, False, True], "expr": [True, False, False, False],
                     "au": [True, True, False, False]}


@pytest.mark.parametrize("rows, words", [
    ([f"v/00001.jpg,0.5,0.25,3,{AUS0}", f"v/00001.jpg,0.5,0.25,4,{AUS0}"], ["a.txt:3:", "line 2"]),
    ([f"v/00001.jpg,0.5,0.25,3,{AUS0},1"], ["a.txt:2:", "16 comma-separated"]),
    ([f"v/00001.jpg,0.5,0.25,9,{AUS0}"], ["line 2", "expression 9"]),
    ([f"v/00001.jpg,1.5,0.25,3,{AUS0}"], ["line 2", "1.5 outside [-1, 1]"]),
])
def test_a_bad_annotation_line_is_one_error_naming_it(tmp_path, run, rows, words):
    _annotation(tmp_path / "a.txt", rows)
    (tmp_path / "visual").mkdir()
    one_line_error(run(["window", "--visual-dir", tmp_path / "visual", "--annotations", tmp_path / "a.txt", "-o",
                tmp_path / "m.csv"]), *words)
    assert not (tmp_path / "m.csv").exists()


def test_the_test_list_with_or_without_its_header_is_a_multi_task_template(tmp_path):
    for name, head in (("a.txt", "image\n"), ("b.txt", ""), ("c.txt", saffwild2tree.HEADER + "\n")):
        (tmp_path / name).write_text(head + "v/00001.jpg,\nv/00003.jpg,\nw/00002.jpg,\n")
        assert submission.submission_task(str(tmp_path / name)) is MTL
        assert submission.template_frames(str(tmp_path / name)) == {"v": [1, 3], "w": [2]}


# ----------------------------------------------------------------------------- the loss
def test_masked_losses_against_each_head_on_its_own_annotated_frames():
    from abawtools import loss

    g = torch.Generator().manual_seed(0)
    out = torch.randn(3, 20, 22, generator=g, requires_grad=True)
    labels = torch.empty(3, 20, 15)
    labels[..., :2] = torch.rand(3, 20, 2, generator=g) * 2 - 1
    labels[..., 2] = torch.randint(0, 8, (3, 20), generator=g).float()
    labels[..., 3:] = torch.randint(0, 2, (3, 20, 12), generator=g).float()
    labels[0, :7, :2] = -5  # each task unannotated on frames of its own
    labels[1, 3:15, 2] = -1
    labels[2, 10:, 3:] = -1
    act = MTL.activate(out)
    total, count = MTL.loss(act, labels)
    # independently: each head's loss over its annotated frames only
    va_ok = (labels[..., :2] != -5).all(-1)
    expr_ok = labels[..., 2] != -1
    au_ok = (labels[..., 3:] != -1).all(-1)
    va = loss.ccc_loss(torch.tanh(out[..., :2])[va_ok], labels[..., :2][va_ok])
    logp = torch.log_softmax(out[..., 2:10][expr_ok], -1)
    target = labels[..., 2][expr_ok].long()
    pt = logp.gather(1, target[:, None])[:, 0]
    expr = (-((1 - pt.exp()) ** 2) * pt).mean()
    au = torch.nn.functional.binary_cross_entropy_with_logits(out[..., 10:][au_ok], labels[..., 3:][au_ok])
    assert count == 1 and float(total.detach()) == pytest.approx(float((va + expr + au).detach()), rel=1e-5)
    # a frame without an expression label adds nothing to the expression loss: no gradient there
    total.backward()
    assert out.grad[1, 3:15, 2:10].abs().max() == 0 and out.grad[0, :7, :2].abs().max() == 0
    assert out.grad[1, 0, 2:10].abs().max() > 0


def test_a_batch_without_any_annotation_gives_zero_not_nan():
    out = torch.randn(2, 8, 22, requires_grad=True)
    labels = torch.from_numpy(np.tile(MTL.padding(), (2, 8, 1)))
    total, count = MTL.loss(MTL.activate(out), labels)
    assert count == 0 and float(total.detach()) == 0.0 and torch.isfinite(total.detach())


# ---------------------------------------------------------------------------- the metric
def _ccc(x, y):
    x, y = np.asarray(x, float), np.asarray(y, float)
    return 2 * np.cov(x, y, bias=True)[0, 1] / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)


def _f1(y, p):
    tp, fp, fn = np.sum(y & p), np.sum(~y & p), np.sum(y & ~p)
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0


def independent_pmtl(submission_csv, annotation_file):
    """P_MTL from the two files with the csv module alone (the organisers' definition)."""
    def rows(path):
        with open(path, newline="") as fh:
            return {r[0]: r[1:] for r in list(csv.reader(fh))[1:] if r}

    sub, truth = rows(submission_csv), rows(annotation_file)
    va_y, va_p, ex_y, ex_p, au_y, au_p = [], [], [], [], [], []
    for image, t in truth.items():
        p = sub[image]
        t, p = [float(x) for x in t], [float(x) for x in p]
        if t[0] != -5 and t[1] != -5:
            va_y.append(t[:2])
            va_p.append(p[:2])
        if t[2] != -1:
            ex_y.append(int(t[2]))
            ex_p.append(int(p[2]))
        if -1 not in t[3:]:
            au_y.append(t[3:])
            au_p.append(p[3:])
    va_y, va_p = np.array(va_y), np.array(va_p)
    va = (_ccc(va_p[:, 0], va_y[:, 0]) + _ccc(va_p[:, 1], va_y[:, 1])) / 2
    ex_y, ex_p = np.array(ex_y), np.array(ex_p)
    present = [c for c in range(8) if (ex_y == c).any() or (ex_p == c).any()]
    expr = np.mean([_f1(ex_y == c, ex_p == c) for c in present])
    au_y, au_p = np.array(au_y) == 1, np.array(au_p) == 1
    au = np.mean([_f1(au_y[:, i], au_p[:, i]) for i in range(12)])
    return va + expr + au, (va, expr, au)


def _fake_outputs(tmp_path, seed, carry):
    """A fake s-Aff-Wild2 tree and (T, 22) outputs per video: noise, tanh on VA, and `carry(o,
    labels)` planting what a test needs; returns (tree root, outputs folder)."""
    root, truth = saffwild2tree.make_tree(str(tmp_path / "s"), frames=(60, 90))
    rng = np.random.default_rng(seed)
    out = tmp_path / "out"
    out.mkdir()
    for vid, (labels, selected) in truth.items():
        T = int(np.flatnonzero(selected)[-1]) + 1
        o = rng.normal(size=(T, 22)).astype(np.float32)
        o[:, :2] = np.tanh(o[:, :2])
        carry(o, labels[:T], rng)
        np.save(out / f"{vid}.npy", o)
    return root, out


def _va_near_the_truth(o, labels, rng):
    o[:, :2] = np.tanh(np.where(labels[:, :2] == -5, 0, labels[:, :2]) + rng.normal(0, 0.5, (len(o), 2)))


def _au_logits_that_carry_the_labels(o, labels, rng):
    o[:, 10:] += np.where(labels[:, 3:] == 1, 1.5, 0) - 0.8  # off-centre: 0.5 is not the best threshold


def test_pmtl_from_score_equals_an_independent_computation(tmp_path):
    root, out = _fake_outputs(tmp_path, 3, _va_near_the_truth)
    val = os.path.join(root, saffwild2tree.VAL)
    invoke("smooth", *sorted(out.glob("*.npy")), "--format", "submission", "--template", val, "-o", tmp_path / "sub.csv")
    result = json.loads(invoke("score", "--submission", tmp_path / "sub.csv", "--annotations", val).stdout)
    expected, (va, expr, au) = independent_pmtl(tmp_path / "sub.csv", val)
    assert result["task"] == "mtl" and result["score"] == pytest.approx(expected, abs=1e-6)
    assert result["parts"] == pytest.approx({"va": va, "expr": expr, "au": au}, abs=1e-6)
    assert result["va"]["ccc"] and result["expr"]["per_class"] and result["au"]["per_au"]
    # the submission: the header, then exactly the annotation file's rows, in its order
    sub_rows = open(tmp_path / "sub.csv").read().splitlines()
    assert sub_rows[0] == "image,valence,arousal,expression,aus"
    assert [r.split(",")[0] for r in sub_rows[1:]] == [r.split(",")[0] for r in open(val).read().splitlines()[1:]]
    assert all(len(r.split(",")) == 16 for r in sub_rows[1:])


def test_multi_task_outputs_scored_on_one_tracks_labels_score_that_head(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "va").mkdir()
    (tmp_path / "out").mkdir()
    y = rng.uniform(-0.9, 0.9, (80, 2))
    (tmp_path / "va" / "v.txt").write_text("valence,arousal\n" + "".join(f"{a:.4f},{b:.4f}\n" for a, b in y))
    o = rng.normal(size=(80, 22)).astype(np.float32)
    o[:, :2] = np.clip(y + rng.normal(0, 0.3, y.shape), -1, 1)
    np.save(tmp_path / "out" / "v.npy", o)
    np.save(tmp_path / "va.npy", o[:, :2])
    mtl = json.loads(invoke("score", "--pred-dir", tmp_path / "out", "--label-dir", tmp_path / "va").stdout)
    alone = json.loads(invoke("score", tmp_path / "va.npy", tmp_path / "va" / "v.txt").stdout)
    assert mtl["task"] == "va" and mtl["score"] == pytest.approx(alone["score"])


def test_single_track_windows_still_need_audio(tmp_path, run):
    (tmp_path / "v").mkdir()
    (tmp_path / "l").mkdir()
    result = run(["window", "--visual-dir", tmp_path / "v", "--label-dir", tmp_path / "l", "-o", tmp_path / "m.csv"])
    assert result.exit_code == 2 and "--audio-dir" in result.stderr


# ---------------------------------------------------------------------- end to end
def _blocks():
    text = open(os.path.join(ROOT, "docs", "multitask.md")).read()
    return re.findall(r"```bash\n(.*?)```", text, re.S)


def _run(script, cwd):
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=tool_env(), capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_the_s_affwild2_block_as_written(tmp_path):
    root, _ = saffwild2tree.make_tree(str(tmp_path / "s"))
    proc = _run(_blocks()[0], root)
    assert not os.path.exists(os.path.join(root, "audio"))  # no audio anywhere
    assert "1 line(s) repeat an earlier line exactly" in proc.stderr
    # the test submission: exactly the test list's rows, in its order
    listed = [line.split(",")[0] for line in open(os.path.join(root, saffwild2tree.TEST)).read().splitlines()[1:]]
    sub = open(os.path.join(root, "submission.csv")).read().splitlines()
    assert sub[0] == "image,valence,arousal,expression,aus" and [r.split(",")[0] for r in sub[1:]] == listed
    # validation: score's P_MTL is train's best epoch and an independent computation's
    best = float(re.search(r"best epoch \d+, val P_MTL (-?\d\.\d+)", proc.stderr).group(1))
    val = os.path.join(root, saffwild2tree.VAL)
    result = json.loads(invoke("score", "--submission", os.path.join(root, "val-submission.csv"),
                               "--annotations", val).stdout)
    assert round(result["score"], 4) == best
    assert result["score"] == pytest.approx(independent_pmtl(os.path.join(root, "val-submission.csv"), val)[0],
                                            abs=1e-6)
    # the planted signal is learnt: far above what chance gives (VA 0, EXPR ~0.15, AU ~0.5)
    print("s-Aff-Wild2 fake tree: P_MTL", result["parts"])
    assert result["score"] > 1.4 and min(result["parts"].values()) > 0.3


@pytest.mark.slow
def test_the_full_affwild2_block_as_written(tmp_path):
    from affwild2tree import VA_LABELS, make_tree

    root = make_tree(str(tmp_path / "tree"))
    proc = _run(_blocks()[1], root)
    assert "val P_MTL" in proc.stderr and "(VA " in proc.stderr
    table = proc.stdout
    assert "mean CCC" in table
    pred = os.path.join(root, "mtl-pred", "val")
    assert open(os.path.join(pred, sorted(os.listdir(pred))[0])).readline().strip() == MTL.header
    result = json.loads(invoke("score", "--pred-dir", pred, "--label-dir",
                               os.path.join(root, VA_LABELS, "Validation_Set")).stdout)
    assert result["task"] == "va" and result["score"] > 0.2


def test_au_thresholds_are_tuned_on_the_au_head_of_multi_task_outputs(tmp_path):
    root, out = _fake_outputs(tmp_path, 5, _au_logits_that_carry_the_labels)
    val = os.path.join(root, saffwild2tree.VAL)
    result = json.loads(invoke("score", "--pred-dir", out, "--annotations", val, "--tune-thresholds",
                               tmp_path / "th.json", "--allow-missing").stdout)
    chosen = json.load(open(tmp_path / "th.json"))["thresholds"]
    # independently: each AU's F1 of the AU logits at its tuned threshold, annotated frames pooled
    videos, _ = annotations.read_file(val)
    logits = np.concatenate([np.load(out / f"{v}.npy")[:, 10:] for v in sorted(videos)])
    labels = np.concatenate([videos[v][: len(np.load(out / f"{v}.npy")), 3:] for v in sorted(videos)])
    ok = (labels >= 0).all(axis=1)
    f1 = [_f1(labels[ok, i] == 1, 1 / (1 + np.exp(-logits[ok, i])) >= chosen[n]) for i, n in enumerate(tasks.AU_NAMES)]
    assert result["parts"]["au"] == pytest.approx(np.mean(f1), abs=1e-6)
    # smooth applies them to the AU head of the same outputs
    invoke("smooth", *sorted(out.glob("*.npy")), "--thresholds", tmp_path / "th.json", "--format", "submission",
           "--template", os.path.join(root, saffwild2tree.TEST), "-o", tmp_path / "sub.csv")
    assert open(tmp_path / "sub.csv").readline().strip() == "image,valence,arousal,expression,aus"


@pytest.mark.slow
def test_the_makefile_runs_the_multi_task_challenge(tmp_path):
    root, _ = saffwild2tree.make_tree(str(tmp_path / "s"))
    args = ["make", "-s", "-f", os.path.join(ROOT, "examples", "Makefile"), "-j2", "TASK=mtl",
            "TRAIN_FLAGS=--epochs 4 --lr 1e-3", "all", "submission"]
    proc = subprocess.run(args, cwd=root, env=tool_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("P_MTL ")
    listed = open(os.path.join(root, saffwild2tree.TEST)).read().splitlines()[1:]
    sub = open(os.path.join(root, "work", "mtl", "submission.csv")).read().splitlines()
    assert [r.split(",")[0] for r in sub[1:]] == [r.split(",")[0] for r in listed]
    again = subprocess.run(args, cwd=root, env=tool_env(), capture_output=True, text=True, timeout=600)
    assert "extract-visual" not in again.stderr and "epoch" not in again.stderr  # nothing redone


def test_finetune_with_three_heads_on_s_affwild2_and_its_logits(tmp_path):
    """finetune --annotations trains the backbone with the three heads and masked losses; its
    folder's `extract-visual --logits` writes (T, 22), and score on them is finetune's stored best."""
    import imagedata

    root, truth = saffwild2tree.make_tree(str(tmp_path / "s"), train=("a", "b"), val=("c",), test=("d",),
                                          frames=(40, 60))
    beit = imagedata.tiny_backbone(str(tmp_path / "beit"))
    crops = os.path.join(root, "cropped_aligned")
    val = os.path.join(root, saffwild2tree.VAL)
    result = invoke("finetune", "--model", beit, "--annotations", crops, os.path.join(root, saffwild2tree.TRAIN),
                    "--val-annotations", crops, val, "-o", tmp_path / "ft", "--epochs", "2", "--workers", "0",
                    "--batch-size", "16", "--accumulate", "1", "--lr", "1e-3")
    assert "val P_MTL" in result.stderr and "(VA " in result.stderr
    record = json.load(open(tmp_path / "ft" / "finetune.json"))
    assert record["training"]["task"] == "mtl" and len(record["classes"]) == 22
    invoke("extract-visual", os.path.join(crops, "c"), "--no-detect", "--logits", "--model", tmp_path / "ft",
           "-o", tmp_path / "logits" / "c.npy")
    logits = np.load(tmp_path / "logits" / "c.npy")
    assert logits.shape[1] == 22 and np.isfinite(logits).all() and np.abs(logits[:, :2]).max() <= 1
    scored = json.loads(invoke("score", "--pred-dir", tmp_path / "logits", "--annotations", val).stdout)
    best = record["training"]["best"]
    assert scored["task"] == "mtl" and scored["score"] == pytest.approx(best["val_score"], abs=1e-4)


def test_the_features_of_two_backbones_side_by_side(tmp_path, rng):
    """--visual-dir repeated: window, train and infer read the folders' NPYs joined per frame."""
    from conftest import make_feature_set
    from safetensors import safe_open

    vis, aud, lab = make_feature_set(tmp_path / "d", rng, n_videos=3, t_range=(60, 90), dv=8)
    second = tmp_path / "second"
    second.mkdir()
    for f in os.listdir(vis):
        v = np.load(os.path.join(vis, f))
        np.save(second / f, (v[:, :5] * 2).astype(np.float16))  # another backbone: 5 dims, faceless alike
    invoke("window", "--visual-dir", vis, "--visual-dir", second, "--audio-dir", aud, "--label-dir", lab,
           "-o", tmp_path / "m.csv")
    invoke("train", tmp_path / "m.csv", "-o", tmp_path / "m.safetensors", "--epochs", "1", "--d-model", "16",
           "--layers", "1", "--heads", "2")
    with safe_open(str(tmp_path / "m.safetensors"), framework="pt") as fh:
        assert json.loads(fh.metadata()["abaw.config"])["visual_dim"] == 13
    invoke("infer", "-m", tmp_path / "m.safetensors", "--visual-dir", vis, "--visual-dir", second, "--audio-dir", aud,
           "-o", tmp_path / "out")
    assert sorted(os.listdir(tmp_path / "out")) == sorted(os.listdir(vis))
    assert np.isfinite(np.load(tmp_path / "out" / "v0.npy")).all()
    os.unlink(second / "v1.npy")  # a video without the second backbone's features: named, not guessed
    one_line_error(invoke("infer", "-m", tmp_path / "m.safetensors", "--visual-dir", vis, "--visual-dir", second,
                  "--audio-dir", aud, "-o", tmp_path / "out2", check=False), "v1")
