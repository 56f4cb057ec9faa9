"""ABAW's tracks on Aff-Wild2, each one object that holds all of its behaviour.

A track says how its annotation lines read and write, which frames are annotated, what a model
outputs for it and how those outputs become predictions, how it is smoothed, scored, trained (head
activation, loss and its class or positive weights), what a video without any face gets, and its
submission columns. The engine, infer, smooth, score and finetune ask the track; none of them
branches on which track it is. The multi-task track (MTL) is the three heads in one object
(MultiTask): each of its methods loops over the heads.

The track always follows from the files, never from a flag: an annotation's header names it
(EXPR: the 8 class names; VA: `valence,arousal`; AU: the 12 AU names; MTL: the s-Aff-Wild2 layout
`valence,arousal,expression,AU1,...`), a model records it, and per-frame outputs have a width of
their own (8 logits, 2 values, 12 logits, 22 for all three). No torch at import: `window`,
`smooth` and `score` use this module; torch is imported inside the training methods only.

| track | labels (frame t) | unannotated | outputs | challenge metric |
| --- | --- | --- | --- | --- |
| expr | one class id 0-7 | -1 | 8 logits | macro F1 over the 8 classes, frames pooled |
| va | `v,a` in [-1, 1] | -5 (either value) | 2 values in [-1, 1] (tanh) | (CCC_v + CCC_a) / 2 |
| au | 12 values 0/1 | -1 (any value) | 12 logits (sigmoid) | mean binary F1 over the 12 AUs |
| mtl | v, a, expression, 12 AUs | each part its own | 22: va, expr, au | P_MTL: the sum of the three |

Sources: the 6th-10th ABAW challenge papers (Kollias et al.) for the files, the invalid marks and
the metrics; line i after the header is frame i (cropped_aligned `0000i.jpg`), as for EXPR. MTL:
the 3rd, 4th and 7th ABAW papers (arXiv 2202.10659, 2207.01138, 2407.03835): P_MTL = mean CCC +
expression macro F1 + mean AU F1, each over the frames where that task is annotated.
"""

import re

import numpy as np

from abawtools import CLASSES, NUM_CLASSES, scoring, smoothing, windows
from abawtools.errors import AbawError
from abawtools.multitask import Head, MultiTask
from abawtools.track import NUMBER, Task, logit  # noqa: F401  (part of this module's interface)

_INTEGER = re.compile(r"^[+-]?\d+$")
AU_NAMES = ("AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26")


class ExprTask(Task):
    def valid(self, labels):
        return np.asarray(labels) >= 0

    @property
    def label_shape(self):
        return ()

    def parse(self, body, name):
        """Lines after the header -> (T,) int64, each in [-1, 7]."""
        if any("_" in value for value in body):  # int() alone would read `0_1` as 1
            i = next(i for i, value in enumerate(body) if not _INTEGER.match(value))
            raise AbawError(f"{name}:{i + 2}: expected an integer label, got '{body[i][:40]}'")
        try:
            labels = np.array(body, dtype=np.str_).astype(np.int64) if body else np.zeros(0, np.int64)
        except (ValueError, OverflowError):
            for i, value in enumerate(body):
                try:
                    number = int(value)
                except ValueError:
                    raise AbawError(f"{name}:{i + 2}: expected an integer label, got '{value[:40]}'") from None
                if not -1 <= number < NUM_CLASSES:
                    raise AbawError(f"{name}:{i + 2}: label {value[:40]} outside [-1, {NUM_CLASSES - 1}]") from None
            raise
        bad = np.flatnonzero((labels < -1) | (labels >= NUM_CLASSES))
        if bad.size:
            i = int(bad[0])
            raise AbawError(f"{name}:{i + 2}: label {labels[i]} outside [-1, {NUM_CLASSES - 1}]")
        return labels

    def format_rows(self, labels):
        return [f"{int(v)}" for v in np.asarray(labels).tolist()]

    def fill_label(self):
        return np.int64(0)  # Neutral

    def predict(self, outputs, thresholds=None):
        return np.asarray(outputs, np.float32).argmax(axis=1)

    def smooth(self, outputs, k=None, method=None, thresholds=None):
        return smoothing.smooth(outputs, k or self.default_filter[0], method or self.default_filter[1])

    def fallback_outputs(self, prior=None):
        """The log of the training class prior (a class the model lacks: far below the rest)."""
        if prior is None:
            return np.zeros(self.outputs)
        return np.log(np.maximum(np.asarray(prior, np.float64), 1e-12))

    def score(self, pairs):
        result = scoring.score(pairs)
        return {"task": "expr", "score": result["macro_f1"], **result}

    def table(self, result):
        return scoring.format_table(result)

    def loss(self, out, labels, weights=None, gamma=2.0):
        from abawtools import loss

        return loss.focal_loss(out, labels, gamma, weights), int((labels >= 0).sum())

    def train_weights(self, labelled, opts):
        from abawtools import loss

        counts = np.zeros(self.outputs, np.int64)
        for labels, cover in labelled:
            counts += windows.class_counts(labels, cover, self.outputs)
        weights = loss.effective_number_weights(counts, opts.beta) if opts.class_weights else None
        return counts, weights

    def describe_counts(self, counts):
        return "class counts in training windows: " + ", ".join(f"{c}={n}" for c, n in zip(CLASSES, counts))


