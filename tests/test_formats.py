import io
import os

import numpy as np
import pytest
from conftest import write_label_file

from abawtools import formats, submission
from abawtools.errors import AbawError


def test_labels_roundtrip(tmp_path):
    labels = np.array([0, 3, -1, 7, 7, 2])
    path = tmp_path / "v.txt"
    formats.write_labels(str(path), labels)
    text = path.read_text().splitlines()
    assert text[0] == "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other"
    assert text[1:] == ["0", "3", "-1", "7", "7", "2"]
    np.testing.assert_array_equal(formats.read_labels(str(path)), labels)


@pytest.mark.parametrize(
    "body, where",
    [
        ("Neutral,Anger\n0\n", ":1: expected header"),
        (formats.LABEL_HEADER + "\n0\n1\nx\n", ":4: expected an integer label, got 'x'"),
        (formats.LABEL_HEADER + "\n0\n8\n", ":3: label 8 outside"),
        (formats.LABEL_HEADER + "\n-2\n", ":2: label -2 outside"),
        ("", "empty label file"),
    ],
)
def test_bad_label_files_name_file_and_line(tmp_path, body, where):
    path = tmp_path / "bad.txt"
    path.write_text(body)
    with pytest.raises(AbawError) as err:
        formats.read_labels(str(path))
    assert str(path) + where in str(err.value) or where in str(err.value)
    assert str(path) in str(err.value)


def test_atomic_output_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.npy"
    with pytest.raises(RuntimeError):
        with formats.atomic_output(str(target)) as fh:
            fh.write(b"half")
            raise RuntimeError("killed")
    assert os.listdir(tmp_path) == []


def test_read_npy_from_unseekable_stdin(monkeypatch):
    buf = io.BytesIO()
    np.save(buf, np.arange(6, dtype=np.float32).reshape(3, 2))

    class Pipe:
        def __init__(self, data):
            self.buffer = self
            self._data = data

        def read(self, *a):
            out, self._data = self._data, b""
            return out

        def seekable(self):
            return False

    monkeypatch.setattr("sys.stdin", Pipe(buf.getvalue()))
    np.testing.assert_array_equal(formats.read_npy("-"), np.arange(6).reshape(3, 2))


def test_read_predictions_label_file_or_logits(tmp_path, rng):
    logits = rng.normal(size=(20, 8)).astype(np.float32)
    np.save(tmp_path / "l.npy", logits)
    np.testing.assert_array_equal(formats.read_predictions(str(tmp_path / "l.npy")), logits.argmax(1))
    write_label_file(tmp_path / "p.txt", [1, 2, 3])
    np.testing.assert_array_equal(formats.read_predictions(str(tmp_path / "p.txt")), [1, 2, 3])


def test_submission_roundtrip_and_template_forward_fill(tmp_path):
    preds = {"vidA": np.array([1, 1, 2]), "vidB_left": np.array([5, 6])}
    path = tmp_path / "sub.csv"
    assert submission.write_submission(str(path), preds) == 0
    lines = path.read_text().splitlines()
    assert lines[0] == "image_location,Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other"
    assert lines[1:4] == ["vidA/00001.jpg,1", "vidA/00002.jpg,1", "vidA/00003.jpg,2"]
    back = submission.read_submission(str(path))
    assert set(back) == set(preds)
    for k in preds:
        np.testing.assert_array_equal(back[k], preds[k])

    # the organisers' template lists frames with no prediction (no face crop, past the end, unknown video)
    template = tmp_path / "template.csv"
    template.write_text(
        formats.SUBMISSION_HEADER + "\n"
        + "\n".join(["vidA/00001.jpg,", "vidA/00002.jpg,", "vidA/00003.jpg,", "vidA/00004.jpg,",
                     "vidB_left/00001.jpg,", "vidB_left/00002.jpg,", "vidC/00001.jpg,"]) + "\n"
    )
    out = tmp_path / "sub2.csv"
    filled = submission.write_submission(str(out), preds, template=str(template))
    assert filled == 2  # vidA frame 4 and all of vidC
    rows = out.read_text().splitlines()[1:]
    assert rows == ["vidA/00001.jpg,1", "vidA/00002.jpg,1", "vidA/00003.jpg,2", "vidA/00004.jpg,2",
                    "vidB_left/00001.jpg,5", "vidB_left/00002.jpg,6", "vidC/00001.jpg,0"]


def test_bad_submission_rows(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text(formats.SUBMISSION_HEADER + "\nvidA/00001.jpg,9\n")
    with pytest.raises(AbawError, match=r"s.csv:2: label 9"):
        submission.read_submission(str(path))
    path.write_text(formats.SUBMISSION_HEADER + "\nnot-a-frame,1\n")
    with pytest.raises(AbawError, match=r"s.csv:2: expected 'VIDEO/00001.jpg'"):
        submission.read_submission(str(path))


def test_video_ids_and_shared_audio(tmp_path):
    assert formats.video_id("/a/b/10-60-1280x720_left.npy") == "10-60-1280x720_left"
    assert formats.shared_audio_id("10-60-1280x720_left") == "10-60-1280x720"
    assert formats.shared_audio_id("118") == "118"
    (tmp_path / "10-60.npy").write_bytes(b"")
    assert formats.find_for_video(str(tmp_path), "10-60_right", ".npy") == str(tmp_path / "10-60.npy")
    assert formats.find_for_video(str(tmp_path), "11", ".npy") is None
