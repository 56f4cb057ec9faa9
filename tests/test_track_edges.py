"""The edges of the VA and AU tracks (issue 25): an invalid mark is never scored as a value, a
run on nothing is one error before anything is written, `-` works wherever a file is read, and
every message names its file. Each test failed (or passed silently wrong) before the fix."""

import json
import os

import numpy as np
import pytest
from conftest import abaw, invoke, make_feature_set, one_line_error, write_label_file

from abawtools import tasks

AU_HEADER = ",".join(tasks.AU_NAMES)


def _write(path, header, rows):
    with open(path, "w") as fh:
        fh.write(header + "\n" + "".join(",".join(f"{v:g}" for v in np.atleast_1d(r)) + "\n" for r in rows))




@pytest.fixture
def va(tmp_path):
    rng = np.random.default_rng(0)
    truth = rng.uniform(-0.8, 0.8, size=(40, 2))
    _write(tmp_path / "truth.txt", "valence,arousal", truth)
    return tmp_path, truth


def test_a_va_prediction_with_unannotated_marks_is_an_error_not_a_value(va, run):
    tmp_path, truth = va
    pred = truth.copy()
    pred[7:9] = -5  # scored as -5 inside the CCC before: -0.033 on otherwise perfect frames
    _write(tmp_path / "pred.txt", "valence,arousal", pred)
    one_line_error(run(["score", tmp_path / "pred.txt", tmp_path / "truth.txt"]), "pred.txt:9:", "frame 8", "2 such frame")


def test_an_au_prediction_with_minus_one_rows_is_anone_line_error(tmp_path, run):
    truth = np.random.default_rng(1).integers(0, 2, (30, 12))
    _write(tmp_path / "truth.txt", AU_HEADER, truth)
    pred = truth.copy()
    pred[3] = -1  # counted as 0 before
    _write(tmp_path / "pred.txt", AU_HEADER, pred)
    one_line_error(run(["score", tmp_path / "pred.txt", tmp_path / "truth.txt"]), "pred.txt:5:", "unannotated (-1)")


def test_an_expr_prediction_of_minus_one_at_a_labelled_frame_names_the_line(tmp_path, run):
    write_label_file(tmp_path / "truth.txt", [1, 2, 3, 4])
    write_label_file(tmp_path / "pred.txt", [1, -1, 3, 4])
    one_line_error(run(["score", tmp_path / "pred.txt", tmp_path / "truth.txt"]), "pred.txt:3:")


def test_smooth_refuses_va_outputs_holding_the_unannotated_mark(tmp_path, run):
    out = np.random.default_rng(0).uniform(-0.5, 0.5, (60, 2)).astype(np.float32)
    out[30] = -5  # spread over +-50 frames by the mean filter before
    np.save(tmp_path / "va.npy", out)
    one_line_error(run(["smooth", tmp_path / "va.npy", "-o", tmp_path / "p.txt"]), "va.npy", "row 30", "-5")
    assert not (tmp_path / "p.txt").exists()


def _au_set(tmp_path, rng, with_positives=True):
    truth = (rng.random((200, 12)) < 0.5).astype(int)
    if not with_positives:
        truth[:, 3] = 0  # AU6: no positive frame in the tuning set: F1 0 at every threshold
    _write(tmp_path / "au.txt", AU_HEADER, truth)
    logits = np.where(truth == 1, 1.0, -1.0) + rng.normal(0, 0.8, truth.shape)
    np.save(tmp_path / "au.npy", logits.astype(np.float32))
    return truth, logits


def test_tuning_keeps_half_where_every_threshold_ties_and_says_so(tmp_path, run):
    _au_set(tmp_path, np.random.default_rng(0), with_positives=False)
    result = run(["score", tmp_path / "au.npy", tmp_path / "au.txt", "--tune-thresholds", tmp_path / "th.json"])
    assert result.exit_code == 0, result.stderr
    chosen = json.load(open(tmp_path / "th.json"))["thresholds"]
    assert chosen["AU6"] == 0.5  # was 0.1: nearly every test frame marked positive
    assert "AU6 (9 thresholds" in result.stderr and "kept 0.5" in result.stderr


def test_choose_threshold_takes_the_best_else_the_tie_nearest_half():
    from abawtools import scoring

    grid = np.round(np.arange(0.1, 0.91, 0.1), 2)
    assert grid[scoring.choose_threshold(grid, [0.1, 0.9, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2])] == 0.2
    assert grid[scoring.choose_threshold(grid, [0.7, 0.7, 0.7, 0.1, 0.1, 0.1, 0.1, 0.7, 0.7])] == 0.3
    assert grid[scoring.choose_threshold(grid, [0.0] * 9)] == 0.5


