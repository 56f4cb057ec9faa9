"""Temporal post-processing of frame-level predictions (paper §3.6).

All filters are centred (frame t sees t-k//2 .. t+k//2) and extend the sequence by repeating its
first and last frame, so nothing shifts at the edges and no class is invented there (zero padding,
as `scipy.signal.medfilt` does, would pull the ends towards class 0 = Neutral).
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from abawtools import NUM_CLASSES

METHODS = ("median", "median-labels", "mode", "mean")
LOGIT_METHODS = ("median", "mean")  # the methods that produce smoothed logits, not only labels


def check_kernel(k):
    if k < 1 or k % 2 == 0:
        raise ValueError(f"kernel size must be a positive odd number, got {k}")


def _edge_padded(x, k):
    r = k // 2
    return np.pad(x, [(r, r)] + [(0, 0)] * (x.ndim - 1), mode="edge")


def median_filter(x, k):
    """Centred running median along axis 0 of `x` (T,) or (T, C), edges repeated."""
    check_kernel(k)
    if len(x) == 0 or k == 1:
        return np.array(x, copy=True)
    windows = sliding_window_view(_edge_padded(x, k), k, axis=0)  # (T, [C,] k), a view
    return np.partition(windows, k // 2, axis=-1)[..., k // 2]


def mean_filter(x, k):
    """Centred moving average along axis 0, edges repeated (float64 cumulative sums)."""
    check_kernel(k)
    if len(x) == 0 or k == 1:
        return np.array(x, dtype=np.float32, copy=True)
    c = np.cumsum(_edge_padded(np.asarray(x, np.float64), k), axis=0)
    c = np.concatenate([np.zeros_like(c[:1]), c])
    return ((c[k:] - c[:-k]) / k).astype(np.float32)


def mode_filter(labels, k, num_classes=NUM_CLASSES):
    """Sliding majority vote over label ids; a tie goes to the lowest class id."""
    check_kernel(k)
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0 or k == 1:
        return labels.copy()
    onehot = np.eye(num_classes, dtype=np.int32)[_edge_padded(labels, k)]
    c = np.concatenate([np.zeros((1, num_classes), np.int64), np.cumsum(onehot, axis=0)])
    return (c[k:] - c[:-k]).argmax(axis=1)


def smooth(logits, k=11, method="median"):
    """Smooth logits `(T, 8)`; returns (labels `(T,)`, smoothed logits or None for label methods).

    - median: running median of each class's logit track, then argmax (the default);
    - median-labels: argmax first, then a running median of the label ids (what the public
      reference implementation does; label ids are nominal, so this is kept only to reproduce it);
    - mode: argmax, then a sliding majority vote;
    - mean: moving average of the logits, then argmax.
    """
    check_kernel(k)
    logits = np.asarray(logits, dtype=np.float32)
    if method == "median":
        smoothed = median_filter(logits, k)
        return smoothed.argmax(axis=1), smoothed
    if method == "mean":
        smoothed = mean_filter(logits, k)
        return smoothed.argmax(axis=1), smoothed
    labels = logits.argmax(axis=1)
    if method == "median-labels":
        return median_filter(labels, k), None
    if method == "mode":
        return mode_filter(labels, k), None
    raise ValueError(f"unknown smoothing method {method!r}; choose from {', '.join(METHODS)}")


# Each track's default filter (`abaw smooth` without -k / --method) is its `default_filter`
# (abawtools.tasks), from these sources: EXPR the paper's median filter, k = 11 (§3.6). VA a mean
# over +-50 frames, what HSEmotion (Savchenko, ABAW 6-8) found best for valence and arousal. AU a
# median over +-3 frames of each AU's logit (HSEmotion found +-3-5 best for AUs), then the threshold.
