import os

import numpy as np
import pytest
from conftest import abaw
from scipy import ndimage

from abawtools import smoothing, submission


@pytest.mark.parametrize("k", [1, 3, 11, 31])
def test_median_matches_scipy_ndimage(rng, k):
    logits = rng.normal(size=(257, 8)).astype(np.float32)
    ours = smoothing.median_filter(logits, k)
    ref = ndimage.median_filter(logits, size=(k, 1), mode="nearest")
    np.testing.assert_array_equal(ours, ref)
    labels, smoothed = smoothing.smooth(logits, k, "median")
    np.testing.assert_array_equal(labels, ref.argmax(1))


def test_median_labels_and_mean_match_scipy(rng):
    logits = rng.normal(size=(100, 8)).astype(np.float32)
    labels, none = smoothing.smooth(logits, 11, "median-labels")
    assert none is None
    np.testing.assert_array_equal(labels, ndimage.median_filter(logits.argmax(1), size=11, mode="nearest"))
    labels, smoothed = smoothing.smooth(logits, 5, "mean")
    ref = ndimage.uniform_filter1d(logits.astype(np.float64), 5, axis=0, mode="nearest")
    np.testing.assert_allclose(smoothed, ref, atol=1e-5)


def test_mode_filter_majority_by_hand():
    labels = np.array([1, 1, 2, 1, 3, 3, 3, 0, 3])
    # k=3, edges repeated: windows [1,1,1] [1,1,2] [1,2,1] [2,1,3] [1,3,3] [3,3,3] [3,3,0] [3,0,3] [0,3,3]
    expected = [1, 1, 1, 1, 3, 3, 3, 3, 3]  # [2,1,3] is a 3-way tie -> lowest id (1)
    np.testing.assert_array_equal(smoothing.mode_filter(labels, 3), expected)


def test_no_shift_at_the_edges():
    # a constant run of class 4 must stay class 4 up to the last frame (zero padding would not)
    logits = np.full((30, 8), -5.0, dtype=np.float32)
    logits[:, 4] = 5.0
    for method in smoothing.METHODS:
        labels, _ = smoothing.smooth(logits, 11, method)
        assert (labels == 4).all(), method
    # a step edge stays where it is
    step = np.full((40, 8), -1.0, dtype=np.float32)
    step[:20, 2] = 1.0
    step[20:, 6] = 1.0
    labels, _ = smoothing.smooth(step, 11, "median")
    np.testing.assert_array_equal(labels, [2] * 20 + [6] * 20)


def test_short_and_empty_inputs():
    for T in (0, 1, 4):
        logits = np.arange(T * 8, dtype=np.float32).reshape(T, 8)
        for method in smoothing.METHODS:
            labels, _ = smoothing.smooth(logits, 11, method)
            assert labels.shape == (T,)


def test_cli_smooth_file_to_stdout_and_npy(run, tmp_path, rng):
    logits = rng.normal(size=(50, 8)).astype(np.float32)
    np.save(tmp_path / "l.npy", logits)
    res = run(["smooth", tmp_path / "l.npy"])
    assert res.exit_code == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("Neutral,Anger")
    expected = ndimage.median_filter(logits, size=(11, 1), mode="nearest").argmax(1)
    np.testing.assert_array_equal([int(x) for x in lines[1:]], expected)

    res = run(["smooth", tmp_path / "l.npy", "--format", "npy", "-k", "5", "-o", tmp_path / "s.npy"])
    assert res.exit_code == 0 and res.stdout == ""
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy"), ndimage.median_filter(logits, size=(5, 1), mode="nearest"))


def test_cli_smooth_many_inputs_to_folder(run, tmp_path, rng):
    for vid in ("a", "b_left", "c"):
        np.save(tmp_path / f"{vid}.npy", rng.normal(size=(30, 8)).astype(np.float32))
    out = tmp_path / "pred"
    inputs = [tmp_path / f"{v}.npy" for v in ("a", "b_left", "c")]
    res = run(["smooth", *inputs, "-o", out])
    assert res.exit_code == 0, res.stderr
    assert sorted(os.listdir(out)) == ["a.txt", "b_left.txt", "c.txt"]
    # shards 0/2 and 1/2 together write every video exactly once
    outs = []
    for s in ("0/2", "1/2"):
        d = tmp_path / f"shard{s[0]}"
        assert run(["smooth", *inputs, "-o", d, "--shard", s]).exit_code == 0
        outs += os.listdir(d)
    assert sorted(outs) == ["a.txt", "b_left.txt", "c.txt"]


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["-k", "4"], 2, "positive odd number"),
        (["-k", "0"], 2, "positive odd number"),
        (["--method", "mode", "--format", "npy"], 2, "labels only"),
    ],
)
def test_cli_smooth_usage_errors(tmp_path, rng, args, code, message):
    np.save(tmp_path / "l.npy", rng.normal(size=(5, 8)).astype(np.float32))
    proc = abaw("smooth", tmp_path / "l.npy", "-o", tmp_path / "o.txt", *args, check=False)
    assert proc.returncode == code
    assert message in proc.stderr.decode()
    assert not (tmp_path / "o.txt").exists()


