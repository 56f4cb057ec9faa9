"""Labelled face images for `abaw finetune`, read from the files the data sets ship with.

Every source becomes an `ImageIndex`: flat numpy arrays (path part, label, optional face box), no
Python object per image, so Aff-Wild2's 2.7 M frames fit in tens of MB. Labels are ABAW class
ids (0 Neutral, 1 Anger, 2 Disgust, 3 Fear, 4 Happiness, 5 Sadness, 6 Surprise, 7 Other).
Whatever a source leaves out is counted by reason, never dropped silently.
"""

import csv
import os
import re
from collections import Counter

import numpy as np

from abawtools import CLASSES, formats, frames, tasks
from abawtools.errors import AbawError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")  # what cv2.imread reads
DROP = -1  # a label that is counted and left out

# --images folder names (lower case, letters only) -> ABAW id; DROP for classes ABAW does not have
FOLDER_NAMES = {
    **dict.fromkeys(("neutral", "neutrality", "calm"), 0),
    **dict.fromkeys(("anger", "angry", "mad"), 1),
    **dict.fromkeys(("disgust", "disgusted", "disgusting"), 2),
    **dict.fromkeys(("fear", "fearful", "afraid", "scared"), 3),
    **dict.fromkeys(("happiness", "happy", "joy", "smile", "happily"), 4),
    **dict.fromkeys(("sadness", "sad", "unhappy"), 5),
    **dict.fromkeys(("surprise", "surprised", "surprising"), 6),
    **dict.fromkeys(("other", "others"), 7),
    **dict.fromkeys(("contempt", "unknown", "none", "uncertain", "noface", "notaface", "nf"), DROP),
}
# RAF-DB basic, EmoLabel/list_patition_label.txt: 1 Surprise, 2 Fear, 3 Disgust, 4 Happiness,
# 5 Sadness, 6 Anger, 7 Neutral
RAFDB = {1: 6, 2: 3, 3: 2, 4: 4, 5: 5, 6: 1, 7: 0}
# FERPlus label.csv vote columns, in order (after the image name and the face box)
FERPLUS_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt",
                   "unknown", "NF")
FERPLUS = {"neutral": 0, "happiness": 4, "surprise": 6, "sadness": 5, "anger": 1, "disgust": 2, "fear": 3}
# AffectNet `expression`: 0 Neutral, 1 Happy, 2 Sad, 3 Surprise, 4 Fear, 5 Disgust, 6 Anger,
# 7 Contempt, 8 None, 9 Uncertain, 10 No-Face (7-10 are not ABAW classes)
AFFECTNET = {0: 0, 1: 4, 2: 5, 3: 6, 4: 3, 5: 2, 6: 1}
AFFECTNET_NAMES = {7: "contempt", 8: "none", 9: "uncertain", 10: "no-face"}


