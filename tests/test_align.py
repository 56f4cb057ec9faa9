import os

import numpy as np
import pytest
from conftest import abaw, write_label_file

from abawtools import alignment


def interp_reference(audio, xs):
    return np.stack([np.interp(xs, np.arange(len(audio)), audio[:, d]) for d in range(audio.shape[1])], 1)


def test_stretch_is_linear_interpolation_over_the_duration(rng):
    audio = rng.normal(size=(149, 5)).astype(np.float32)
    out = alignment.stretch(audio, 90)
    ref = interp_reference(audio, np.linspace(0, 148, 90))
    np.testing.assert_allclose(out, ref, atol=1e-5)
    np.testing.assert_array_equal(out[0], audio[0])
    np.testing.assert_allclose(out[-1], audio[-1], atol=1e-6)


def test_fps_places_frames_in_time_and_holds_the_tail(rng):
    audio = rng.normal(size=(100, 3)).astype(np.float32)  # 2 s at 50/s
    out, held = alignment.at_fps(audio, 75, fps=30.0)  # 2.5 s of video
    ref = interp_reference(audio, np.arange(75) * 50 / 30)
    np.testing.assert_allclose(out, ref, atol=1e-5)
    assert held == int((np.arange(75) * 50 / 30 > 99).sum()) and held > 0
    np.testing.assert_array_equal(out[-1], audio[-1])


def test_cli_like_label_file_and_pipe(tmp_path, rng):
    audio = rng.normal(size=(60, 4)).astype(np.float32)
    np.save(tmp_path / "a.npy", audio)
    write_label_file(tmp_path / "v.txt", [0] * 37)
    proc = abaw("align", "-", "--like", tmp_path / "v.txt", stdin=(tmp_path / "a.npy").read_bytes())
    out = np.load(__import__("io").BytesIO(proc.stdout))
    assert out.shape == (37, 4)
    np.testing.assert_allclose(out, interp_reference(audio, np.linspace(0, 59, 37)), atol=1e-5)


def test_cli_fps_reports_held_frames(run, tmp_path, rng):
    np.save(tmp_path / "a.npy", rng.normal(size=(10, 2)).astype(np.float32))
    res = run(["align", tmp_path / "a.npy", "--frames", 20, "--fps", 25, "-o", tmp_path / "o.npy"])
    assert res.exit_code == 0
    assert "last row held" in res.stderr
    assert np.load(tmp_path / "o.npy").shape == (20, 2)


def test_cli_like_dir_maps_left_right_onto_shared_audio(run, tmp_path, rng):
    (tmp_path / "audio").mkdir()
    (tmp_path / "visual").mkdir()
    np.save(tmp_path / "audio" / "10-60.npy", rng.normal(size=(50, 3)).astype(np.float32))
    np.save(tmp_path / "audio" / "7.npy", rng.normal(size=(40, 3)).astype(np.float32))
    for vid, T in (("10-60_left", 30), ("10-60_right", 30), ("7", 12)):
        np.save(tmp_path / "visual" / f"{vid}.npy", np.zeros((T, 2), np.float32))
    inputs = sorted((tmp_path / "audio").iterdir())
    res = run(["align", *inputs, "--like-dir", tmp_path / "visual", "-o", tmp_path / "out"])
    assert res.exit_code == 0, res.stderr
    assert sorted(os.listdir(tmp_path / "out")) == ["10-60_left.npy", "10-60_right.npy", "7.npy"]
    assert np.load(tmp_path / "out" / "7.npy").shape == (12, 3)
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "10-60_left.npy"),
                                  np.load(tmp_path / "out" / "10-60_right.npy"))


@pytest.mark.parametrize("args, code", [([], 2), (["--frames", "3", "--like", "X"], 2)])
def test_cli_usage(tmp_path, rng, args, code):
    np.save(tmp_path / "a.npy", rng.normal(size=(10, 2)).astype(np.float32))
    (tmp_path / "X").write_text("")
    args = [a if a != "X" else tmp_path / "X" for a in args]
    assert abaw("align", tmp_path / "a.npy", *args, check=False).returncode == code


def test_cli_bad_shape_is_one_line(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros(10, np.float32))
    proc = abaw("align", tmp_path / "a.npy", "--frames", 5, "-o", tmp_path / "o.npy", check=False)
    assert proc.returncode == 1
    assert proc.stderr.decode().startswith("abaw align: error: ") and proc.stderr.count(b"\n") == 1
    assert not (tmp_path / "o.npy").exists()
