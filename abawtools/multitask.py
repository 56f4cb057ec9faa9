"""The multi-task track (ABAW's MTL challenge): valence-arousal, the 8 expressions and the 12 AUs by
one network, as one track whose every method loops over its three heads.

Files and numbers, from the organisers (3rd/4th/7th ABAW: arXiv 2202.10659, 2207.01138, 2407.03835):
- a frame's labels are 15 values `valence,arousal,expression,AU1,...,AU26`; -5 marks valence /
  arousal not annotated, -1 an expression or the AUs: each task is annotated on its own frames;
- the model's 22 outputs per frame are the heads side by side, in the submission's order:
  valence, arousal (tanh), the 8 expression logits, the 12 AU logits;
- P_MTL = (CCC_V + CCC_A) / 2 + macro F1 over the 8 expressions + mean binary F1 over the 12 AUs,
  each over the frames where that task is annotated (the 7th ABAW winner: 1.5286 = 0.5420 +
  0.4286 + 0.5580 on the test set).

The losses are masked per task: each head's loss is its track's own (1 - CCC, focal, BCE) over the
frames where that task is annotated, averaged over those entries only, so a frame without an
expression label adds nothing to the expression loss and does not shrink it either; the total is
the weighted sum (weights: TrainOptions.task_weights, equal by default).
"""

from dataclasses import dataclass

import numpy as np

from abawtools.errors import AbawError
from abawtools.track import Task


@dataclass(frozen=True)
class Head:
    task: Task  # the single track this head is
    out: slice  # its columns of the 22 outputs
    lab: object  # its label columns: a slice, or one column (the expression)
    filter: tuple = None  # its default (k, method) in `smooth`, when not its track's (see MultiTask.smooth)

    def labels(self, labels):
        """This head's labels out of (..., 15) multi-task labels, in its track's own layout."""
        part = labels[..., self.lab]
        if self.task.label_dtype == np.int64:  # expression, AUs: class ids and 0/1 (torch or numpy)
            return part.long() if hasattr(part, "long") else np.asarray(part).astype(np.int64)
        return part