class ImageIndex:
    """Images as arrays: `roots[root[i]] / rel[i]`, label[i], box[i] (x, y, w, h; -1 = whole image).

    `video[i]` numbers the Aff-Wild2 video an image comes from (-1 for static images) and
    `frame[i]` its frame index, so validation can put predictions back on the video's time line.
    """

    def __init__(self, name, roots, root, rel, label, box=None, video=None, frame=None, dropped=None,
                 videos=None, warnings=None, task=None, target=None):
        n = len(label)
        self.name = name
        self.roots = list(roots)
        self.root = np.asarray(root, np.int32).reshape(n)
        # names as the file system's bytes (os.fsencode): any name it holds (UTF-8, spaces) round-trips
        if not isinstance(rel, np.ndarray) or rel.dtype.kind != "S":
            rel = [os.fsencode(r) if isinstance(r, str) else bytes(r) for r in rel]
        self.rel = np.asarray(rel, dtype=np.bytes_).reshape(n)
        self.label = np.asarray(label, np.int8).reshape(n)
        self.box = np.full((n, 4), -1, np.int32) if box is None else np.asarray(box, np.int32).reshape(n, 4)
        self.video = np.full(n, -1, np.int32) if video is None else np.asarray(video, np.int32).reshape(n)
        self.frame = np.full(n, -1, np.int32) if frame is None else np.asarray(frame, np.int32).reshape(n)
        self.videos = list(videos or [])  # (id, label array) per Aff-Wild2 video, for validation
        self.dropped = Counter(dropped or {})
        self.warnings = list(warnings or [])  # what changes what is trained on, said by name
        # the track (abawtools.tasks): EXPR labels in `label`; VA / AU rows (n, 2 | 12) in `target`
        self.task = task or tasks.EXPR
        self.target = None if target is None else np.asarray(target, np.float32).reshape((n,) + self.task.label_shape)

    def __len__(self):
        return len(self.label)

    def path(self, i):
        return os.path.join(self.roots[self.root[i]], os.fsdecode(self.rel[i]))

    def counts(self, num_classes=len(CLASSES)):
        return np.bincount(self.label[self.label >= 0], minlength=num_classes)[:num_classes]

    @property
    def nbytes(self):
        return sum(a.nbytes for a in (self.root, self.rel, self.label, self.box, self.video, self.frame))

    @classmethod
    def concat(cls, parts, name="all"):
        if not parts:
            raise AbawError("no training images: give at least one source (--images, --rafdb, --ferplus, "
                            "--affectnet, --affwild2)")
        roots, root, videos, video = [], [], [], []
        for p in parts:
            root.append(p.root + len(roots))
            roots += p.roots
            video.append(np.where(p.video >= 0, p.video + len(videos), -1))
            videos += p.videos
        dropped = Counter()
        for p in parts:
            dropped.update({f"{p.name}: {k}": v for k, v in p.dropped.items()})
        task = tasks.one_task({p.name: p.task for p in parts}, "the sources")
        target = np.concatenate([p.target for p in parts]) if task is not tasks.EXPR else None
        return cls(name, roots, np.concatenate(root), np.concatenate([p.rel for p in parts]),
                   np.concatenate([p.label for p in parts]), np.concatenate([p.box for p in parts]),
                   np.concatenate(video), np.concatenate([p.frame for p in parts]), dropped, videos,
                   [w for p in parts for w in p.warnings], task, target)


def _require(path, what):
    if not os.path.exists(path):
        raise AbawError(f"{path}: no such {what}")
    return path


def _empty_check(index, source):
    if len(index) == 0:
        reasons = ", ".join(f"{k}: {v}" for k, v in index.dropped.items()) or "no images found"
        raise AbawError(f"{source}: no usable labelled image ({reasons})")
    return index


# ----------------------------------------------------------------------------- folders
def folder_class(name):
    """ABAW id for an --images class folder (DROP for contempt/unknown); an unknown name is an error."""
    key = re.sub(r"[^a-z]", "", name.lower())
    if key in FOLDER_NAMES:
        return FOLDER_NAMES[key]
    raise AbawError(f"--images: class folder {name!r} maps to no ABAW class (name folders like "
                    f"{', '.join(c.lower() for c in CLASSES)}, or angry/happy/sad/surprised/...)")


def image_folder(root):
    """--images DIR: DIR/<class name>/*.jpg; contempt/unknown folders are counted and left out, and
    so is everything in a class folder that is not an image file of a kind read (other files,
    sub-folders, broken links), by reason, with a warning naming the first; an empty class
    folder is said."""
    _require(root, "folder")
    classes = sorted(d.name for d in os.scandir(root) if d.is_dir())
    if not classes:
        raise AbawError(f"--images {root}: no class sub-folders (DIR/happy/*.jpg, DIR/sad/*.jpg, ...)")
    rel, label, dropped, warnings = [], [], Counter(), []
    for name in classes:
        cls = folder_class(name)
        files, other = [], Counter()
        first = {}
        for entry in sorted(os.scandir(os.path.join(root, name)), key=lambda e: e.name):
            kind = _entry_kind(entry)
            if kind == "image":
                files.append(entry.name)
            else:
                other[kind] += 1
                first.setdefault(kind, entry.name)
        for kind, n in other.items():
            dropped[kind] += n
            warnings.append(f"{root}/{name}: {n} {kind}(s) left out (e.g. {first[kind]})")
        if not files and not other:
            warnings.append(f"{root}/{name}: empty class folder")
        if cls == DROP:
            dropped[f"class folder {name}"] += len(files)
            continue
        rel += [f"{name}/{f}" for f in files]
        label += [cls] * len(files)
    return _empty_check(ImageIndex(f"images {root}", [root], np.zeros(len(rel)), rel, label, dropped=dropped,
                                   warnings=warnings), f"--images {root}")


