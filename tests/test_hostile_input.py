"""Hostile input read as its publishers define it, or stopped with one line naming the file: text
files off Windows and Excel (BOM, CRLF), cropped_aligned folders that do not follow the layout,
RAF-DB without its aligned images, names outside ASCII, hand-edited manifests, a fine-tuned
model's processor config in every layout. Each case was a silent wrong result before its fix."""

import csv
import json
import os

import imagedata
import numpy as np
import pytest
from conftest import invoke, make_feature_set, write_label_file

from abawtools import CLASSES, formats, frames, imagesets, submission
from abawtools.errors import AbawError

BOM = "\ufeff"


def _windows(path):
    """Rewrite a text file as Excel on Windows saves it: a UTF-8 BOM and CRLF line ends."""
    text = open(path, encoding="utf-8").read().replace("\r\n", "\n")
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(BOM + text.replace("\n", "\r\n"))


def _error(result, *words):
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1 and "Traceback" not in result.stderr and "error:" in lines[-1], result.stderr
    for w in words:
        assert w in lines[-1], lines[-1]
    return lines[-1]


# --------------------------------------------------------------------- BOM and CRLF
def test_every_image_source_reads_a_bom_and_crlf_as_plain_text(tmp_path):
    rng = np.random.default_rng(0)
    raf = imagedata.rafdb(str(tmp_path / "raf"), 20, rng)
    fer = imagedata.ferplus(str(tmp_path / "fer"), 14, rng)
    aff = imagedata.affectnet(str(tmp_path / "aff"), 14, rng)
    plain = [imagesets.rafdb(raf), imagesets.ferplus(fer), imagesets.affectnet(aff)]
    _windows(os.path.join(raf, "EmoLabel", "list_patition_label.txt"))
    _windows(os.path.join(fer, "FER2013Train", "label.csv"))
    _windows(os.path.join(aff, "training.csv"))
    windows = [imagesets.rafdb(raf), imagesets.ferplus(fer), imagesets.affectnet(aff)]
    for a, b in zip(plain, windows):  # before: RAF-DB's first row went to the test split, FERPlus stopped
        assert a.rel.tolist() == b.rel.tolist() and a.label.tolist() == b.label.tolist() and a.dropped == b.dropped


def test_labels_templates_and_manifests_with_a_bom_and_crlf(tmp_path, rng):
    d = make_feature_set(tmp_path / "d", rng, n_videos=2, t_range=(60, 70))
    assert d is not None
    labels = tmp_path / "d" / "labels"
    first = sorted(os.listdir(labels))[0]
    want = formats.read_labels(str(labels / first))
    _windows(labels / first)
    assert formats.read_labels(str(labels / first)).tolist() == want.tolist()
    invoke("window", "--visual-dir", tmp_path / "d" / "visual", "--audio-dir", tmp_path / "d" / "audio",
           "--label-dir", labels, "-o", tmp_path / "t.csv")
    _windows(tmp_path / "t.csv")
    from abawtools import windows

    rows = windows.read_manifest(str(tmp_path / "t.csv"))
    assert rows[0]["video"] == first[:-4]
    template = tmp_path / "template.csv"
    template.write_text("image_location,Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n"
                        "a/00001.jpg,\na/00002.jpg,\n")
    _windows(template)
    assert submission.template_frames(str(template)) == {"a": [1, 2]}


# ------------------------------------------------------------------ the cropped_aligned layout
def _folder(root, names):
    os.makedirs(root, exist_ok=True)
    for n in names:
        open(os.path.join(root, n), "wb").close()
    return str(root)


