"""Sliding windows over a video (paper §3.6, §4.4): the window index, cutting, soft voting.

Windows are (video, start) references into memory-mapped per-video features, never copies. No
torch here: `abaw window` must start fast.
"""

import csv
import os

import numpy as np

MANIFEST_FIELDS = ("video", "visual", "audio", "labels", "frames", "start", "stop", "valid_fraction")


def window_starts(frames, window, stride):
    """Starts of the windows covering frames 0..T-1: every `stride`, plus one ending exactly at T.

    A video shorter than the window gets one window starting at 0; the model sees the missing
    tail as padding (masked, labelled -1), never a negative start.
    """
    if window < 1 or stride < 1:
        raise ValueError("window and stride must be >= 1")
    if frames <= window:
        return np.zeros(1 if frames > 0 else 0, dtype=np.int64)
    starts = np.arange(0, frames - window + 1, stride, dtype=np.int64)
    if starts[-1] + window < frames:
        starts = np.append(starts, frames - window)
    return starts


def valid_fractions(labels, starts, window, valid=None):
    """Fraction of each window's real frames (padding excluded) that carry a label: `valid`, a
    (T,) bool mask (a track's annotated frames, tasks.Task.valid), else labels not -1."""
    labels = np.asarray(labels)
    valid = labels >= 0 if valid is None else np.asarray(valid, bool)
    c = np.concatenate([[0], np.cumsum(valid)])
    stops = np.minimum(starts + window, len(labels))
    real = np.maximum(stops - starts, 1)
    return (c[stops] - c[starts]) / real


def label_counts(labels, starts, window, num_classes):
    """Per-class count of the valid labels in the windows at `starts`, a frame counted once per
    window covering it (what the loss sees, and what the class weights are computed from)."""
    labels = np.asarray(labels)
    return class_counts(labels, coverage(len(labels), starts, window), num_classes)


def class_counts(labels, cover, num_classes):
    """Per-class count of the valid labels (>= 0), frame t counted cover[t] times."""
    valid = labels >= 0
    return np.bincount(labels[valid], weights=cover[valid], minlength=num_classes).astype(np.int64)


def coverage(frames, starts, window):
    """(T,) how many of the windows at `starts` cover each frame (the loss sees a frame that often)."""
    cover = np.zeros(frames + 1, dtype=np.int64)
    np.add.at(cover, np.minimum(starts, frames), 1)
    np.add.at(cover, np.minimum(np.asarray(starts) + window, frames), -1)
    return np.cumsum(cover)[:frames]


def cut(array, start, length, fill, dtype=np.float32):
    """Rows start .. start+length-1 of `array` (a memmap is fine), `fill` outside 0..len-1."""
    n = len(array)
    lo, hi = max(start, 0), min(start + length, n)
    out = np.full((length,) + array.shape[1:], fill, dtype=dtype)
    if hi > lo:
        out[lo - start : hi - start] = array[lo:hi]
    return out


def present_rows(features):
    """True where a frame has a usable feature vector (any NaN in a row = missing)."""
    return np.isfinite(features).all(axis=-1)


def soft_vote(window_logits, starts, frames):
    """Mean of the logits of every window covering each frame -> (T, C)."""
    window_logits = np.asarray(window_logits, dtype=np.float64)
    n, W, C = window_logits.shape
    sums = np.zeros((frames, C))
    counts = np.zeros(frames)
    for logit, s in zip(window_logits, starts):
        stop = min(s + W, frames)
        sums[s:stop] += logit[: stop - s]
        counts[s:stop] += 1
    return (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)


# ----------------------------------------------------------------------------- manifests
def write_manifest(fh, rows):
    writer = csv.writer(fh, lineterminator="\n")
    writer.writerow(MANIFEST_FIELDS)
    for row in rows:
        writer.writerow([row[k] if k != "valid_fraction" else f"{row[k]:.4f}" for k in MANIFEST_FIELDS])


def read_manifest(path):
    """Rows as dicts with int start/stop/frames; paths relative to the manifest's folder resolved.
    A hand-edited row that cannot be a window is one line naming the manifest, the line and the column."""
    from abawtools.errors import AbawError
    from abawtools.formats import open_text

    try:
        with open_text(path) as fh:
            reader = csv.DictReader(fh)
            missing = set(MANIFEST_FIELDS) - set(reader.fieldnames or ())
            if missing:
                raise AbawError(f"{path}: not a window manifest (missing columns: {', '.join(sorted(missing))})")
            base = os.path.dirname(os.path.abspath(path))
            rows = [_manifest_row(row, f"{path}:{lineno}", base) for lineno, row in enumerate(reader, start=2)]
    except FileNotFoundError:
        raise AbawError(f"{path}: no such manifest") from None
    if not rows:
        raise AbawError(f"{path}: manifest has no windows")
    return rows


def _manifest_row(row, where, base):
    from abawtools.errors import AbawError

    for k in ("frames", "start", "stop", "valid_fraction"):
        try:
            row[k] = float(row[k]) if k == "valid_fraction" else int(row[k])
        except (TypeError, ValueError):
            raise AbawError(f"{where}: column '{k}': expected a number, got {row[k]!r}") from None
    if not 0 <= row["start"] < row["stop"]:
        raise AbawError(f"{where}: columns 'start'/'stop': {row['start']}/{row['stop']} is not a window "
                        "(0 <= start < stop)")
    if row["frames"] < 1 or row["start"] >= row["frames"]:
        raise AbawError(f"{where}: column 'frames': {row['frames']} leaves no frame from start {row['start']}")
    for k in ("visual", "labels"):
        if not (row[k] or "").strip():
            raise AbawError(f"{where}: column '{k}' is empty (a training window needs its {k} file)")
    for k in ("visual", "audio", "labels"):
        if row[k] and not os.path.isabs(row[k]):
            row[k] = os.path.join(base, row[k])
    return row
