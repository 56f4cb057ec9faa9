"""The real set (tests/data/real, README there): real faces, as they are and rolled, dark, small
in a real scene, or covered; real pictures without a human face (letters, logos, a drawing,
animals, objects, textures), whole and each quarter enlarged; and drawn ones: cartoon characters
(each on white, its head close up, and on a cartoon background) and title cards (words in a
cartoon's fonts, outlined, on those backgrounds)."""

import glob
import os

import cv2
import numpy as np

REAL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "real")
CARTOON = os.path.join(REAL, "cartoon")


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


def _cartoon_backgrounds():
    return [cv2.imread(p) for p in sorted(glob.glob(os.path.join(CARTOON, "backgrounds", "*.jpg")))]


def cartoons():
    """(name, frame) of drawn characters: each sprite on white, its head (top half) close up, and
    enlarged on a cartoon background (as a title sequence shows them)."""
    out = []
    bgs = _cartoon_backgrounds()
    for k, path in enumerate(sorted(glob.glob(os.path.join(CARTOON, "sprites", "*.png")))):
        rgba = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        alpha = rgba[:, :, 3:4] / 255.0
        on_white = (rgba[:, :, :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
        name = os.path.basename(path)
        h, w = on_white.shape[:2]
        out.append((name + " on white", cv2.copyMakeBorder(on_white, 20, 20, 20, 20, cv2.BORDER_CONSTANT,
                                                          value=(255, 255, 255))))
        out.append((name + " head", cv2.resize(on_white[: h // 2], (320, int(320 * (h // 2) / w)))))
        frame = bgs[k % len(bgs)].copy()
        scale = min(2.5, 330 / h, 400 / w)
        size = (int(w * scale), int(h * scale))
        big, a = cv2.resize(rgba[:, :, :3], size), cv2.resize(rgba[:, :, 3], size)[:, :, None] / 255.0
        region = frame[20 : 20 + size[1], 200 : 200 + size[0]]
        region[:] = (big * a + region * (1 - a)).astype(np.uint8)
        out.append((name + " on a background", frame))
    return out


TITLE_COLOURS = (((0, 140, 255), (0, 20, 60)), ((0, 200, 255), (0, 20, 60)), ((255, 255, 255), (60, 20, 0)),
                 ((40, 60, 230), (0, 0, 40)))  # BGR letter and outline: orange, yellow, white, red


def titles():
    """(name, frame) of title cards: each word mask coloured and laid on a cartoon background."""
    out = []
    bgs = _cartoon_backgrounds()
    for k, path in enumerate(sorted(glob.glob(os.path.join(CARTOON, "titles", "*.png")))):
        mask = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
        frame = bgs[k % len(bgs)].copy()
        letter, outline = TITLE_COLOURS[k % len(TITLE_COLOURS)]
        frame[mask == 128] = outline
        frame[mask == 255] = letter
        out.append((os.path.basename(path), frame))
    return out
