"""Synthetic, class-separable face images in the layouts `abaw finetune` reads, and tiny backbones.

Class c is the fixture face with the demo's class-specific bar (a stand-in for an expression),
randomly shifted, scaled in brightness and noised, so a model has something to learn and an
untuned one scores near chance.
"""

import csv
import os

import numpy as np
from conftest import FACE_PNG, write_label_file

from abawtools import CLASSES, demo
from abawtools.demo import expression_overlay, load_face

SIZE = 48
_FACE = {}


def face_image(label, rng, size=SIZE):
    import cv2

    if size not in _FACE:
        _FACE[size] = load_face(FACE_PNG, size=size + 8)
    img = expression_overlay(_FACE[size], int(label))
    # the demo's bar is 1-2 px at this size: a thick one in the same direction, so a tiny model learns
    w = size + 8
    angle = np.pi * int(label) / len(CLASSES)
    dx, dy = int(0.3 * w * np.cos(angle)), int(0.3 * w * np.sin(angle))
    cv2.line(img, (w // 2 - dx, w // 2 - dy), (w // 2 + dx, w // 2 + dy), (10, 10, 10), max(3, w // 8))
    dx, dy = rng.integers(0, 9, size=2)
    img = img[dy : dy + size, dx : dx + size].astype(np.float32)
    img = img * rng.uniform(0.8, 1.2) + rng.normal(0, 6, img.shape)
    return cv2.resize(np.clip(img, 0, 255).astype(np.uint8), (size, size))


def write_image(path, label, rng, size=SIZE):
    import cv2

    os.makedirs(os.path.dirname(path), exist_ok=True)
    cv2.imwrite(str(path), face_image(label, rng, size))


def image_folder(root, per_class, rng, names=("neutral", "angry", "disgust", "fear", "happy", "sad", "surprised")):
    for cls, name in enumerate(names):
        for i in range(per_class):
            write_image(os.path.join(root, name, f"{i:04d}.jpg"), cls, rng)
    return root


def rafdb(root, n, rng):
    """RAF-DB basic: EmoLabel/list_patition_label.txt (1 Surprise ... 7 Neutral), Image/aligned."""
    raf_of_abaw = {6: 1, 3: 2, 2: 3, 4: 4, 5: 5, 1: 6, 0: 7}
    os.makedirs(os.path.join(root, "EmoLabel"), exist_ok=True)
    lines = []
    for i in range(n):
        split = "train" if i % 5 else "test"
        cls = i % 7
        name = f"{split}_{i:05d}.jpg"
        write_image(os.path.join(root, "Image", "aligned", f"{split}_{i:05d}_aligned.jpg"), cls, rng)
        lines.append(f"{name} {raf_of_abaw[cls]}\n")
    with open(os.path.join(root, "EmoLabel", "list_patition_label.txt"), "w") as fh:
        fh.writelines(lines)
    return root


def ferplus(root, n, rng):
    """FERPlus FER2013Train/label.csv: name, box, 10 vote columns; plus a tie and a contempt row."""
    folder = os.path.join(root, "FER2013Train")
    order = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF"]
    col_of_abaw = {0: 0, 4: 1, 6: 2, 5: 3, 1: 4, 2: 5, 3: 6}
    rows = []
    for i in range(n):
        cls = i % 7
        votes = [0] * 10
        votes[col_of_abaw[cls]] = 7
        votes[(col_of_abaw[cls] + 1) % 7] = 3
        name = f"fer{i:07d}.png"
        write_image(os.path.join(folder, name), cls, rng)
        rows.append([name, "(0, 0, 48, 48)", *votes])
    rows.append(["fertie.png", "(0, 0, 48, 48)", 5, 5, 0, 0, 0, 0, 0, 0, 0, 0])
    rows.append(["fercontempt.png", "(0, 0, 48, 48)", 1, 0, 0, 0, 0, 0, 0, 9, 0, 0])
    with open(os.path.join(folder, "label.csv"), "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    assert len(order) == 10
    return root


def affectnet(root, n, rng):
    """AffectNet training.csv; each face pasted at its box inside a larger grey image; 7-10 rows too."""
    import cv2

    abaw_to_affectnet = {0: 0, 4: 1, 5: 2, 6: 3, 3: 4, 2: 5, 1: 6}
    rows = []
    for i in range(n):
        cls = i % 7
        x, y = int(rng.integers(0, 40)), int(rng.integers(0, 40))
        canvas = np.full((120, 120, 3), 128, np.uint8)
        canvas[y : y + SIZE, x : x + SIZE] = face_image(cls, rng)
        rel = f"{i % 3}/img{i:05d}.jpg"
        path = os.path.join(root, "Manually_Annotated_Images", rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        cv2.imwrite(path, canvas)
        rows.append({"subDirectory_filePath": rel, "face_x": x, "face_y": y, "face_width": SIZE, "face_height": SIZE,
                     "facial_landmarks": "", "expression": abaw_to_affectnet[cls], "valence": 0, "arousal": 0})
    for value in (7, 8, 9, 10):
        rows.append({"subDirectory_filePath": f"0/x{value}.jpg", "face_x": 0, "face_y": 0, "face_width": 10,
                     "face_height": 10, "facial_landmarks": "", "expression": value, "valence": 0, "arousal": 0})
    with open(os.path.join(root, "training.csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


def affwild2(root, videos, rng, frames=(40, 70), split="Train_Set"):
    """cropped_aligned/ID/%05d.jpg with holes, labels 3-12 frames longer than the last jpg, -1 frames."""
    labels_dir = os.path.join(root, "EXPR_Recognition_Challenge", split)
    os.makedirs(labels_dir, exist_ok=True)
    for vid in videos:
        T = int(rng.integers(*frames))
        labels = np.repeat(rng.integers(0, 8, size=T // 10 + 1), 10)[:T]
        labels[rng.random(T) < 0.05] = -1
        last = T - int(rng.integers(3, 13))
        for t in range(last):
            if rng.random() < 0.1:
                continue  # a hole: no face found in that frame
            write_image(os.path.join(root, "cropped_aligned", vid, f"{t + 1:05d}.jpg"), max(labels[t], 0), rng)
        write_label_file(os.path.join(labels_dir, f"{vid}.txt"), labels)
    return os.path.join(root, "cropped_aligned"), labels_dir


def tiny_backbone(path, kind="beit", image=32):
    return demo.tiny_backbone(path, kind, image)
