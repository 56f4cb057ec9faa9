"""Nothing of the user's is ever replaced: folder outputs (`finetune -o`, `extract-visual --crops`)
refuse an input, a folder holding one, and a folder abawtools did not write; file outputs refuse
to be an input. Each case was exit 0 with the data gone before the fix."""

import os

import imagedata
import numpy as np
import pytest
from conftest import invoke, make_feature_set

from abawtools import demo, formats
from abawtools.errors import AbawError

FAST = ["--batch-size", "8", "--accumulate", "1", "--workers", "0", "--epochs", "1"]


def _listing(folder):
    return sorted((os.path.relpath(os.path.join(d, f), folder), os.path.getsize(os.path.join(d, f)))
                  for d, _, files in os.walk(folder) for f in files)


def _refused(result, *words):
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1, result.stderr
    assert "Traceback" not in result.stderr and "error:" in lines[-1], lines
    for w in words:
        assert w in lines[-1], lines[-1]
    return lines[-1]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("safety")
    rng = np.random.default_rng(0)
    return {"images": imagedata.image_folder(str(root / "imgs"), 3, rng),
            "beit": imagedata.tiny_backbone(str(root / "beit"), "beit"), "root": root}


def test_finetune_into_its_own_images_is_refused_and_nothing_is_lost(small, run):
    before = _listing(small["images"])
    result = run(["finetune", "--model", small["beit"], "--images", small["images"], "-o", small["images"], *FAST])
    _refused(result, small["images"], "is the input")
    assert _listing(small["images"]) == before


def test_finetune_into_a_folder_holding_an_input_is_refused(small, run):
    parent = os.path.dirname(small["images"])
    result = run(["finetune", "--model", small["beit"], "--images", small["images"], "-o", parent, *FAST])
    _refused(result, "holds the input")
    assert os.path.isdir(small["images"]) and os.path.isdir(small["beit"])


def test_finetune_over_its_base_model_is_refused(small, run):
    before = _listing(small["beit"])
    result = run(["finetune", "--model", small["beit"], "--images", small["images"], "-o", small["beit"], *FAST])
    _refused(result, "is the input")
    assert _listing(small["beit"]) == before


def test_finetune_replaces_its_own_output_but_not_a_users_folder(small, tmp_path, run):
    out = tmp_path / "model"
    invoke("finetune", "--model", small["beit"], "--images", small["images"], "-o", out, *FAST)
    assert (out / formats.OUTPUT_MARK).read_text().split()[0] == "finetune"
    invoke("finetune", "--model", small["beit"], "--images", small["images"], "-o", out, *FAST)
    # an output of 0.2.0 (no mark, but finetune.json and the head) is still replaced
    os.unlink(out / formats.OUTPUT_MARK)
    invoke("finetune", "--model", small["beit"], "--images", small["images"], "-o", out, *FAST)
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "chapter1.tex").write_text("months of work")
    result = run(["finetune", "--model", small["beit"], "--images", small["images"], "-o", mine, *FAST])
    _refused(result, "not an earlier output of abaw finetune")
    assert (mine / "chapter1.tex").read_text() == "months of work"


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """A cropped_aligned-style folder `one/` of real face frames."""
    import cv2

    root = tmp_path_factory.mktemp("crops")
    face = demo.load_face(size=96)
    for t in range(4):
        canvas = np.full((160, 160, 3), 80, np.uint8)
        canvas[30:126, 30:126] = face
        os.makedirs(root / "one", exist_ok=True)
        cv2.imwrite(str(root / "one" / f"{t + 1:05d}.jpg"), canvas)
    return root


def test_crops_into_the_source_frames_are_refused(frames, run, monkeypatch):
    before = _listing(frames / "one")
    monkeypatch.chdir(frames)
    result = run(["extract-visual", "one", "--crops", ".", "-o", "one.npy"])
    _refused(result, "the input", "--crops")
    assert _listing(frames / "one") == before
    assert not os.path.exists(frames / "one.npy")  # refused before any work


def test_crops_replace_their_own_folder_but_not_a_users(frames, tmp_path, run):
    crops = tmp_path / "crops"
    invoke("extract-visual", frames / "one", "--crops", crops, "-o", tmp_path / "one.npy")  # -o names the crops
    assert (crops / "one" / formats.OUTPUT_MARK).exists() and len(os.listdir(crops / "one")) == 5
    invoke("extract-visual", frames / "one", "--crops", crops, "-o", tmp_path / "one.npy")  # a rerun replaces it
    (crops / "one" / formats.OUTPUT_MARK).unlink()  # now it looks like anybody's frames
    result = run(["extract-visual", frames / "one", "--crops", crops, "-o", tmp_path / "b" / "one.npy"])
    _refused(result, "not an earlier output of abaw extract-visual")
    assert not os.path.exists(tmp_path / "b" / "one.npy")


def test_an_output_file_that_is_an_input_is_refused(tmp_path, run, rng):
    d = make_feature_set(tmp_path / "d", rng, n_videos=2, t_range=(60, 80))
    vis = tmp_path / "d" / "visual"
    logits = tmp_path / "l.npy"
    np.save(logits, rng.normal(size=(50, 8)).astype(np.float32))
    before = logits.read_bytes()
    _refused(run(["smooth", logits, "--format", "npy", "-o", logits]), "is the input")
    assert logits.read_bytes() == before
    invoke("window", "--visual-dir", vis, "--audio-dir", tmp_path / "d" / "audio", "--label-dir",
           tmp_path / "d" / "labels", "-o", tmp_path / "t.csv")
    invoke("train", tmp_path / "t.csv", "-o", tmp_path / "m.safetensors", "--epochs", "1", "--d-model", "16",
           "--layers", "1", "--heads", "2")
    feats = _listing(vis)
    result = run(["infer", "-m", tmp_path / "m.safetensors", "--visual-dir", vis, "--audio-dir",
                  tmp_path / "d" / "audio", "-o", vis])
    _refused(result, "is the input")
    assert _listing(vis) == feats
    manifest = (tmp_path / "t.csv").read_bytes()
    _refused(run(["train", tmp_path / "t.csv", "-o", tmp_path / "t.csv", "--epochs", "1"]), "is the input")
    assert (tmp_path / "t.csv").read_bytes() == manifest
    assert d is not None


def test_check_replaceable_rules(tmp_path):
    out = tmp_path / "out"
    formats.check_replaceable(str(out), "finetune")  # absent: fine
    out.mkdir()
    formats.check_replaceable(str(out), "finetune")  # empty: fine
    (out / formats.OUTPUT_MARK).write_text("extract-visual\n")
    with pytest.raises(AbawError, match="not an earlier output of abaw finetune"):
        formats.check_replaceable(str(out), "finetune")  # another command's output
    (tmp_path / "file").write_text("x")
    with pytest.raises(AbawError, match="is not a folder"):
        formats.check_replaceable(str(tmp_path / "file"), "finetune")
    link = tmp_path / "link"
    link.symlink_to(out)
    inside = out / "data"
    inside.mkdir()
    with pytest.raises(AbawError, match="holds the input"):
        formats.check_replaceable(str(link), "extract-visual", [str(inside)])  # through a link, too