def test_one_reader_of_the_cropped_aligned_layout(tmp_path):
    with pytest.raises(AbawError, match="from 00001.jpg"):  # numbered from 00000: off by one
        frames.numbered_frames(_folder(tmp_path / "zero", ["00000.jpg", "00001.jpg"]))
    with pytest.raises(AbawError, match="both claim frame 2"):
        frames.numbered_frames(_folder(tmp_path / "twice", ["00001.jpg", "00002.jpg", "00002.png"]))
    with pytest.raises(AbawError, match="highest frame number is 99999999 "):
        frames.numbered_frames(_folder(tmp_path / "stray", ["00001.jpg", "99999999.jpg"]))
    # with T known the stray number is only cut, never iterated
    assert frames.FrameFolder(str(tmp_path / "stray"), frames=5).stop == 5
    four = frames.numbered_frames(_folder(tmp_path / "four", ["0001.png", "0003.png"]))
    assert four.files == {0: "0001.png", 2: "0003.png"} and "0001.png" in four.note
    assert frames.numbered_frames(_folder(tmp_path / "good", ["00001.jpg", "00003.jpg"])).note is None


def test_finetune_reads_aff_wild2_folders_by_the_same_rules(tmp_path, run):
    rng = np.random.default_rng(0)
    cropped, labels = imagedata.affwild2(str(tmp_path / "aw"), ["a"], rng, (30, 31))
    T = len(formats.read_labels(os.path.join(labels, "a.txt")))
    folder = os.path.join(cropped, "a")
    # 4-digit .png names: read (before: counted present, then every one "unreadable")
    for name in os.listdir(folder):
        os.rename(os.path.join(folder, name), os.path.join(folder, f"{int(name[:5]):04d}.png"))
    imagedata.write_image(os.path.join(folder, f"{T + 2:04d}.png"), 0, rng)  # past the label file's end
    index = imagesets.affwild2(cropped, labels)
    assert all(os.path.exists(index.path(i)) for i in range(len(index)))
    assert index.dropped["jpg past the label file's end"] == 1
    assert any("0001.png" in w or "like" in w for w in index.warnings)
    assert any("past the last line" in w for w in index.warnings)
    imagedata.write_image(os.path.join(folder, "00000.jpg"), 0, rng)
    beit = imagedata.tiny_backbone(str(tmp_path / "beit"), "beit")
    result = run(["finetune", "--model", beit, "--affwild2", cropped, labels, "-o", tmp_path / "m", "--epochs", "1",
                  "--workers", "0"])
    _error(result, "00000.jpg", "from 00001.jpg")


def test_extract_visual_refuses_a_folder_numbered_from_zero(tmp_path, run):
    rng = np.random.default_rng(0)
    for t in range(3):
        imagedata.write_image(str(tmp_path / "v" / f"{t:05d}.jpg"), 0, rng)
    _error(run(["extract-visual", tmp_path / "v", "--no-detect", "-o", tmp_path / "v.npy"]), "00000.jpg")
    assert not os.path.exists(tmp_path / "v.npy")


# ------------------------------------------------------------------------------ RAF-DB
def test_rafdb_without_aligned_images_is_cropped_by_its_boxes_or_refused(tmp_path, run):
    import cv2

    rng = np.random.default_rng(0)
    raf = imagedata.rafdb(str(tmp_path / "raf"), 10, rng)
    aligned = os.path.join(raf, "Image", "aligned")
    os.makedirs(os.path.join(raf, "Image", "original"))
    boxes = os.path.join(raf, "Annotation", "boundingbox")
    os.makedirs(boxes)
    for name in sorted(os.listdir(aligned)):
        stem = name.replace("_aligned.jpg", "")
        photo = np.full((200, 200, 3), 128, np.uint8)
        photo[30:78, 50:98] = cv2.imread(os.path.join(aligned, name))
        cv2.imwrite(os.path.join(raf, "Image", "original", stem + ".jpg"), photo)
        with open(os.path.join(boxes, stem + "_boundingbox.txt"), "w") as fh:
            fh.write("50.0 30.0 98.0 78.0\n")
    import shutil

    shutil.rmtree(aligned)
    index = imagesets.rafdb(raf)
    assert len(index) == 8 and (index.box == [50, 30, 48, 48]).all()
    shutil.rmtree(boxes)
    beit = imagedata.tiny_backbone(str(tmp_path / "beit"), "beit")
    result = run(["finetune", "--model", beit, "--rafdb", raf, "-o", tmp_path / "m", "--epochs", "1"])
    _error(result, "neither Image/aligned/ nor Annotation/boundingbox/")