def _entry_kind(entry):
    """What an entry of a class folder is: "image" (a file of a kind read), or why it is left out."""
    try:
        if entry.is_dir():
            return "sub-folder (not read)"
        if not entry.is_file():
            return "broken link or special file"
    except OSError:  # a symlink loop
        return "broken link or special file"
    if entry.name.lower().endswith(IMAGE_EXTS):
        return "image"
    return f"{os.path.splitext(entry.name)[1].lower() or 'extension-less'} file"


def _dedupe(rel, label, box, dropped, warnings, source):
    """Keep each image once: the same path listed twice with one label is kept once; with two
    labels it is left out altogether (which one is right?), and said by name."""
    seen, conflict = {}, set()
    for i, (r, y) in enumerate(zip(rel, label)):
        if r in seen and label[seen[r]] != y:
            conflict.add(r)
        seen.setdefault(r, i)
    keep = []
    for i, r in enumerate(rel):
        if r in conflict:
            dropped["listed twice with different labels"] += 1
        elif seen[r] != i:
            dropped["listed twice"] += 1
        else:
            keep.append(i)
    if conflict:
        warnings.append(f"{source}: {len(conflict)} image(s) listed with two labels left out (e.g. {sorted(conflict)[0]})")
    return [rel[i] for i in keep], [label[i] for i in keep], [box[i] for i in keep] if box is not None else None


