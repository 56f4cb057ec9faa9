"""ABAW's three frame-level tracks on Aff-Wild2, as the organisers ship and score them.

The task always follows from the files, never from a flag: an annotation's header names it
(EXPR: the 8 class names; VA: `valence,arousal`; AU: the 12 AU names), a model records it, and
per-frame outputs have a width of their own (8 logits, 2 values, 12 logits). No torch here:
`window`, `smooth` and `score` use it.

| task | annotation line (frame t) | invalid frame | model outputs | challenge metric |
| --- | --- | --- | --- | --- |
| expr | one class id 0-7 | -1 | 8 logits | macro F1 over the 8 classes, frames pooled |
| va | `v,a` in [-1, 1] | -5 (either value) | 2 values in [-1, 1] (tanh) | (CCC_v + CCC_a) / 2, frames pooled |
| au | 12 values 0/1 | -1 (any value) | 12 logits (sigmoid) | mean over the 12 AUs of the binary F1, frames pooled |

Sources: the 6th-10th ABAW challenge papers (Kollias et al.) for the files, the invalid marks and
the metrics; line i after the header is frame i (cropped_aligned `0000i.jpg`), as for EXPR.
"""

import re
from dataclasses import dataclass

import numpy as np

from abawtools import CLASSES
from abawtools.errors import AbawError

# a plain decimal number as the organisers write them: float() alone would also take `0_1` (1),
# `nan` and `inf`
NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")

AU_NAMES = ("AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26")


@dataclass(frozen=True)
class Task:
    name: str  # expr | va | au
    title: str
    columns: tuple  # the annotation's header, and the submission's after image_location
    outputs: int  # per-frame model outputs
    invalid: float  # the organisers' mark of a frame without a usable annotation

    @property
    def header(self):
        return ",".join(self.columns)

    @property
    def submission_header(self):
        return "image_location," + self.header

    @property
    def label_dtype(self):
        return np.float32 if self.name == "va" else np.int64

    def valid(self, labels):
        """(T,) bool: the frames that are annotated (scored and trained on)."""
        labels = np.asarray(labels)
        if self.name == "expr":
            return labels >= 0
        if self.name == "va":
            return ((labels >= -1) & (labels <= 1)).all(axis=1)
        return (labels >= 0).all(axis=1)

    def padding(self):
        """The label of a frame past the video's end inside a window (never scored or trained on)."""
        return self.invalid

    def parse(self, body, name):
        """Annotation lines after the header -> labels: (T,) int64 (expr), (T, 2) float32 (va),
        (T, 12) int64 (au). A malformed line is one error naming the file and the line."""
        if self.name == "expr":
            raise AssertionError("EXPR files are parsed by formats.parse_labels")
        width = len(self.columns)
        rows = np.empty((len(body), width), self.label_dtype)
        for i, line in enumerate(body):
            fields = line.split(",")
            if len(fields) != width:
                raise AbawError(f"{name}:{i + 2}: expected {width} comma-separated values ({self.header}), "
                                f"got {len(fields)}")
            fields = [f.strip() for f in fields]
            if not all(NUMBER.match(f) for f in fields):
                raise AbawError(f"{name}:{i + 2}: expected numbers, got '{line[:60]}'")
            values = [float(f) for f in fields]
            # the value as written in the message: 1.0000001 is not '1'
            if self.name == "va":
                for f, v in zip(fields, values):
                    if not (-1 <= v <= 1 or v == -5):
                        raise AbawError(f"{name}:{i + 2}: {f} outside [-1, 1] (and not -5, the unannotated mark)")
            else:
                for f, v in zip(fields, values):
                    if v not in (0, 1, -1):
                        raise AbawError(f"{name}:{i + 2}: {f} is not 0, 1 or -1 (invalid)")
            rows[i] = values
        return rows

    def format_rows(self, labels):
        """Annotation lines (no header) for labels in this task's layout."""
        if self.name == "expr":
            return [f"{int(v)}" for v in np.asarray(labels).tolist()]
        if self.name == "va":
            return [f"{v:.6g},{a:.6g}" for v, a in np.asarray(labels, np.float64).tolist()]
        return [",".join(str(int(x)) for x in row) for row in np.asarray(labels).tolist()]


EXPR = Task("expr", "Expression", tuple(CLASSES), len(CLASSES), -1)
VA = Task("va", "Valence-Arousal", ("valence", "arousal"), 2, -5)
AU = Task("au", "Action Units", AU_NAMES, len(AU_NAMES), -1)
TASKS = {t.name: t for t in (EXPR, VA, AU)}
_BY_OUTPUTS = {t.outputs: t for t in TASKS.values()}


def of_header(line):
    """The task whose annotation header `line` is (BOM, spaces and case ignored), or None."""
    key = line.lstrip("\ufeff").replace(" ", "").strip().lower()
    for task in TASKS.values():
        if key == task.header.lower():
            return task
    return None


def of_outputs(width, name="outputs"):
    """The task of per-frame outputs `width` wide: 8 expr, 2 va, 12 au."""
    task = _BY_OUTPUTS.get(int(width))
    if task is None:
        raise AbawError(f"{name}: {width} values per frame: expected 8 (EXPR logits), 2 (valence, arousal) "
                        "or 12 (AU logits)")
    return task


def of_labels(labels):
    """The task of a labels array by its shape: (T,) expr, (T, 2) va, (T, 12) au."""
    labels = np.asarray(labels)
    if labels.ndim == 1:
        return EXPR
    return of_outputs(labels.shape[1], "labels")


def one_task(named, what):
    """The one task of {name: task}; several tasks are one error naming one file of each."""
    seen = {}
    for name, task in named.items():
        seen.setdefault(task.name, name)
    if len(seen) > 1:
        parts = ", ".join(f"{t.upper()} ({n})" for t, n in seen.items())
        raise AbawError(f"{what} mixes tasks: {parts}; give the files of one track")
    if not seen:
        raise AbawError(f"{what}: nothing to read")
    return TASKS[next(iter(seen))]


def predict(task, outputs, thresholds=None):
    """Per-frame model outputs (T, C) -> predictions in the annotation's layout: expr the argmax,
    va the values clipped to [-1, 1], au 1 where sigmoid(logit) >= the AU's threshold (0.5)."""
    outputs = np.asarray(outputs, np.float32)
    if task.name == "expr":
        return outputs.argmax(axis=1)
    if task.name == "va":
        return np.clip(outputs, -1, 1)
    t = np.full(task.outputs, 0.5) if thresholds is None else thresholds
    return (outputs >= logit(t)).astype(np.int64)


def logit(p):
    """The logit a threshold p on sigmoid(logit) corresponds to: sigmoid(x) >= p <=> x >= logit(p)."""
    p = np.asarray(p, np.float64)
    return np.log(p / (1 - p))