# ------------------------------------------------------------------------ names
def test_image_names_outside_ascii_train(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "imgs"
    for cls, name in enumerate(["neutral", "happy"]):
        for i in range(3):
            imagedata.write_image(str(root / name / f"visage é {i}.jpg"), cls * 4, rng)
    beit = imagedata.tiny_backbone(str(tmp_path / "beit"), "beit")
    invoke("finetune", "--model", beit, "--images", root, "-o", tmp_path / "m", "--epochs", "1", "--workers", "0",
           "--batch-size", "4", "--accumulate", "1")
    record = json.load(open(tmp_path / "m" / "finetune.json"))
    assert record["sources"][0]["images"] == 6 and record["training"]["unreadable_images_skipped"] == 0
    index = imagesets.image_folder(str(root))
    assert all(os.path.exists(index.path(i)) for i in range(len(index)))


# ---------------------------------------------------------------------- manifests
@pytest.mark.parametrize("column, value, words", [("stop", None, "'start'/'stop'"), ("labels", "", "'labels' is empty"),
                                                  ("frames", "x", "'frames'")])
def test_a_hand_edited_manifest_names_its_line_and_column(tmp_path, rng, run, column, value, words):
    make_feature_set(tmp_path / "d", rng, n_videos=2, t_range=(60, 70))
    invoke("window", "--visual-dir", tmp_path / "d" / "visual", "--audio-dir", tmp_path / "d" / "audio",
           "--label-dir", tmp_path / "d" / "labels", "-o", tmp_path / "t.csv")
    rows = list(csv.DictReader(open(tmp_path / "t.csv")))
    rows[2][column] = rows[2]["start"] if value is None else value
    with open(tmp_path / "t.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    line = _error(run(["train", tmp_path / "t.csv", "-o", tmp_path / "m.safetensors", "--epochs", "1"]),
                  f"t.csv:4: column {words}" if not words.startswith("'") else "t.csv:4:", words)
    assert "index 0 is out of bounds" not in line and "unsized" not in line


# --------------------------------------------------------- the processor a fine-tuned model saves
LAYOUTS = {
    "vit": {"image_processor_type": "ViTImageProcessor", "size": {"height": 32, "width": 32}},
    "beit": {"image_processor_type": "BeitImageProcessor", "size": {"height": 40, "width": 40},
             "do_center_crop": True, "crop_size": {"height": 32, "width": 32}},
    "dinov2": {"image_processor_type": "BitImageProcessor", "size": {"shortest_edge": 40}, "do_center_crop": True,
               "crop_size": {"height": 32, "width": 32}},
    "convnext": {"image_processor_type": "ConvNextImageProcessor", "size": {"shortest_edge": 32}, "crop_pct": 0.875},
    "resnet": {"image_processor_type": "ConvNextImageProcessor", "size": {"shortest_edge": 32}, "crop_pct": 0.875,
               "resample": 3},
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_the_saved_processor_gives_the_trained_size_in_every_layout(tmp_path, layout):
    """finetune --image-size 48 on a base whose processor centre-crops to 32 saved a config that
    still said 32: extract-visual, a next finetune and AutoImageProcessor all fed the model 32x32."""
    from transformers import AutoImageProcessor

    from abawtools import visual

    base = tmp_path / "base"
    base.mkdir()
    pre = {"do_resize": True, "resample": 2, "image_mean": [0.5] * 3, "image_std": [0.5] * 3, **LAYOUTS[layout]}
    json.dump(pre, open(base / "preprocessor_config.json", "w"))
    assert visual.ImageSpec.from_pretrained(str(base)).size == 32
    spec = visual.ImageSpec(48, 2, 1 / 255, (0.5,) * 3, (0.5,) * 3)
    out = tmp_path / "out"
    out.mkdir()
    json.dump(spec.to_preprocessor_config(pre), open(out / "preprocessor_config.json", "w"))
    assert visual.ImageSpec.from_pretrained(str(out)) == spec
    processor = AutoImageProcessor.from_pretrained(str(out))
    square = (np.random.default_rng(0).random((112, 112, 3)) * 255).astype(np.uint8)
    pixels = processor(square, return_tensors="np")["pixel_values"]
    assert pixels.shape == (1, 3, 48, 48), (layout, type(processor).__name__, pixels.shape)
    # the whole crop, resized: the same picture as the trained input (up to the resize filter)
    ours = visual.resize_face(square[:, :, ::-1], spec).astype(np.float32).transpose(2, 0, 1) / 255
    theirs = pixels[0] * 0.5 + 0.5
    assert np.abs(ours - theirs).mean() < 0.05
    # any picture, not only a square one: a 100x130 crop is resized whole to the trained 48x48
    tall = (np.random.default_rng(1).random((130, 100, 3)) * 255).astype(np.uint8)
    assert processor(tall, return_tensors="np")["pixel_values"].shape == (1, 3, 48, 48), layout


@pytest.mark.parametrize("flag, side", [(None, 224), (True, 224), (False, 64)])
def test_a_crop_size_is_the_input_only_where_the_processor_crops_and_it_is_said(tmp_path, flag, side):
    """A BEiT processor with size 64 and the default crop_size 224 trained at 224 px without a word,
    also where it does not crop (HF feeds 64 px there)."""
    from abawtools import visual

    pre = {"image_processor_type": "BeitImageProcessor", "size": {"height": 64, "width": 64},
           "crop_size": {"height": 224, "width": 224}, "image_mean": [0.5] * 3, "image_std": [0.5] * 3}
    if flag is not None:
        pre["do_center_crop"] = flag
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(pre))
    notes = []
    assert visual.ImageSpec.from_pretrained(str(tmp_path), notes=notes).size == side
    assert len(notes) == 1 and f"the model input is {side} px" in notes[0] and "crop_size 224" in notes[0], notes


def test_finetune_with_another_image_size_saves_that_size(tmp_path):
    rng = np.random.default_rng(0)
    imgs = imagedata.image_folder(str(tmp_path / "imgs"), 2, rng, names=("neutral", "happy"))
    beit = imagedata.tiny_backbone(str(tmp_path / "beit"), "beit")
    pre = json.load(open(os.path.join(beit, "preprocessor_config.json")))
    pre.update(do_center_crop=True, crop_size={"height": 32, "width": 32}, size={"height": 40, "width": 40})
    json.dump(pre, open(os.path.join(beit, "preprocessor_config.json"), "w"))
    invoke("finetune", "--model", beit, "--images", imgs, "-o", tmp_path / "m", "--epochs", "1", "--workers", "0",
           "--image-size", "48", "--batch-size", "4", "--accumulate", "1")
    from transformers import AutoImageProcessor

    from abawtools import visual

    assert visual.ImageSpec.from_pretrained(str(tmp_path / "m")).size == 48
    square = np.zeros((112, 112, 3), np.uint8)
    assert AutoImageProcessor.from_pretrained(str(tmp_path / "m"))(square, return_tensors="np")[
        "pixel_values"].shape[-2:] == (48, 48)
    assert CLASSES and write_label_file


# ------------------------------------------------------------------------ image sets
def test_image_folders_count_what_they_leave_out_and_say_it(tmp_path, run):
    rng = np.random.default_rng(0)
    root = imagedata.image_folder(str(tmp_path / "imgs"), 3, rng, names=("neutral", "happy", "sad"))
    import cv2

    cv2.imwrite(os.path.join(root, "happy", "tiff.tif"), imagedata.face_image(4, rng))  # read: cv2 reads TIFF
    open(os.path.join(root, "happy", "anim.gif"), "wb").write(b"GIF89a")
    os.makedirs(os.path.join(root, "happy", "more"))
    imagedata.write_image(os.path.join(root, "happy", "more", "x.jpg"), 4, rng)
    os.symlink("loop", os.path.join(root, "sad", "loop"))  # a symlink loop
    os.makedirs(os.path.join(root, "fear"))
    index = imagesets.image_folder(root)
    assert len(index) == 10 and index.counts()[4] == 4
    assert index.dropped == {".gif file": 1, "sub-folder (not read)": 1, "broken link or special file": 1}
    said = "\n".join(index.warnings)
    assert "anim.gif" in said and "more" in said and "fear: empty class folder" in said
    beit = imagedata.tiny_backbone(str(tmp_path / "beit"), "beit")
    result = run(["finetune", "--model", beit, "--images", root, "-o", tmp_path / "m", "--epochs", "1",
                  "--workers", "0", "--batch-size", "4", "--accumulate", "1"])
    assert result.exit_code == 0, result.stderr
    assert "empty class folder" in result.stderr and "anim.gif" in result.stderr
    left_out = json.load(open(tmp_path / "m" / "finetune.json"))["sources"][0]["left_out"]
    assert left_out[".gif file"] == 1 and left_out["sub-folder (not read)"] == 1


def test_truncated_jpg_and_box_outside_are_unreadable_not_trained_on(tmp_path, run):
    from abawtools import finetuning, visual

    rng = np.random.default_rng(0)
    root = imagedata.image_folder(str(tmp_path / "imgs"), 3, rng, names=("neutral", "happy"))
    path = os.path.join(root, "happy", "0001.jpg")
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])  # cut in half: libjpeg would show a half-grey picture
    assert finetuning.read_image(path) is None
    assert finetuning.read_image(os.path.join(root, "happy", "0000.jpg")) is not None
    index = imagesets.image_folder(root)
    spec = visual.ImageSpec(32)
    dataset = finetuning.ImageDataset(index, spec)
    bad = [i for i in range(len(index)) if not dataset[i][2]]
    assert [index.path(i) for i in bad] == [path]
    index.box[0] = (500, 500, 20, 20)  # wholly outside a 48x48 picture
    assert dataset[0][2] is False
    beit = imagedata.tiny_backbone(str(tmp_path / "beit"), "beit")
    result = run(["finetune", "--model", beit, "--images", root, "-o", tmp_path / "m", "--epochs", "1",
                  "--workers", "0", "--batch-size", "6", "--accumulate", "1"])
    assert result.exit_code == 0, result.stderr
    assert "unreadable images are skipped (the first: " + path in result.stderr
    assert json.load(open(tmp_path / "m" / "finetune.json"))["training"]["unreadable_images_skipped"] == 1


