"""The real set (tests/data/real, README there): real faces, as they are and rolled, dark, small
in a real scene, or covered; and real pictures without a human face (letters, logos, a drawing,
an animal, objects, textures), whole and each quarter enlarged."""

import glob
import os

import cv2
import numpy as np

REAL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "real")



def backgrounds():
    return [cv2.imread(p) for p in sorted(glob.glob(os.path.join(REAL, "noface", "*.jpg")))[:4]]


def positives():
    """(name, frame) of real faces: each portrait as it is, rolled 30 deg, dark, small in a real scene, covered."""
    out = []
    bgs = backgrounds()
    for k, path in enumerate(sorted(glob.glob(os.path.join(REAL, "faces", "*")))):
        img = cv2.imread(path)
        name = os.path.basename(path)
        h, w = img.shape[:2]
        out.append((name, img))
        M = cv2.getRotationMatrix2D((w / 2, h / 2), 30, 1.0)
        out.append((name + " rolled 30", cv2.warpAffine(img, M, (w, h), borderMode=cv2.BORDER_REFLECT)))
        out.append((name + " dark", (img * 0.35).astype(np.uint8)))
        bg = cv2.resize(bgs[k % len(bgs)], (640, 480))
        small = cv2.resize(img, None, fx=0.75, fy=0.75, interpolation=cv2.INTER_AREA)
        bg[100 : 100 + small.shape[0], 200 : 200 + small.shape[1]] = small
        out.append((name + " small in a scene", bg))
        cov = img.copy()
        cov[int(h * 0.55) : int(h * 0.75), int(w * 0.3) : int(w * 0.7)] = (150, 170, 200)  # a skin-coloured patch
        out.append((name + " mouth covered", cov))
    return out


def negatives():
    out = []
    for path in sorted(glob.glob(os.path.join(REAL, "noface", "*"))):
        img = cv2.imread(path)
        name = os.path.basename(path)
        out.append((name, img))
        h, w = img.shape[:2]
        for q, (y, x) in enumerate(((0, 0), (0, w // 2), (h // 2, 0), (h // 2, w // 2))):  # each quarter, enlarged
            quarter = img[y : y + h // 2, x : x + w // 2]
            out.append((f"{name} quarter {q}", cv2.resize(quarter, (w, h), interpolation=cv2.INTER_CUBIC)))
    return out
