"""Aff-Wild2 as it ships: the README's section run as written on a tree with the real layout,
the Makefile on it, and the rules that keep results right (T, resume, submission)."""

import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from affwild2tree import LABELS, TEMPLATE, make_tree
from conftest import abaw, invoke, make_feature_set, tool_env

from abawtools import formats, submission

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return make_tree(str(tmp_path_factory.mktemp("affwild2") / "tree"))


@pytest.fixture
def tree(pristine, tmp_path):
    shutil.copytree(pristine, tmp_path / "tree")
    return tmp_path / "tree"


def readme_block(heading):
    text = open(os.path.join(ROOT, "README.md")).read()
    section = text[text.index(heading):]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


def annotation_lengths(tree):
    T = {}
    for split in ("Train_Set", "Validation_Set"):
        for f in os.listdir(tree / LABELS / split):
            T[f[:-4]] = len(formats.read_labels(str(tree / LABELS / split / f)))
    for vid, frames in submission.template_frames(str(tree / TEMPLATE)).items():
        T[vid] = max(frames)
    return T


def test_tree_has_the_real_layout(pristine):
    tree = __import__("pathlib").Path(pristine)
    for vid, T in annotation_lengths(tree).items():
        jpgs = sorted(int(f[:5]) for f in os.listdir(tree / "cropped_aligned" / vid))
        assert 3 <= T - jpgs[-1] <= 12  # the annotation runs past the last jpg
        assert len(jpgs) < jpgs[-1]  # holes
    assert not (tree / "videos" / "pair-60_left.mp4").exists() and (tree / "videos" / "pair-60.mp4").exists()