def test_an_image_listed_twice_is_kept_once_or_left_out(tmp_path):
    rng = np.random.default_rng(0)
    fer = imagedata.ferplus(str(tmp_path / "fer"), 7, rng)
    labels = os.path.join(fer, "FER2013Train", "label.csv")
    rows = list(csv.reader(open(labels)))
    rows.append(list(rows[0]))  # the same image and votes again
    other = list(rows[2])  # Disgust
    other[2:12] = ["0", "0", "0", "0", "0", "0", "0", "0", "0", "0"]
    other[2 + 4] = "9"  # the same image, now Anger
    rows.append(other)
    with open(labels, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    index = imagesets.ferplus(fer)
    assert index.dropped["listed twice"] == 1 and index.dropped["listed twice with different labels"] == 2
    assert len(index) == 7 - 1 and rows[2][0] not in [r.decode() for r in index.rel]
    assert rows[2][0] in index.warnings[0]


def test_affectnet_rows_without_a_usable_box_are_left_out(tmp_path):
    rng = np.random.default_rng(0)
    aff = imagedata.affectnet(str(tmp_path / "aff"), 7, rng)
    path = os.path.join(aff, "training.csv")
    rows = list(csv.DictReader(open(path)))
    rows[0]["face_width"] = "nan"
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    index = imagesets.affectnet(aff)
    assert index.dropped["no usable face box"] == 1 and len(index) == 6
    assert len(imagesets.affectnet(aff, precropped=True)) == 7


# ------------------------------------------------------------------ clear messages, not the catch-all
def test_a_text_model_as_model_is_named_not_a_vision_model(tmp_path, run):
    import transformers as tf

    tf.BertModel(tf.BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                               vocab_size=50)).save_pretrained(tmp_path / "bert")
    rng = np.random.default_rng(0)
    for t in range(2):
        imagedata.write_image(str(tmp_path / "v" / f"{t + 1:05d}.jpg"), 0, rng)
    line = _error(run(["extract-visual", tmp_path / "v", "--no-detect", "--model", tmp_path / "bert", "-o",
                       tmp_path / "v.npy"]), "is a bert model", "not a vision model")
    assert "rerun with --debug" not in line