# ----------------------------------------------------------------------------- RAF-DB
def rafdb(root, split="train"):
    """--rafdb RAF-DB/basic: EmoLabel/list_patition_label.txt, training images (train_*) only;
    `split="test"` (--val-rafdb): the test_* images only.

    Images from Image/aligned/NAME_aligned.jpg when that folder exists, else Image/original/NAME
    cropped by its face box, Annotation/boundingbox/NAME_boundingbox.txt (`x1 y1 x2 y2`): a whole
    photo is never trained on as if it were a face."""
    labels = _require(os.path.join(root, "EmoLabel", "list_patition_label.txt"), "RAF-DB label file")
    aligned = os.path.isdir(os.path.join(root, "Image", "aligned"))
    boxes = os.path.join(root, "Annotation", "boundingbox")
    if not aligned and not os.path.isdir(boxes):
        raise AbawError(f"{root}: RAF-DB has neither Image/aligned/ nor Annotation/boundingbox/: the photos in "
                        "Image/original are not face crops; unpack the aligned images or the boxes")
    rel, label, box, dropped = [], [], [], Counter()
    with formats.open_text(labels) as fh:
        for lineno, line in enumerate(fh, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or not parts[1].isdigit() or int(parts[1]) not in RAFDB:
                raise AbawError(f"{labels}:{lineno}: expected 'NAME.jpg LABEL' with LABEL 1-7, got {line.strip()!r}")
            name, value = parts[0], int(parts[1])
            if not name.startswith(split):
                dropped["test split" if split == "train" else "training split"] += 1
                continue
            stem, ext = os.path.splitext(name)
            if aligned:
                rel.append(f"aligned/{stem}_aligned{ext}")
                box.append((-1, -1, -1, -1))
            else:
                found = _rafdb_box(os.path.join(boxes, f"{stem}_boundingbox.txt"))
                if found is None:
                    dropped["no face box"] += 1
                    continue
                rel.append(f"original/{name}")
                box.append(found)
            label.append(RAFDB[value])
    warnings = []
    rel, label, box = _dedupe(rel, label, box, dropped, warnings, labels)
    index = ImageIndex(f"RAF-DB {root}" + (" (test split)" if split != "train" else ""), [os.path.join(root, "Image")],
                       np.zeros(len(rel)), rel, label, box=np.array(box, np.int32).reshape(-1, 4), dropped=dropped,
                       warnings=warnings)
    return _empty_check(index, f"--{'val-' if split != 'train' else ''}rafdb {root}")


def _rafdb_box(path):
    """(x, y, w, h) from RAF-DB's `x1 y1 x2 y2` box file, or None when it is missing or unusable."""
    try:
        with formats.open_text(path) as fh:
            x1, y1, x2, y2 = (float(v) for v in fh.read().split()[:4])
    except (OSError, ValueError):
        return None
    if not (x2 > x1 and y2 > y1) or not all(np.isfinite([x1, y1, x2, y2])):
        return None
    return int(round(x1)), int(round(y1)), int(round(x2 - x1)), int(round(y2 - y1))


# ----------------------------------------------------------------------------- FERPlus
FERPLUS_RULES = ("majority", "plurality")


def ferplus_label(votes, rule="majority"):
    """(FERPlus column index, None) or (None, reason it is left out) for one row's 10 vote counts.

    majority (microsoft/FERPlus, src/ferplus.py `_process_data`, mode 'majority', the default):
    single votes are outliers and removed, then the top class needs more than half of the votes
    left. plurality: the most votes, a tie left out."""
    votes = np.asarray(votes, np.float64)
    if rule == "majority":
        votes = np.where(votes < 1.0 + np.finfo(float).eps, 0.0, votes)
        if votes.max() <= 0 or votes.max() <= 0.5 * votes.sum():
            return None, "no majority vote"
        return int(np.argmax(votes)), None
    top = np.flatnonzero(votes == votes.max())
    if votes.max() <= 0:
        return None, "no votes"
    if len(top) > 1:
        return None, "tied vote"
    return int(top[0]), None


def ferplus(root, rule="majority"):
    """--ferplus DIR: DIR/label.csv, or the training folder DIR/FER2013Train/label.csv.

    Rows `image,(x, y, w, h),neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,
    unknown,NF` (votes); the label by `rule` (ferplus_label: the publishers' majority by default);
    a row without one, or whose label is contempt / unknown / not-a-face, is left out."""
    folder = root if os.path.isfile(os.path.join(root, "label.csv")) else os.path.join(root, "FER2013Train")
    labels = _require(os.path.join(folder, "label.csv"), "FERPlus label.csv (DIR/label.csv or DIR/FER2013Train/label.csv)")
    rel, label, dropped = [], [], Counter()
    with formats.open_text(labels) as fh:
        for lineno, row in enumerate(csv.reader(fh), 1):
            if not row or (lineno == 1 and not row[-1].strip().isdigit()):
                continue  # a header line, when there is one
            try:
                votes = np.array([float(v) for v in row[2:12]])
            except ValueError:
                votes = np.array([])
            if len(votes) != 10 or not np.isfinite(votes).all() or (votes < 0).any():
                raise AbawError(f"{labels}:{lineno}: expected an image name, a face box and 10 vote counts "
                                f"(whole numbers >= 0), got {','.join(row[2:12])[:60]!r}")
            column, why = ferplus_label(votes, rule)
            if why:
                dropped[why] += 1
            elif FERPLUS_COLUMNS[column] not in FERPLUS:
                dropped[f"majority {FERPLUS_COLUMNS[column]}"] += 1
            else:
                rel.append(row[0].strip())
                label.append(FERPLUS[FERPLUS_COLUMNS[column]])
    warnings = []
    rel, label, _ = _dedupe(rel, label, None, dropped, warnings, labels)
    index = ImageIndex(f"FERPlus {folder}", [folder], np.zeros(len(rel)), rel, label, dropped=dropped,
                       warnings=warnings)
    return _empty_check(index, f"--ferplus {root}")


# ---------------------------------------------------------------------------- AffectNet
def affectnet(root, precropped=False):
    """--affectnet DIR: DIR/training.csv (subDirectory_filePath, face_x, face_y, face_width,
    face_height, ..., expression), images under DIR/Manually_Annotated_Images/ (else DIR/).
    Expressions 7-10 (contempt, none, uncertain, no-face) are left out. The face box crops each
    image unless `precropped` (the images are already face crops)."""
    labels = _require(os.path.join(root, "training.csv"), "AffectNet training.csv")
    images = os.path.join(root, "Manually_Annotated_Images")
    images = images if os.path.isdir(images) else root
    rel, label, box, dropped = [], [], [], Counter()
    with formats.open_text(labels) as fh:
        reader = csv.DictReader(fh)
        need = {"subDirectory_filePath", "expression"}
        if not need <= set(reader.fieldnames or ()):
            raise AbawError(f"{labels}: needs the columns subDirectory_filePath and expression "
                            f"(has {', '.join(reader.fieldnames or [])})")
        has_box = {"face_x", "face_y", "face_width", "face_height"} <= set(reader.fieldnames)
        for lineno, row in enumerate(reader, 2):
            try:
                value = int(row["expression"])
            except (TypeError, ValueError):
                raise AbawError(f"{labels}:{lineno}: expression {row['expression']!r} is not an integer") from None
            if value not in AFFECTNET:
                dropped[AFFECTNET_NAMES.get(value, f"expression {value}")] += 1
                continue
            b = (-1, -1, -1, -1)
            if has_box and not precropped:
                try:
                    b = tuple(int(float(row[k])) for k in ("face_x", "face_y", "face_width", "face_height"))
                except (TypeError, ValueError, OverflowError):
                    b = (0, 0, 0, 0)
                if b[2] <= 0 or b[3] <= 0:  # the whole picture is not a face crop
                    dropped["no usable face box"] += 1
                    continue
            rel.append(row["subDirectory_filePath"])
            label.append(AFFECTNET[value])
            box.append(b)
    warnings = []
    rel, label, box = _dedupe(rel, label, box, dropped, warnings, labels)
    index = ImageIndex(f"AffectNet {root}", [images], np.zeros(len(rel)), rel, label,
                       box=np.array(box, np.int32).reshape(-1, 4), dropped=dropped, warnings=warnings)
    return _empty_check(index, f"--affectnet {root}")


def shared(parts, val_parts):
    """What validation shares with training: Aff-Wild2 video IDs in both, and still images (by
    path) in both. Sorted names; empty when validation is held out."""
    train_videos = {vid for p in parts for vid, _ in p.videos}
    names = {vid for p in val_parts for vid, _ in p.videos if vid in train_videos}
    still_val = {os.path.normpath(p.path(i)) for p in val_parts if not p.videos for i in range(len(p))}
    if still_val:
        names |= {path for p in parts if not p.videos for path in map(os.path.normpath, map(p.path, range(len(p))))
                  if path in still_val}
    return sorted(names)


# ---------------------------------------------------------------------------- Aff-Wild2
def affwild2(cropped, label_dir, every=1, validation=False):
    """--affwild2 CROPPED_ALIGNED LABEL_DIR: every labelled frame that has a jpg.

    LABEL_DIR/ID.txt is one annotation line per video frame, of any track (EXPR labels; VA and
    AU rows go to the index's `target`, one track per run); frame t is CROPPED_ALIGNED/ID/%05d.jpg
    (t + 1). Frames labelled -1 and frames with no jpg (no face found) are counted and left out;
    `every` keeps every N-th of a video's remaining frames (neighbours are near duplicates).
    `validation`: keep every frame that has a jpg, labelled or not, as `extract-visual --logits`
    would see the video (its faceless frames then take the nearest face frame's prediction).
    """
    _require(cropped, "cropped_aligned folder")
    _require(label_dir, "label folder")
    files = sorted(f for f in os.listdir(label_dir) if f.endswith(".txt"))
    if not files:
        raise AbawError(f"{label_dir}: no label files (ID.txt)")
    roots, root, rel, label, video, frame, videos, dropped = [], [], [], [], [], [], [], Counter()
    warnings, target, named = [], [], {}
    for name in files:
        vid = name[:-4]
        task, labels = formats.read_annotation(os.path.join(label_dir, name))
        named[os.path.join(label_dir, name)] = task
        task = tasks.one_task(named, label_dir)
        annotated = task.valid(labels)
        folder = os.path.join(cropped, vid)
        present = np.zeros(len(labels), bool)
        names = {}
        if os.path.isdir(folder):
            layout = frames.numbered_frames(folder, len(labels))  # extract-visual's reader, its rules
            if layout.note:
                warnings.append(layout.note)
            names = layout.files
            past = sum(t >= len(labels) for t in names)
            if past:
                dropped["jpg past the label file's end"] += past
                warnings.append(f"{folder}: {past} image(s) past the last line of {vid}.txt ({len(labels)} frames) "
                                "left out: is it the right label file?")
            present[[t for t in names if t < len(labels)]] = True
        else:
            dropped["video without a cropped_aligned folder"] += 1
        if validation:  # every jpg is predicted; a labelled frame without one is still scored
            dropped["labelled frame without a jpg (takes the nearest face frame's prediction)"] += \
                int((annotated & ~present).sum())
        else:
            dropped[f"label {task.invalid:g}"] += int((~annotated).sum())
            dropped["labelled frame without a jpg"] += int((annotated & ~present).sum())
        keep = np.flatnonzero(present if validation else annotated & present)
        if every > 1:
            dropped[f"--every {every}"] += len(keep) - len(keep[::every])
            keep = keep[::every]
        roots.append(folder)
        root.append(np.full(len(keep), len(roots) - 1, np.int32))
        rel.append(np.array([os.fsencode(names[t]) for t in keep.tolist()], dtype=np.bytes_).reshape(len(keep)))
        if task is tasks.EXPR:
            label.append(labels[keep])
        else:  # VA / AU: the rows go to `target`; label 0 is a placeholder the loss never reads
            label.append(np.zeros(len(keep), np.int64))
            target.append(labels[keep].astype(np.float32))
        video.append(np.full(len(keep), len(videos), np.int32))
        frame.append(keep.astype(np.int32))
        videos.append((vid, labels))
    if validation and not any(task.valid(labels).any() for _, labels in videos):
        raise AbawError(f"{label_dir}: every frame of its {len(videos)} label file(s) is labelled {task.invalid:g}: "
                        "nothing to validate on")
    index = ImageIndex(f"Aff-Wild2 {label_dir}", roots, np.concatenate(root), np.concatenate(rel),
                       np.concatenate(label), video=np.concatenate(video), frame=np.concatenate(frame),
                       dropped={k: v for k, v in dropped.items() if v}, videos=videos, warnings=warnings,
                       task=task, target=np.concatenate(target) if target else None)
    return _empty_check(index, f"--affwild2 {cropped} {label_dir}")


def saffwild2(cropped, annotation_file, every=1, validation=False):
    """--annotations CROPPED_ALIGNED FILE: s-Aff-Wild2's selected frames with their multi-task
    labels (abawtools.annotations): every listed frame that has a jpg and at least one annotated
    task; `validation` keeps every jpg of the listed videos, as `extract-visual --logits` sees them."""
    from abawtools import annotations

    _require(cropped, "cropped_aligned folder")
    videos_labels, notes = annotations.read_file(_require(annotation_file, "annotation file"))
    task = tasks.MTL
    roots, root, rel, target, video, frame, videos, dropped = [], [], [], [], [], [], [], Counter()
    warnings = list(notes)
    for vid, labels in sorted(videos_labels.items()):
        folder = os.path.join(cropped, vid)
        names = {}
        if os.path.isdir(folder):
            layout = frames.numbered_frames(folder)
            names = layout.files
            if layout.note:
                warnings.append(layout.note)
        else:
            dropped["video without a cropped_aligned folder"] += 1
        if names and max(names) >= len(labels):
            labels = annotations.pad(labels, max(names) + 1)  # jpgs past the last listed frame: unannotated
        present = np.zeros(len(labels), bool)
        present[list(names)] = True
        annotated = task.valid(labels)
        if not validation:
            dropped["listed frame without a jpg"] += int((annotated & ~present).sum())
        keep = np.flatnonzero(present if validation else annotated & present)
        if every > 1 and not validation:
            dropped[f"--every {every}"] += len(keep) - len(keep[::every])
            keep = keep[::every]
        roots.append(folder)
        root.append(np.full(len(keep), len(roots) - 1, np.int32))
        rel.append(np.array([os.fsencode(names[t]) for t in keep.tolist()], dtype=np.bytes_).reshape(len(keep)))
        target.append(labels[keep])
        video.append(np.full(len(keep), len(videos), np.int32))
        frame.append(keep.astype(np.int32))
        videos.append((vid, labels))
    index = ImageIndex(f"s-Aff-Wild2 {annotation_file}", roots, np.concatenate(root), np.concatenate(rel),
                       np.zeros(sum(len(k) for k in frame), np.int64), video=np.concatenate(video),
                       frame=np.concatenate(frame), dropped={k: v for k, v in dropped.items() if v}, videos=videos,
                       warnings=warnings, task=task, target=np.concatenate(target))
    return _empty_check(index, f"--annotations {cropped} {annotation_file}")