@pytest.mark.slow
def test_readme_section_as_written(tree):
    script = readme_block("## Aff-Wild2 as it ships")
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tree, env=tool_env(), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # every feature file has the annotation's (or the template's) length
    for vid, T in annotation_lengths(tree).items():
        assert np.load(tree / "visual" / f"{vid}.npy").shape[0] == T, vid
        assert np.load(tree / "audio" / f"{vid}.npy").shape[0] == T, vid
    # the left and right faces share one audio, each aligned onto its own T
    np.testing.assert_array_equal(np.load(tree / "audio" / "pair-60_left.npy"), np.load(tree / "audio" / "pair-60_right.npy"))
    # score succeeds and equals the best validation F1 that train printed
    best = float(re.search(r"best epoch \d+, val macro F1 (\d\.\d+)", proc.stderr).group(1))
    scored = json.loads(abaw("score", "--pred-dir", tree / "pred" / "val", "--label-dir",
                             tree / LABELS / "Validation_Set").stdout)["macro_f1"]
    assert round(scored, 4) == best
    assert f"macro F1 {best:.4f}" in proc.stdout
    # the submission has exactly the template's rows, in its order
    sub = open(tree / "submission.csv").read().splitlines()
    tpl = open(tree / TEMPLATE).read().splitlines()
    assert [r.split(",")[0] for r in sub] == [r.split(",")[0] for r in tpl]
    assert "warning" not in proc.stderr.lower()
    # the authors' final-submission recipe on the same features: three members, an ensemble
    final = subprocess.run(["bash", os.path.join(ROOT, "examples", "final.sh"), "train.csv", "val.csv", "visual",
                            "audio", TEMPLATE, "final", "--", "--epochs", "1"], cwd=tree, env=tool_env(),
                           capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr[-3000:]
    from abawtools.model import load_model

    member = load_model(str(tree / "final" / "member1.safetensors"))[0].cfg
    assert (member.d_model, member.layers) == (128, 1)
    rows = open(tree / "final" / "submission.csv").read().splitlines()
    assert [r.split(",")[0] for r in rows] == [r.split(",")[0] for r in tpl]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.slow
def test_makefile_on_the_real_layout(tree):
    args = ["make", "-s", "-f", os.path.join(ROOT, "examples", "Makefile"), "-j2", f"TEMPLATE={TEMPLATE}",
            "TRAIN_FLAGS=--epochs 2 --d-model 32 --layers 1 --heads 4"]
    proc = subprocess.run([*args, "all", "submission"], cwd=tree, env=tool_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "macro F1" in proc.stdout and (tree / "work" / "score.json").exists()
    for vid, T in annotation_lengths(tree).items():
        assert np.load(tree / "work" / "visual" / f"{vid}.npy").shape[0] == T, vid
        assert np.load(tree / "work" / "audio" / f"{vid}.npy").shape[0] == T, vid
    assert len(open(tree / "work" / "submission.csv").read().splitlines()) == \
        len(open(tree / TEMPLATE).read().splitlines())
    assert not list((tree / "work").glob("*.part"))
    # up to date; a newer prediction redoes the score and nothing upstream
    assert subprocess.run([*args, "-q", "work/score.json"], cwd=tree, env=tool_env()).returncode == 0
    os.utime(tree / "work" / "pred" / "3-30-640x360.txt")
    dry = subprocess.run([*args, "-n"], cwd=tree, env=tool_env(), capture_output=True, text=True).stdout
    assert "abaw score" in dry and "abaw train" not in dry and "extract" not in dry
    # TASK=au: the AU labels and template, the same features (nothing is extracted again)
    from affwild2tree import AU_TEMPLATE

    au = ["make", "-s", "-f", os.path.join(ROOT, "examples", "Makefile"), "-j2", "TASK=au", f"TEMPLATE={AU_TEMPLATE}",
          "TRAIN_FLAGS=--epochs 2 --d-model 32 --layers 1 --heads 4"]
    dry = subprocess.run([*au, "-n", "all", "submission"], cwd=tree, env=tool_env(), capture_output=True, text=True)
    assert "abaw window" in dry.stdout and "extract" not in dry.stdout, dry.stdout + dry.stderr
    proc = subprocess.run([*au, "all", "submission"], cwd=tree, env=tool_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "mean F1" in proc.stdout and json.load(open(tree / "work" / "au" / "score.json"))["task"] == "au"
    rows = open(tree / "work" / "au" / "submission.csv").read().splitlines()
    assert [r.split(",")[0] for r in rows] == [r.split(",")[0] for r in open(tree / AU_TEMPLATE).read().splitlines()]


def test_features_of_another_length_are_an_error_everywhere(tree, tmp_path):
    np.save(tmp_path / "v.npy", np.zeros((10, 4), np.float32))
    labels = tree / LABELS / "Train_Set" / "1-30-1280x720.txt"
    T = len(formats.read_labels(str(labels)))
    (tmp_path / "vis").mkdir()
    (tmp_path / "aud").mkdir()
    np.save(tmp_path / "vis" / "1-30-1280x720.npy", np.zeros((T - 5, 4), np.float32))  # highest jpg, not T
    np.save(tmp_path / "aud" / "1-30-1280x720.npy", np.zeros((T, 3), np.float32))
    proc = abaw("window", "--visual-dir", tmp_path / "vis", "--audio-dir", tmp_path / "aud", "--label-dir",
                labels.parent, "-o", tmp_path / "m.csv", check=False)
    assert proc.returncode == 1 and f"has {T - 5} frames, the annotation {T}" in proc.stderr.decode()
    assert "--like-dir" in proc.stderr.decode() and not (tmp_path / "m.csv").exists()


def test_resume_after_changing_a_feature_file_does_not_resume(tmp_path):
    make_feature_set(tmp_path / "d", np.random.default_rng(0), n_videos=3)
    d = tmp_path / "d"
    abaw("window", "--visual-dir", d / "visual", "--audio-dir", d / "audio", "--label-dir", d / "labels",
         "-o", tmp_path / "t.csv")
    common = ["train", tmp_path / "t.csv", "-o", tmp_path / "m.safetensors", "--epochs", "3", "--d-model", "16",
              "--layers", "1", "--heads", "2", "--batch-size", "8"]
    assert invoke(*common, "--stop-after-steps", "2", check=False).exit_code == 75
    a = np.load(d / "audio" / "v1.npy")
    np.save(d / "audio" / "v1.npy", a + 1)  # new features, same shape
    result = invoke(*common, check=False)
    err = result.stderr
    assert result.exit_code == 1 and "belongs to another run" in err and "m.safetensors.ckpt" in err, err
    assert "resumed" not in err and not (tmp_path / "m.safetensors").exists()


def test_template_video_without_any_prediction_is_an_error_naming_it(tmp_path):
    rows = [formats.SUBMISSION_HEADER] + [f"{v}/{t:05d}.jpg," for v in ("a", "b_left") for t in range(1, 6)]
    (tmp_path / "tpl.txt").write_text("\n".join(rows) + "\n")
    np.save(tmp_path / "a.npy", np.eye(8, dtype=np.float32)[[1, 1, 1, 1, 1]])
    base = ["smooth", tmp_path / "a.npy", "--format", "submission", "--template", tmp_path / "tpl.txt", "-k", "1"]
    proc = abaw(*base, "-o", tmp_path / "sub.csv", check=False)
    assert proc.returncode == 1 and "b_left" in proc.stderr.decode() and "--allow-missing" in proc.stderr.decode()
    assert not (tmp_path / "sub.csv").exists()
    proc = abaw(*base, "--allow-missing", "-o", tmp_path / "sub.csv")
    assert "b_left" in proc.stderr.decode()
    assert open(tmp_path / "sub.csv").read().splitlines()[1:] == \
        [f"a/{t:05d}.jpg,1" for t in range(1, 6)] + [f"b_left/{t:05d}.jpg,0" for t in range(1, 6)]


def test_infer_runs_the_videos_of_every_split_it_is_given(pristine, tmp_path, run):
    """infer --like-dir VAL --like-template TEST: the videos of both (each checked against its T),
    nothing else of the feature folder; a wrong T in any of them is an error naming it."""
    from abawtools.model import ModelConfig, build_model, save_model

    tree = __import__("pathlib").Path(pristine)
    lengths = annotation_lengths(tree)
    rng = np.random.default_rng(0)
    for kind, dim in (("vis", 6), ("aud", 4)):
        (tmp_path / kind).mkdir()
        for vid, T in lengths.items():
            np.save(tmp_path / kind / f"{vid}.npy", rng.normal(size=(T, dim)).astype(np.float32))
    model = tmp_path / "m.safetensors"
    save_model(str(model), build_model(ModelConfig(visual_dim=6, audio_dim=4, d_model=16, layers=1, heads=2)))
    common = ["infer", "-m", model, "--visual-dir", tmp_path / "vis", "--audio-dir", tmp_path / "aud",
              "--like-dir", tree / LABELS / "Validation_Set", "--like-template", tree / TEMPLATE]
    assert run([*common, "-o", f"{tmp_path / 'out'}/"]).exit_code == 0
    wanted = sorted([f[:-4] for f in os.listdir(tree / LABELS / "Validation_Set")]
                    + list(submission.template_frames(str(tree / TEMPLATE))))
    assert sorted(f[:-4] for f in os.listdir(tmp_path / "out")) == wanted
    assert all(np.load(tmp_path / "out" / f"{v}.npy").shape == (lengths[v], 8) for v in wanted)
    vid = wanted[0]
    np.save(tmp_path / "vis" / f"{vid}.npy", np.zeros((lengths[vid] - 4, 6), np.float32))
    result = run([*common, "-o", f"{tmp_path / 'again'}/"])
    assert result.exit_code == 1 and vid in result.stderr and "the annotation" in result.stderr


# ------------------------------------------------------------------ the VA and AU tracks
def _pooled(label_dir, pred_of, task):
    """Independent restatement: the truth and predictions of every annotated frame, pooled."""
    ys, ps = [], []
    for f in sorted(os.listdir(label_dir)):
        text = open(os.path.join(label_dir, f)).read().splitlines()[1:]
        y = np.array([[float(x) for x in line.split(",")] for line in text])
        keep = (y != task).all(axis=1)  # -5 (VA) or -1 (AU) in any column: unannotated
        ys.append(y[keep])
        ps.append(pred_of(f[:-4])[keep])
    return np.concatenate(ys), np.concatenate(ps)


def _ccc(x, y):
    sxy = np.mean((x - x.mean()) * (y - y.mean()))
    return 2 * sxy / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)


def _f1(y, p):
    tp, fp, fn = np.sum((y == 1) & (p == 1)), np.sum((y == 0) & (p == 1)), np.sum((y == 1) & (p == 0))
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0


@pytest.mark.slow
def test_tracks_page_as_written(tree):
    from affwild2tree import AU_LABELS, AU_TEMPLATE, VA_LABELS, VA_TEMPLATE

    text = open(os.path.join(ROOT, "docs", "tracks.md")).read()
    script = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tree, env=tool_env(), capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "valence in [" in proc.stderr and "positive frames per AU in windows: AU1=" in proc.stderr
    # VA: score's number is the mean CCC of an independent computation over the annotated frames
    val = tree / VA_LABELS / "Validation_Set"
    va = json.loads(abaw("score", "--pred-dir", tree / "va-pred" / "val", "--label-dir", val).stdout)
    y, p = _pooled(val, lambda vid: formats.read_labels(str(tree / "va-pred" / "val" / f"{vid}.txt")), -5)
    assert va["task"] == "va" and va["frames"] == len(y)
    assert va["ccc"]["valence"] == pytest.approx(_ccc(p[:, 0], y[:, 0]), abs=1e-6)  # labels read as float32
    assert va["score"] == pytest.approx((_ccc(p[:, 0], y[:, 0]) + _ccc(p[:, 1], y[:, 1])) / 2, abs=1e-6)
    best = float(re.search(r"best epoch \d+, val mean CCC (-?\d\.\d+)", proc.stderr).group(1))
    assert round(va["score"], 4) == best  # train's validation is exactly infer | smooth | score
    print("VA mean CCC on the tree:", va["score"])
    # AU: at the tuned thresholds, score equals an independent per-AU F1 of the thresholded logits
    val = tree / AU_LABELS / "Validation_Set"
    tuned = json.load(open(tree / "au-thresholds.json"))["thresholds"]
    au = json.load(open(tree / "au-val.json"))
    t = np.array([tuned[n] for n in au["per_au"]])

    def thresholded(vid):
        return (1 / (1 + np.exp(-np.load(tree / "au-smoothed" / "val" / f"{vid}.npy"))) >= t - 1e-9).astype(int)

    y, p = _pooled(val, thresholded, -1)
    f1 = [_f1(y[:, i], p[:, i]) for i in range(12)]
    assert au["task"] == "au" and au["score"] == pytest.approx(np.mean(f1), abs=1e-9)
    assert set(tuned.values()) <= {round(0.1 * k, 1) for k in range(1, 10)}
    print("AU mean F1 on the tree (tuned):", au["score"])
    # the submissions: exactly the templates' rows, in order, with each track's header
    for sub, template in (("va-submission.csv", VA_TEMPLATE), ("au-submission.csv", AU_TEMPLATE)):
        rows = open(tree / sub).read().splitlines()
        want = open(tree / template).read().splitlines()
        assert rows[0] == want[0] and [r.split(",")[0] for r in rows[1:]] == [w.split(",")[0] for w in want[1:]]
    va_rows = np.array([[float(x) for x in r.split(",")[1:]] for r in open(tree / "va-submission.csv").read().splitlines()[1:]])
    assert va_rows.shape[1] == 2 and (np.abs(va_rows) <= 1).all()
    au_rows = np.array([[int(x) for x in r.split(",")[1:]] for r in open(tree / "au-submission.csv").read().splitlines()[1:]])
    assert au_rows.shape[1] == 12 and set(np.unique(au_rows)) <= {0, 1}