def test_tuning_on_nothing_to_score_writes_nothing(tmp_path, run):
    _write(tmp_path / "au.txt", AU_HEADER, -np.ones((20, 12)))
    np.save(tmp_path / "au.npy", np.zeros((20, 12), np.float32))
    one_line_error(run(["score", tmp_path / "au.npy", tmp_path / "au.txt", "--tune-thresholds", tmp_path / "th.json"]),
           "nothing to score")
    assert not (tmp_path / "th.json").exists()


def test_smooth_npy_with_thresholds_is_a_usageone_line_error(tmp_path, run):
    np.save(tmp_path / "au.npy", np.zeros((20, 12), np.float32))
    result = run(["smooth", tmp_path / "au.npy", "--format", "npy", "--thresholds", ",".join(["0.4"] * 12)])
    assert result.exit_code == 2 and "--thresholds" in result.stderr, result.stderr


def test_stdin_works_for_tuning_and_for_a_submission(tmp_path):
    rng = np.random.default_rng(0)
    _au_set(tmp_path, rng)
    proc = abaw("score", "-", tmp_path / "au.txt", "--tune-thresholds", tmp_path / "th.json",
                stdin=(tmp_path / "au.npy").read_bytes())
    assert json.load(open(tmp_path / "th.json"))["videos"] == 1 and json.loads(proc.stdout)["task"] == "au"
    # smooth ... -o - | score --submission -
    (tmp_path / "labels").mkdir()
    os.rename(tmp_path / "au.txt", tmp_path / "labels" / "au.txt")
    sub = invoke("smooth", tmp_path / "au.npy", "--format", "submission", "-o", "-").stdout
    piped = json.loads(invoke("score", "--submission", "-", "--label-dir", tmp_path / "labels", input=sub).stdout)
    invoke("smooth", tmp_path / "au.npy", "-o", tmp_path / "au-pred.txt")  # the same smoothing, as a file
    direct = json.loads(invoke("score", tmp_path / "au-pred.txt", tmp_path / "labels" / "au.txt").stdout)
    assert piped["score"] == pytest.approx(direct["score"])


def _va_features(root, rng, labels):
    for d in ("visual", "audio", "labels"):
        os.makedirs(root / d, exist_ok=True)
    for i, lab in enumerate(labels):
        np.save(root / "visual" / f"v{i}.npy", rng.normal(size=(len(lab), 8)).astype(np.float32))
        np.save(root / "audio" / f"v{i}.npy", rng.normal(size=(len(lab), 4)).astype(np.float32))
        _write(root / "labels" / f"v{i}.txt", "valence,arousal", lab)


def test_window_on_a_folder_without_an_annotated_frame_writes_nothing(tmp_path, run):
    _va_features(tmp_path, np.random.default_rng(0), [np.full((60, 2), -5.0)] * 2)
    one_line_error(run(["window", "--visual-dir", tmp_path / "visual", "--audio-dir", tmp_path / "audio", "--label-dir",
                tmp_path / "labels", "--max-invalid", "1", "-o", tmp_path / "m.csv"]), "no annotated frame")
    assert not (tmp_path / "m.csv").exists()


def test_train_on_windows_without_an_annotated_frame_is_anone_line_error(tmp_path, run):
    rng = np.random.default_rng(0)
    _va_features(tmp_path, rng, [rng.uniform(-1, 1, (60, 2))] * 2)
    invoke("window", "--visual-dir", tmp_path / "visual", "--audio-dir", tmp_path / "audio", "--label-dir",
           tmp_path / "labels", "-o", tmp_path / "m.csv")
    for i in range(2):  # the labels emptied after the manifest was made
        _write(tmp_path / "labels" / f"v{i}.txt", "valence,arousal", np.full((60, 2), -5.0))
    one_line_error(run(["train", tmp_path / "m.csv", "-o", tmp_path / "m.safetensors", "--epochs", "1", "--d-model", "16",
                "--heads", "2", "--layers", "1"]), "no window holds an annotated frame")
    assert not (tmp_path / "m.safetensors").exists()


def test_finetune_validation_without_an_annotated_frame_is_anone_line_error(tmp_path, run):
    import imagedata

    rng = np.random.default_rng(0)
    cropped, labels = imagedata.affwild2(str(tmp_path), ["a", "b"], rng)
    val = tmp_path / "val"
    val.mkdir()
    for vid in ("a", "b"):
        n = len(open(os.path.join(labels, vid + ".txt")).read().splitlines()) - 1
        _write(val / f"{vid}.txt", "valence,arousal", np.full((n, 2), -5.0))
    beit = imagedata.tiny_backbone(str(tmp_path / "beit"))
    one_line_error(run(["finetune", "--model", beit, "--affwild2", cropped, labels, "--val", cropped, val, "-o",
                tmp_path / "ft", "--epochs", "1", "--workers", "0"]), "nothing to validate on", str(val))
    assert not (tmp_path / "ft").exists()


def test_a_va_value_is_quoted_as_written(tmp_path, run):
    (tmp_path / "l.txt").write_text("valence,arousal\n0.5,0.5\n1.0000001,0\n")
    np.save(tmp_path / "p.npy", np.zeros((2, 2), np.float32))
    one_line_error(run(["score", tmp_path / "p.npy", tmp_path / "l.txt"]), "l.txt:3: 1.0000001 outside [-1, 1]")