def test_image_size_below_the_patch_is_a_usage_error(tmp_path, run):
    rng = np.random.default_rng(0)
    imgs = imagedata.image_folder(str(tmp_path / "imgs"), 2, rng, names=("neutral", "happy"))
    beit = imagedata.tiny_backbone(str(tmp_path / "beit"), "beit")  # patch 8
    result = run(["finetune", "--model", beit, "--images", imgs, "-o", tmp_path / "m", "--image-size", "4"])
    assert result.exit_code == 2 and "patch" in result.stderr and "Traceback" not in result.stderr


def test_plot_whose_folder_cannot_be_made_fails_before_the_json(tmp_path, run, rng):
    labels = rng.integers(0, 8, 30)
    write_label_file(tmp_path / "t.txt", labels)
    np.save(tmp_path / "p.npy", np.eye(8, dtype=np.float32)[labels])
    (tmp_path / "file").write_text("x")  # a file where the plot's folder would be
    result = run(["score", tmp_path / "p.npy", tmp_path / "t.txt", "-o", tmp_path / "s.json",
                  "--plot", tmp_path / "file" / "report.png"])
    _error(result, "cannot create the folder")
    assert not (tmp_path / "s.json").exists()


def test_an_uncached_hub_id_with_the_hub_unreachable_fails_fast(tmp_path, monkeypatch, run):
    import socket
    import time

    from abawtools import hf

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there: refused at once, like a node without a network
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    hf._REACHABLE.clear()
    rng = np.random.default_rng(0)
    imagedata.write_image(str(tmp_path / "v" / "00001.jpg"), 0, rng)
    start = time.monotonic()
    result = run(["extract-visual", tmp_path / "v", "--no-detect", "--model", "someorg/not-cached", "-o",
                  tmp_path / "v.npy"])
    took = time.monotonic() - start
    _error(result, "not in the local Hugging Face cache", "cannot be reached")
    assert took < 10, took
    hf._REACHABLE.clear()


