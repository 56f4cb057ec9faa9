"""Per-video features opened as memory maps, and batches of windows cut from them on the fly."""

import os

import numpy as np

from abawtools import annotations, formats, windows
from abawtools.errors import AbawError

NO_AUDIO_DIM = 1  # the audio width of a model trained without any audio (every audio frame missing)


class Video:
    """One video's visual (T, Dv) and aligned audio (T, Da) features, and optionally its labels.

    Features are read with pread (float16 or float32 on disk). T is the label count when labels
    are given (the annotation decides, as in Aff-Wild2), else the visual row count; features of
    any other length are an error (formats.check_length), never padded or cut silently.
    An empty audio path means the video has no audio track: every audio frame is missing.
    """

    def __init__(self, vid, visual_path, audio_path, labels_path=None, audio_dim=None):
        self.vid = vid
        self.labels_path = labels_path
        self.visual = _open_features(visual_path)
        if audio_path:
            self.audio = _open_features(audio_path)
        else:
            if audio_dim is None:  # a data set without audio (s-Aff-Wild2): one stand-in column, never present
                audio_dim = NO_AUDIO_DIM
            self.audio = np.full((0, audio_dim), np.nan, np.float32)
        self.task, self.labels = annotations.read_ref(labels_path, len(self.visual)) if labels_path else (None, None)
        self.frames = len(self.labels) if self.labels is not None else len(self.visual)
        formats.check_length(vid, f"visual features {visual_path}", len(self.visual), self.frames)
        if audio_path:
            formats.check_length(vid, f"aligned audio {audio_path}", len(self.audio), self.frames)

    @property
    def dims(self):
        return self.visual.shape[1], self.audio.shape[1]


def open_videos(rows):
    """{(visual, audio, labels): Video} for the distinct videos of manifest rows, in first-seen order."""
    videos = {}
    for row in rows:
        key = (row["visual"], row["audio"], row["labels"])
        if key not in videos:
            videos[key] = Video(row["video"], row["visual"], row["audio"], row["labels"])
    return videos


class NpyRows:
    """Row slices of a 2-D NPY file read with pread: random windows without loading the file.

    np.memmap would do the same, but every page it touches stays in the process's resident set
    (a training epoch touches all of Aff-Wild2's features, gigabytes); pread leaves them to the
    page cache, so peak RSS stays at the batch size, not the data set size.
    """

    def __init__(self, path):
        self.shape, self.dtype, self.offset = formats.npy_header(path)
        self.path = path
        self.ndim = len(self.shape)
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self.fd = os.open(path, os.O_RDONLY)

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, index):
        if not isinstance(index, slice):
            raise TypeError("NpyRows supports row slices only")
        lo, hi, step = index.indices(self.shape[0])
        if step != 1:
            raise TypeError("NpyRows supports contiguous row slices only")
        n = max(hi - lo, 0)
        buf = os.pread(self.fd, n * self.row_bytes, self.offset + lo * self.row_bytes)
        return np.frombuffer(buf, dtype=self.dtype).reshape((n,) + self.shape[1:])

    def __del__(self):
        fd = getattr(self, "fd", None)
        if fd is not None:
            os.close(fd)


def _open_features(path):
    parts = formats.feature_files(path) if path != "-" else [path]
    if len(parts) > 1:
        formats.feature_rows(path)  # the same T in every part, or one line naming them
        return JoinedRows([_open_features(p) for p in parts])
    if path != "-" and not os.path.exists(path):
        raise AbawError(f"{path}: no such file")
    arr = formats.read_npy(path) if path == "-" else NpyRows(path)
    formats.check_features(path, arr.shape, arr.dtype)
    return arr


class JoinedRows:
    """Several (T, D_i) feature files side by side: row slices of (T, sum D_i). A frame is a face
    only where every part has it (a NaN in any part makes the row missing)."""

    def __init__(self, parts):
        self.parts = parts
        self.dtype = np.result_type(*[p.dtype for p in parts])
        self.shape = (len(parts[0]), sum(p.shape[1] for p in parts))
        self.ndim = 2

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, index):
        return np.concatenate([np.asarray(p[index], self.dtype) for p in self.parts], axis=1)


def cut_batch(items, window, audio_context=0):
    """Stack windows [(video, start), ...] into numpy arrays for the model.

    Returns visual (B, W, Dv), audio (B, W + 2c, Da), their presence masks, labels (B, W) (VA:
    (B, W, 2), AU: (B, W, 12)) with the task's invalid mark on padding; missing rows are zero in the feature arrays (the model masks them anyway).
    """
    c = audio_context
    visual, audio, labels = [], [], []
    for video, start in items:
        end = min(start + window, video.frames)  # frames past T (padding) are missing everywhere
        v = windows.cut(video.visual[:end], start, window, np.nan)
        a = windows.cut(video.audio[: min(end + c, video.frames)], start - c, window + 2 * c, np.nan)
        visual.append(v)
        audio.append(a)
        if video.labels is not None:  # padding past T: the task's invalid mark (-1; VA -5)
            labels.append(windows.cut(video.labels, start, window, video.task.padding(), dtype=video.task.label_dtype))
    visual = np.stack(visual)
    audio = np.stack(audio)
    v_mask = windows.present_rows(visual)
    a_mask = windows.present_rows(audio)
    visual[~v_mask] = 0.0
    audio[~a_mask] = 0.0
    out = {"visual": visual, "audio": audio, "visual_mask": v_mask, "audio_mask": a_mask}
    if labels:
        out["labels"] = np.stack(labels)
    return out


def feature_stats(arrays, chunk=8192):
    """Per-dimension mean and std over the present rows of several (T, D) arrays (float64 sums)."""
    total = None
    for arr in arrays:
        for lo in range(0, len(arr), chunk):
            x = np.asarray(arr[lo : lo + chunk], dtype=np.float64)
            x = x[np.isfinite(x).all(axis=1)]
            if total is None:
                total = [0, np.zeros(arr.shape[1]), np.zeros(arr.shape[1])]
            total[0] += len(x)
            total[1] += x.sum(axis=0)
            total[2] += (x * x).sum(axis=0)
    if total is None or total[0] == 0:
        dim = arrays[0].shape[1] if arrays else 0
        return np.zeros(dim, np.float32), np.ones(dim, np.float32)
    n, s, ss = total
    mean = s / n
    std = np.sqrt(np.maximum(ss / n - mean * mean, 0.0))
    return mean.astype(np.float32), np.maximum(std, 1e-5).astype(np.float32)