@pytest.mark.parametrize("text, header", [("0_1", ",".join(["Neutral", "Anger", "Disgust", "Fear", "Happiness",
                                                             "Sadness", "Surprise", "Other"])),
                                           ("0_1,0", "valence,arousal"),
                                           (",".join(["0_1"] + ["0"] * 11), AU_HEADER)])
def test_a_number_with_an_underscore_is_no_label(tmp_path, run, text, header):
    (tmp_path / "l.txt").write_text(f"{header}\n{text}\n")  # int('0_1') == 1 in Python
    np.save(tmp_path / "p.npy", np.zeros((1, 8 if "Neutral" in header else 2 if "valence" in header else 12),
                                         np.float32))
    one_line_error(run(["score", tmp_path / "p.npy", tmp_path / "l.txt"]), "l.txt:2:", "0_1")


def test_a_broken_model_config_names_the_model_file(tmp_path, rng, run):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    d = make_feature_set(tmp_path / "d", rng, n_videos=2, t_range=(60, 80))
    invoke("window", "--visual-dir", d[0], "--audio-dir", d[1], "--label-dir", d[2], "-o", tmp_path / "t.csv")
    invoke("train", tmp_path / "t.csv", "-o", tmp_path / "m.safetensors", "--epochs", "1", "--d-model", "16",
           "--layers", "1", "--heads", "2")
    with safe_open(str(tmp_path / "m.safetensors"), framework="pt") as fh:
        meta = fh.metadata()
    cfg = json.loads(meta["abaw.config"])
    cfg["heads"] = 3
    meta["abaw.config"] = json.dumps(cfg)
    save_file(load_file(str(tmp_path / "m.safetensors")), str(tmp_path / "bad.safetensors"), metadata=meta)
    one_line_error(run(["infer", "-m", tmp_path / "bad.safetensors", "--visual", os.path.join(d[0], "v0.npy"),
                "--audio", os.path.join(d[1], "v0.npy")]), "bad.safetensors", "divisible")


def test_features_of_other_widths_name_the_videos(tmp_path, rng, run):
    d = make_feature_set(tmp_path / "d", rng, n_videos=2, t_range=(60, 80))
    invoke("window", "--visual-dir", d[0], "--audio-dir", d[1], "--label-dir", d[2], "-o", tmp_path / "t.csv")
    v1 = np.load(os.path.join(d[0], "v1.npy"))
    np.save(os.path.join(d[0], "v1.npy"), np.concatenate([v1, v1[:, :4]], axis=1))
    one_line_error(run(["train", tmp_path / "t.csv", "-o", tmp_path / "m.safetensors", "--epochs", "1"]),
           "v0 (16, 12)", "v1 (20, 12)")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_window_into_a_read_only_folder_is_said_before_the_work(tmp_path, rng, run):
    d = make_feature_set(tmp_path / "d", rng, n_videos=2, t_range=(60, 80))
    (tmp_path / "ro").mkdir()
    os.chmod(tmp_path / "ro", 0o555)
    one_line_error(run(["window", "--visual-dir", d[0], "--audio-dir", d[1], "--label-dir", d[2], "-o",
                tmp_path / "ro" / "t.csv"]), "not writable")


def test_window_checks_its_output_folder_before_reading_labels(tmp_path, rng, run, monkeypatch):
    """As root the read-only case cannot be made: the check is seen running before any label is read."""
    from abawtools.commands import _common

    d = make_feature_set(tmp_path / "d", rng, n_videos=2, t_range=(60, 80))
    seen = []
    monkeypatch.setattr(_common, "check_output_dir", lambda path: seen.append(path) or (_ for _ in ()).throw(
        _common.AbawError(f"{path}: the folder is not writable")))
    one_line_error(run(["window", "--visual-dir", d[0], "--audio-dir", d[1], "--label-dir", d[2], "-o", tmp_path / "t.csv"]),
           "not writable")
    assert seen == [str(tmp_path / "t.csv")]


def test_align_refuses_inf_and_names_nan_rows(tmp_path, run):
    audio = np.random.default_rng(0).normal(size=(100, 4)).astype(np.float32)
    audio[10, 2] = np.inf
    np.save(tmp_path / "a.npy", audio)
    one_line_error(run(["align", tmp_path / "a.npy", "--frames", "50", "-o", tmp_path / "x.npy"]), "a.npy", "row 10")
    audio[10] = np.nan
    audio[11] = np.nan
    np.save(tmp_path / "a.npy", audio)
    result = run(["align", tmp_path / "a.npy", "--frames", "50", "-o", tmp_path / "x.npy"])
    assert result.exit_code == 0 and "2 of 100 audio row(s) are NaN" in result.stderr and "row 10" in result.stderr