def test_a_model_without_a_preprocessor_config_says_what_it_assumes(tmp_path, run):
    beit = imagedata.tiny_backbone(str(tmp_path / "beit"), "beit")
    os.unlink(os.path.join(beit, "preprocessor_config.json"))
    rng = np.random.default_rng(0)
    imagedata.write_image(str(tmp_path / "v" / "00001.jpg"), 0, rng)
    result = run(["extract-visual", tmp_path / "v", "--no-detect", "--model", beit, "-o", tmp_path / "v.npy"])
    assert result.exit_code == 0, result.stderr
    assert "no preprocessor_config.json; assuming ImageNet mean/std" in result.stderr


def test_a_ferplus_vote_that_is_not_a_count_names_the_line(tmp_path, run):
    rng = np.random.default_rng(0)
    fer = imagedata.ferplus(str(tmp_path / "fer"), 7, rng)
    path = os.path.join(fer, "FER2013Train", "label.csv")
    rows = list(csv.reader(open(path)))
    rows[3][4] = "nan"
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    beit = imagedata.tiny_backbone(str(tmp_path / "beit"), "beit")
    line = _error(run(["finetune", "--model", beit, "--ferplus", fer, "-o", tmp_path / "m"]), "label.csv:4:")
    assert "vote counts" in line and "rerun with --debug" not in line
