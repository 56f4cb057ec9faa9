"""The behaviour every ABAW track has, as one base class (abawtools.tasks: the tracks themselves).

No torch at import (the light commands use it); torch only inside the training methods.
"""

import re
from dataclasses import dataclass

import numpy as np

from abawtools import smoothing
from abawtools.errors import AbawError

# a plain decimal number as the organisers write them: float() alone would also take `0_1` (1),
# `nan` and `inf`
NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")


def logit(p):
    """The logit a threshold p on sigmoid(logit) corresponds to: sigmoid(x) >= p <=> x >= logit(p)."""
    p = np.asarray(p, np.float64)
    return np.log(p / (1 - p))


@dataclass(frozen=True)
class Task:
    """One single-task track. Subclasses fill in what differs; the data fields are its files."""

    name: str  # expr | va | au | mtl
    title: str
    columns: tuple  # the annotation's header, and the submission's after image_location
    outputs: int  # per-frame model outputs
    invalid: float  # the organisers' mark of a frame without a usable annotation
    default_filter: tuple = (11, "median")  # `abaw smooth`'s default (k, method); sources in smoothing.py

    # ---------------------------------------------------------------------------- files
    @property
    def header(self):
        return ",".join(self.columns)

    @property
    def submission_header(self):
        return "image_location," + self.header

    @property
    def label_dtype(self):
        return np.int64

    @property
    def output_names(self):
        """The names of the model's per-frame outputs (a fine-tuned head's classes)."""
        return self.columns

    @property
    def label_shape(self):
        """The shape of one frame's label: () for EXPR, (2,) VA, (12,) AU, (15,) MTL."""
        return (len(self.columns),)

    def padding(self):
        """The label of a frame past the video's end inside a window (never scored or trained on)."""
        return self.invalid

    def valid(self, labels):
        """(T,) bool: the frames that are annotated (scored and trained on)."""
        return (np.asarray(labels) >= 0).all(axis=1)

    def parse(self, body, name):
        """Annotation lines after the header -> labels (T, *label_shape). A malformed line is one
        error naming the file and the line."""
        width = len(self.columns)
        rows = np.empty((len(body), width), self.label_dtype)
        for i, line in enumerate(body):
            fields = [f.strip() for f in line.split(",")]
            if len(fields) != width:
                raise AbawError(f"{name}:{i + 2}: expected {width} comma-separated values ({self.header}), "
                                f"got {len(fields)}")
            if not all(NUMBER.match(f) for f in fields):
                raise AbawError(f"{name}:{i + 2}: expected numbers, got '{line[:60]}'")
            rows[i] = self.check_values(fields, f"{name}:{i + 2}")
        return rows

    def check_values(self, fields, where):
        """One line's fields (plain numbers) -> values; the message quotes a value as written."""
        values = [float(f) for f in fields]
        for f, v in zip(fields, values):
            if v not in (0, 1, -1):
                raise AbawError(f"{where}: {f} is not 0, 1 or -1 (invalid)")
        return values

    def format_rows(self, labels):
        """Annotation lines (no header) for labels in this task's layout."""
        return [",".join(str(int(x)) for x in row) for row in np.asarray(labels).tolist()]

    def fill_label(self):
        """What a submission row gets for a video with no prediction at all (--allow-missing)."""
        return np.zeros(self.label_shape, self.label_dtype)

    # ------------------------------------------------------------------------ outputs
    def predict(self, outputs, thresholds=None):
        """Per-frame outputs (T, outputs) -> predictions in the annotation's layout."""
        raise NotImplementedError

    def smooth(self, outputs, k=None, method=None, thresholds=None):
        """(predictions, smoothed outputs or None): outputs filtered along time by the track's
        default filter (or k / method), then predicted."""
        dk, dm = self.default_filter
        k, method = k or dk, method or dm
        if method not in smoothing.LOGIT_METHODS:
            raise ValueError(f"{self.name.upper()} outputs are smoothed with median or mean, not {method}")
        outputs = np.asarray(outputs, np.float32)
        smoothed = (smoothing.median_filter if method == "median" else smoothing.mean_filter)(outputs, k)
        smoothed = smoothed.astype(np.float32)
        return self.predict(smoothed, thresholds), smoothed

    def fallback_outputs(self, prior=None):
        """What a video without any face gets (never NaN)."""
        return np.zeros(self.outputs)

    def check_outputs(self, arr, name):
        """Outputs that no model of this track writes: an error naming the file and row."""

    # ------------------------------------------------------------------------ scoring
    def score(self, pairs):
        """The challenge's number over (video, prediction, truth), frames pooled over videos: a dict
        with "task", "score" and the parts. Frames whose truth is unannotated are left out."""
        raise NotImplementedError

    def table(self, result):
        """`score --format table`."""
        raise NotImplementedError

    def pooled(self, pairs):
        """(truth, predictions) of the annotated frames of every pair, concatenated."""
        truth = [np.asarray(t) for _, _, t in pairs]
        valid = [self.valid(t) for t in truth]
        empty = np.zeros((0,) + self.label_shape)
        y = np.concatenate([t[v] for t, v in zip(truth, valid)]) if pairs else empty
        p = np.concatenate([np.asarray(pr)[v] for (_, pr, _), v in zip(pairs, valid)]) if pairs else empty
        return y, p

    # ----------------------------------------------------------------------- training
    def activate(self, out):
        """The head's raw outputs -> the track's outputs (VA: tanh); a torch tensor."""
        return out

    def loss(self, out, labels, weights=None, gamma=2.0):
        """(the loss's mean over this batch's annotated frames, how many there are): the engine's
        contract (engine.Job.loss) is the sum and the count."""
        raise NotImplementedError

    def train_weights(self, labelled, opts):
        """(counts for the log and the model's summary, loss weights as numpy or None) from
        [(labels, cover)] of the training data (cover: how often the loss sees each frame)."""
        return None, None

    def annotated(self, labelled):
        """Annotated frames inside windows, over [(labels, cover)] (a frame counted once)."""
        return sum(int((self.valid(labels) & (cover > 0)).sum()) for labels, cover in labelled)

    def describe_counts(self, counts):
        """The log line of the training counts, or None."""
        return None