@dataclass(frozen=True)
class MultiTask(Task):
    heads: tuple = ()

    @property
    def submission_header(self):
        return "image,valence,arousal,expression,aus"  # the organisers' MTL submission (and s-Aff-Wild2's files)

    @property
    def label_dtype(self):
        return np.float32

    @property
    def output_names(self):
        return tuple(n for h in self.heads for n in h.task.output_names)

    def padding(self):
        row = np.empty(len(self.columns), np.float32)
        for head in self.heads:
            row[head.lab] = head.task.invalid
        return row

    def valid(self, labels):
        """A frame with anything annotated (each head keeps its own mask: head_valid)."""
        return np.any([self.head_valid(labels, h) for h in self.heads], axis=0)

    def head_of(self, task):
        """The head that is `task`'s (VA, EXPR or AU)."""
        return next(h for h in self.heads if h.task is task)

    def head_valid(self, labels, head):
        return head.task.valid(head.labels(np.asarray(labels)))

    def check_values(self, fields, where):
        values = []
        for head in self.heads:
            part = fields[head.lab] if isinstance(head.lab, slice) else [fields[head.lab]]
            if head.task.name == "expr":
                if not (part[0].lstrip("+-").isdigit() and -1 <= int(part[0]) <= 7):
                    raise AbawError(f"{where}: expression {part[0]} is not a class id 0-7 or -1 (not annotated)")
                values.append(float(part[0]))
            else:
                values += head.task.check_values(part, f"{where}: {head.task.name.upper()}")
        return values

    def format_rows(self, labels):
        rows = []
        for row in np.asarray(labels, np.float64).tolist():
            rows.append(f"{row[0]:.6g},{row[1]:.6g}," + ",".join(str(int(x)) for x in row[2:]))
        return rows

    def fill_label(self):
        return np.zeros(len(self.columns), np.float32)

    # ------------------------------------------------------------------------ outputs
    def _per_head(self, outputs, each):
        """(T, 15) labels from each head's part of (T, 22) outputs: each(head, part) -> labels."""
        outputs = np.asarray(outputs, np.float32)
        out = np.empty((len(outputs), len(self.columns)), np.float32)
        for head in self.heads:
            out[:, head.lab] = each(head, outputs[:, head.out])
        return out

    def predict(self, outputs, thresholds=None):
        return self._per_head(outputs, lambda h, part: h.task.predict(part, thresholds if h.task.name == "au" else None))

    def smooth(self, outputs, k=None, method=None, thresholds=None):
        """Each head's slice with its default filter (-k: that length for every head, each with its
        own method); the smoothed outputs side by side. The heads' defaults are their tracks'
        (EXPR median 11, AU median 7) but VA's: a mean over 7 frames, not 101, because
        s-Aff-Wild2's selected frames have gaps on the timeline that a long filter reaches across
        (measured on the fake tree: docs/multitask.md)."""
        if method is not None:
            raise ValueError("multi-task outputs are smoothed per head with each track's method; give -k only")
        outputs = np.asarray(outputs, np.float32)
        smoothed = np.empty_like(outputs)
        preds = np.empty((len(outputs), len(self.columns)), np.float32)
        for head in self.heads:
            hk, hm = (k, None) if k else (head.filter or head.task.default_filter)
            pred, part = head.task.smooth(outputs[:, head.out], hk, hm, thresholds if head.task.name == "au" else None)
            smoothed[:, head.out] = part
            preds[:, head.lab] = pred
        return preds, smoothed

    def fallback_outputs(self, prior=None):
        out = np.zeros(self.outputs)
        for head in self.heads:
            out[head.out] = head.task.fallback_outputs(prior if head.task.name == "expr" else None)
        return out

    def check_outputs(self, arr, name):
        for head in self.heads:
            head.task.check_outputs(arr[:, head.out], f"{name} ({head.task.name.upper()} columns)")

    # ------------------------------------------------------------------------ scoring
    def score(self, pairs):
        """P_MTL and its three parts, each part the track's own result over its annotated frames."""
        parts = {}
        for head in self.heads:
            parts[head.task.name] = head.task.score([(v, head.labels(p), head.labels(t)) for v, p, t in pairs])
        return {"task": "mtl", "score": float(sum(p["score"] for p in parts.values())),
                "parts": {name: p["score"] for name, p in parts.items()},
                "frames": {name: p["frames"] for name, p in parts.items()}, "videos": len(pairs), **parts}

    def table(self, result):
        lines = [f"P_MTL {result['score']:.4f} = VA {result['va']['score']:.4f} + EXPR {result['expr']['score']:.4f} "
                 f"+ AU {result['au']['score']:.4f}   videos {result['videos']}", ""]
        for head in self.heads:
            lines += [f"## {head.task.title}", head.task.table(result[head.task.name])]
        return "\n".join(lines)

    # ----------------------------------------------------------------------- training
    def activate(self, out):
        import torch

        return torch.cat([h.task.activate(out[..., h.out]) for h in self.heads], dim=-1)

    def loss(self, out, labels, weights=None, gamma=2.0):
        """The weighted sum of the heads' masked losses (a head without an annotated entry in the
        batch adds 0); (total, 1): the engine averages it over micro-batches and processes."""
        weights = weights or {}
        shares = weights.get("tasks") or {}
        total, seen = 0.0, 0
        for head in self.heads:
            part, n = head.task.loss(out[..., head.out], head.labels(labels), weights.get(head.task.name), gamma)
            total = total + shares.get(head.task.name, 1.0) * part
            seen += n
        return total, 1 if seen else 0

    def train_weights(self, labelled, opts):
        counts, weights = {}, {"tasks": dict(zip(("va", "expr", "au"), opts.task_weights))}
        for head in self.heads:
            parts = [(head.labels(labels), cover) for labels, cover in labelled]
            c, w = head.task.train_weights(parts, opts)
            counts[head.task.name] = None if c is None else np.asarray(c).tolist()
            weights[head.task.name] = w
            counts[head.task.name + "_frames"] = int(sum(int(cover[head.task.valid(lab)].sum()) for lab, cover in parts))
        return counts, weights

    def describe_counts(self, counts):
        return ("annotated frames in training windows (each window counted): " + ", ".join(
            f"{h.task.name.upper()} {counts[h.task.name + '_frames']}" for h in self.heads))