class VaTask(Task):
    @property
    def label_dtype(self):
        return np.float32

    def valid(self, labels):
        labels = np.asarray(labels)
        return ((labels >= -1) & (labels <= 1)).all(axis=1)

    def check_values(self, fields, where):
        values = [float(f) for f in fields]
        for f, v in zip(fields, values):
            if not (-1 <= v <= 1 or v == -5):
                raise AbawError(f"{where}: {f} outside [-1, 1] (and not -5, the unannotated mark)")
        return values

    def format_rows(self, labels):
        return [",".join(f"{x:.6g}" for x in row) for row in np.asarray(labels, np.float64).tolist()]

    def predict(self, outputs, thresholds=None):
        return np.clip(np.asarray(outputs, np.float32), -1, 1)

    def check_outputs(self, arr, name):
        # tanh values: a -5 row is the annotation's unannotated mark, not an output
        bad = np.flatnonzero((np.abs(arr) > 1 + 1e-3).any(axis=1))
        if bad.size:
            row = int(bad[0])
            raise AbawError(f"{name}: row {row} (frame {row + 1}) holds {arr[row, 0]:g},{arr[row, 1]:g}: valence-"
                            f"arousal outputs lie in [-1, 1] (-5 marks an unannotated frame in labels, never an "
                            f"output); {bad.size} such row(s)")

    def score(self, pairs):
        y, p = self.pooled(pairs)
        frames = int(len(y))
        parts = {name: scoring.ccc(p[:, i], y[:, i]) for i, name in enumerate(self.columns)}
        return {"task": "va", "score": float(np.mean(list(parts.values()))), "frames": frames, "videos": len(pairs),
                "ccc": parts,
                "mse": {name: float(((p[:, i] - y[:, i]) ** 2).mean()) if frames else 0.0
                        for i, name in enumerate(self.columns)}}

    def table(self, result):
        lines = [f"{'':<10} {'CCC':>7} {'MSE':>7}"]
        for name in result["ccc"]:
            lines.append(f"{name:<10} {result['ccc'][name]:7.4f} {result['mse'][name]:7.4f}")
        lines += ["", f"mean CCC {result['score']:.4f}   frames {result['frames']}   videos {result['videos']}"]
        return "\n".join(lines) + "\n"

    def activate(self, out):
        import torch

        return torch.tanh(out)  # valence and arousal live in [-1, 1], as the VA track's leading teams' heads

    def loss(self, out, labels, weights=None, gamma=2.0):
        from abawtools import loss

        return loss.ccc_loss(out, labels), int(((labels >= -1) & (labels <= 1)).all(dim=-1).sum())