@pytest.mark.parametrize(
    "content, message",
    [
        (np.zeros((5, 7), np.float32), "7 values per frame: expected 8 (EXPR logits)"),
        (np.full((5, 8), np.nan, np.float32), "NaN"),
        (b"not an npy", "not a readable NPY"),
    ],
)
def test_cli_smooth_bad_input_one_line_exit_1_no_output(tmp_path, content, message):
    bad = tmp_path / "bad.npy"
    if isinstance(content, bytes):
        bad.write_bytes(content)
    else:
        np.save(bad, content)
    out = tmp_path / "o.txt"
    proc = abaw("smooth", bad, "-o", out, check=False)
    err = proc.stderr.decode()
    assert proc.returncode == 1
    assert err.count("\n") == 1 and err.startswith("abaw smooth: error: ") and message in err
    assert "Traceback" not in err
    assert not out.exists() and os.listdir(tmp_path) == ["bad.npy"]


def test_missing_file_is_one_line(tmp_path):
    proc = abaw("smooth", tmp_path / "nope.npy", check=False)
    assert proc.returncode == 1
    assert proc.stderr.decode() == f"abaw smooth: error: {tmp_path / 'nope.npy'}: no such file\n"


def test_one_input_into_a_new_folder_with_trailing_slash(run, tmp_path, rng):
    np.save(tmp_path / "only.npy", rng.normal(size=(9, 8)).astype(np.float32))
    res = run(["smooth", tmp_path / "only.npy", "-o", str(tmp_path / "new") + "/"])
    assert res.exit_code == 0, res.stderr
    assert os.listdir(tmp_path / "new") == ["only.txt"]


def test_cli_submission_with_template_then_scored(run, tmp_path, rng):
    from abawtools import formats

    logits = {}
    for vid, T in (("10-60_left", 20), ("7", 15)):
        logits[vid] = rng.normal(size=(T, 8)).astype(np.float32)
        np.save(tmp_path / f"{vid}.npy", logits[vid])
    rows = [f"10-60_left/{t:05d}.jpg," for t in range(1, 21)] + [f"7/{t:05d}.jpg," for t in range(1, 18)]
    (tmp_path / "template.txt").write_text(formats.SUBMISSION_HEADER + "\n" + "\n".join(rows) + "\n")
    res = run(["smooth", tmp_path / "10-60_left.npy", tmp_path / "7.npy", "--format", "submission",
               "--template", tmp_path / "template.txt", "-k", "3", "-o", tmp_path / "sub.csv"])
    assert res.exit_code == 0, res.stderr
    assert "2 listed frame(s) had no prediction" in res.stderr  # 7 has 15 frames, 17 listed
    # logits shorter than the template's video: another T was used, and it is said by name
    assert "the logits of 1 video(s) end before the template's last listed frame" in res.stderr
    assert "7 (2); T is the template's" in res.stderr and "10-60_left" not in res.stderr
    sub = submission.read_submission(str(tmp_path / "sub.csv"))
    expected = ndimage.median_filter(logits["7"], size=(3, 1), mode="nearest").argmax(1)
    np.testing.assert_array_equal(sub["7"][:15], expected)
    assert sub["7"][15] == sub["7"][16] == expected[-1]  # forward-filled
    assert len(sub["10-60_left"]) == 20


def test_submission_lists_the_template_rows_as_the_template_spells_them(run, tmp_path, rng):
    """A template with 4-digit names (or .png): before the fix every image_location came back
    rewritten as 00001.jpg, rows the organisers' scorer would not match."""
    from abawtools import formats

    np.save(tmp_path / "v.npy", rng.normal(size=(6, 8)).astype(np.float32))
    rows = [f"v/{t:04d}.jpg," for t in range(1, 5)] + ["v/5.png,", "v/00006.jpg,"]
    (tmp_path / "template.csv").write_text(formats.SUBMISSION_HEADER + "\n" + "\n".join(rows) + "\n")
    res = run(["smooth", tmp_path / "v.npy", "--format", "submission", "--template", tmp_path / "template.csv",
               "-k", "1", "-o", tmp_path / "sub.csv"])
    assert res.exit_code == 0, res.stderr
    lines = (tmp_path / "sub.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in lines[1:]] == [r[:-1] for r in rows]
    labels = np.load(tmp_path / "v.npy").argmax(1)
    assert [int(line.split(",")[1]) for line in lines[1:]] == labels.tolist()
