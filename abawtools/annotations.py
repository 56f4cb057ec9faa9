"""Multi-task labels in their two shapes, as per-video (T, 15) arrays (abawtools.multitask's layout):

- s-Aff-Wild2 as it ships: one file per split (`training_set_annotations.txt`,
  `validation_set_annotations.txt`), header `image,valence,arousal,expression,aus`, one line per
  selected frame `VIDEO/00001.jpg,v,a,e,AU1,...,AU26` (16 fields; -5 valence/arousal not
  annotated, -1 an expression or the AUs). A video's timeline has gaps: a frame not listed is
  unannotated in every task. An identical duplicate line is kept once (said); two lines for one
  image that disagree are an error naming both line numbers.
- the full Aff-Wild2: the three tracks' per-video folders (EXPR, VA, AU; different, overlapping
  videos), joined by video and frame.

A window manifest names a video's labels by a reference `labels` column: a plain annotation file
(one track), `FILE::VIDEO` (a video of an s-Aff-Wild2 file) or `A|B|C` (one video's files of
several tracks, joined; `A|` when one track alone names the video); read_ref reads any of them.
"""

import os
from functools import lru_cache

import numpy as np

from abawtools import formats, tasks
from abawtools.errors import AbawError

HEADER = tasks.MTL.submission_header  # the organisers' layout of the annotation files and the submission


def read_ref(ref, frames=None):
    """(task, labels) of a manifest's labels reference; an s-Aff-Wild2 video's labels run to
    `frames` (its features' rows) when those are longer than its last listed frame."""
    ref = str(ref)
    if "::" in ref:
        path, vid = ref.rsplit("::", 1)
        videos = read_file(path)[0]
        if vid not in videos:
            raise AbawError(f"{path}: no line for video {vid}")
        labels = videos[vid]
        if frames is not None and frames > len(labels):
            labels = pad(labels, frames)
        return tasks.MTL, labels
    if "|" in ref:  # `A|B|C`, or `A|` for a video that one track alone names
        paths = [p for p in ref.split("|") if p]
        return tasks.MTL, join([formats.read_annotation(p) for p in paths], paths, frames)
    return formats.read_annotation(ref)


def ref_files(ref):
    """The files a labels reference reads (for a run's fingerprint)."""
    ref = str(ref)
    if "::" in ref:
        return [ref.rsplit("::", 1)[0]]
    return [p for p in ref.split("|") if p]


def pad(labels, frames):
    """Labels run on to `frames` rows, the new ones unannotated."""
    out = unannotated(frames)
    out[: len(labels)] = labels
    return out


def unannotated(frames):
    """(frames, 15) multi-task labels with no task annotated anywhere."""
    out = np.empty((frames, len(tasks.MTL.columns)), np.float32)
    out[:] = tasks.MTL.padding()
    return out


def read_file(path):
    """({video: (T, 15) labels}, notes) of an s-Aff-Wild2 annotation file (cached: the manifest
    names it once per video)."""
    st = os.stat(path)
    return _read_file(os.path.realpath(path), st.st_size, st.st_mtime_ns, path)


@lru_cache(maxsize=8)
def _read_file(real, size, mtime, name):
    with formats.open_text(real) as fh:
        lines = fh.read().splitlines()
    if not lines or lines[0].replace(" ", "").strip().lower() != HEADER:
        raise AbawError(f"{name}:1: expected the s-Aff-Wild2 header '{HEADER}', got '{(lines or [''])[0][:80]}'")
    from abawtools.submission import parse_image_location

    by_video, where, duplicates = {}, {}, []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split(",")
        vid, frame = parse_image_location(fields[0], name, lineno)
        if len(fields) != 16:
            raise AbawError(f"{name}:{lineno}: expected 16 comma-separated values (image, valence, arousal, "
                            f"expression, 12 AUs), got {len(fields)}")
        values = tuple(tasks.MTL.parse([",".join(fields[1:])], f"{name} (line {lineno})")[0].tolist())
        seen = by_video.setdefault(vid, {})
        if frame in seen:
            if seen[frame] != values:
                raise AbawError(f"{name}:{lineno}: {fields[0].strip()} is annotated differently here and on line "
                                f"{where[vid, frame]}")
            duplicates.append(lineno)
            continue
        seen[frame] = values
        where[vid, frame] = lineno
    if not by_video:
        raise AbawError(f"{name}: no annotated frame")
    videos = {}
    for vid, frames in by_video.items():
        labels = unannotated(max(frames))
        for frame, values in frames.items():
            labels[frame - 1] = values
        videos[vid] = labels
    notes = []
    if duplicates:
        notes.append(f"{name}: {len(duplicates)} line(s) repeat an earlier line exactly and are read once "
                     f"(the first: line {duplicates[0]})")
    return videos, notes


def join(read, names, frames=None):
    """One video's annotations of several tracks [(task, labels)] -> (T, 15) multi-task labels;
    T the longest (a track's file that ends earlier: its frames after are unannotated)."""
    seen = {}
    for (task, _), name in zip(read, names):
        if task is tasks.MTL:
            raise AbawError(f"{name}: already a multi-task file; join the single tracks' folders")
        if task.name in seen:
            raise AbawError(f"{name} and {seen[task.name]} are both {task.name.upper()} annotations of one video")
        seen[task.name] = name
    T = max([len(labels) for _, labels in read] + [frames or 0])
    out = unannotated(T)
    for task, labels in read:
        head = tasks.MTL.head_of(task)
        out[: len(labels), head.lab] = labels
    return out


def track_folders(label_dirs):
    """{video: [its annotation file in each folder]} for several folders of different tracks (the
    full Aff-Wild2's EXPR, VA and AU sets), each folder of one track; every video of any folder."""
    videos, named = {}, {}
    for folder in label_dirs:
        files = sorted(f for f in os.listdir(folder) if f.endswith(".txt"))
        if not files:
            raise AbawError(f"{folder}: no .txt label files")
        task = formats.read_annotation(os.path.join(folder, files[0]))[0]
        if task.name in named:
            raise AbawError(f"--label-dir {folder} and {named[task.name]} are both {task.name.upper()} folders: "
                            "give one folder per track")
        named[task.name] = folder
        for f in files:
            videos.setdefault(formats.video_id(f), []).append(os.path.join(folder, f))
    return videos