class AuTask(Task):
    def predict(self, outputs, thresholds=None):
        """1 where sigmoid(logit) >= the AU's threshold (0.5 each by default)."""
        t = np.full(self.outputs, 0.5) if thresholds is None else thresholds
        return (np.asarray(outputs, np.float32) >= logit(t)).astype(np.int64)

    def fallback_outputs(self, prior=None):
        return np.full(self.outputs, -10.0)  # no AU

    def score(self, pairs):
        y, p = self.pooled(pairs)
        per = {}
        for i, name in enumerate(self.columns):
            f1, precision, recall, support, predicted = scoring.binary_f1(y[:, i] == 1, p[:, i] == 1)
            per[name] = {"f1": f1, "precision": precision, "recall": recall, "support": support,
                         "predicted": predicted}
        return {"task": "au", "score": float(np.mean([m["f1"] for m in per.values()])), "frames": int(len(y)),
                "videos": len(pairs), "per_au": per}

    def table(self, result):
        lines = [f"{'AU':<6} {'prec':>6} {'recall':>6} {'F1':>6} {'support':>9} {'predicted':>9}"]
        for name, m in result["per_au"].items():
            lines.append(f"{name:<6} {m['precision']:6.4f} {m['recall']:6.4f} {m['f1']:6.4f} {m['support']:9d} "
                         f"{m['predicted']:9d}")
        lines += ["", f"mean F1 {result['score']:.4f}   frames {result['frames']}   videos {result['videos']}"]
        return "\n".join(lines) + "\n"

    def loss(self, out, labels, weights=None, gamma=2.0):
        from abawtools import loss

        return loss.au_loss(out, labels, weights), int((labels >= 0).all(dim=-1).sum())

    def train_weights(self, labelled, opts):
        """Positive frames per AU; weights negatives / positives per AU, capped at 10 (loss.au_pos_weights)."""
        from abawtools import loss

        positives, frames = np.zeros(self.outputs), 0
        for labels, cover in labelled:
            valid = self.valid(labels)
            positives += (labels[valid] * cover[valid, None]).sum(axis=0)
            frames += int(cover[valid].sum())
        weights = loss.au_pos_weights(positives, frames) if opts.class_weights else None
        return positives.astype(np.int64), weights

    def describe_counts(self, counts):
        return "positive frames per AU in training windows: " + ", ".join(
            f"{c}={n}" for c, n in zip(self.columns, counts))


EXPR = ExprTask("expr", "Expression", tuple(CLASSES), len(CLASSES), -1)
# VA: a mean over +-50 frames; AU: a median over +-3 frames (sources in smoothing.py)
VA = VaTask("va", "Valence-Arousal", ("valence", "arousal"), 2, -5, (101, "mean"))
AU = AuTask("au", "Action Units", AU_NAMES, len(AU_NAMES), -1, (7, "median"))


# the multi-task challenge's three heads, in the order of its files: valence, arousal, expression, AUs
MTL = MultiTask("mtl", "Multi-Task", ("valence", "arousal", "expression", *AU_NAMES), 22, -1, (0, "per head"),
                heads=(Head(VA, slice(0, 2), slice(0, 2), (7, "mean")), Head(EXPR, slice(2, 10), 2),
                       Head(AU, slice(10, 22), slice(3, 15))))
TASKS = {t.name: t for t in (EXPR, VA, AU, MTL)}
_BY_OUTPUTS = {t.outputs: t for t in TASKS.values()}


def of_header(line):
    """The task whose annotation header `line` is (BOM, spaces and case ignored), or None."""
    key = line.lstrip("\ufeff").replace(" ", "").strip().lower()
    for task in TASKS.values():
        if key == task.header.lower():
            return task
    return None


def of_outputs(width, name="outputs"):
    """The task of per-frame outputs `width` wide: 8 expr, 2 va, 12 au, 22 mtl."""
    task = _BY_OUTPUTS.get(int(width))
    if task is None:
        raise AbawError(f"{name}: {width} values per frame: expected 8 (EXPR logits), 2 (valence, arousal), "
                        "12 (AU logits) or 22 (multi-task: the three)")
    return task


def of_labels(labels):
    """The task of a labels array by its shape: (T,) expr, (T, 2) va, (T, 12) au, (T, 15) mtl."""
    labels = np.asarray(labels)
    if labels.ndim == 1:
        return EXPR
    for task in TASKS.values():
        if task.label_shape == labels.shape[1:]:
            return task
    raise AbawError(f"labels: {labels.shape[1]} values per frame match no track")


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

