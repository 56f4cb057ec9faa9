"""The ABAW EXPR metric: the unweighted mean of per-class F1, over all valid frames pooled.

Frames labelled -1 are skipped. A class that appears neither in the truth nor in the predictions
is left out of the mean (exactly what `sklearn.metrics.f1_score(average="macro")` does when, as in
the challenge code, no `labels=` is given) and is reported in `absent_classes`.
"""

import json

import numpy as np

from abawtools import CLASSES, NUM_CLASSES


def confusion_matrix(truth, pred, num_classes=NUM_CLASSES):
    """Counts `(C, C)`: rows = true class, columns = predicted class; frames with truth -1 skipped."""
    truth = np.asarray(truth, dtype=np.int64)
    pred = np.asarray(pred, dtype=np.int64)
    valid = truth >= 0
    truth, pred = truth[valid], pred[valid]
    if ((pred < 0) | (pred >= num_classes)).any():
        raise ValueError("predictions must be class ids in [0, 7] wherever the truth is valid")
    return np.bincount(truth * num_classes + pred, minlength=num_classes**2).reshape(num_classes, num_classes)


def metrics_from_confusion(cm, classes=CLASSES):
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = (support > 0) | (predicted > 0)
    frames = int(cm.sum())
    return {
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "accuracy": float(tp.sum() / frames) if frames else 0.0,
        "frames": frames,
        "classes": list(classes),
        "absent_classes": [c for c, p in zip(classes, present) if not p],
        "per_class": {
            c: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
                "predicted": int(predicted[i]),
            }
            for i, c in enumerate(classes)
        },
        "confusion_matrix": cm.astype(int).tolist(),
    }


def score(pairs):
    """Score a list of (video, pred, truth), pooled over all videos. Lengths must already match."""
    cm = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    for _, pred, truth in pairs:
        cm += confusion_matrix(truth, pred)
    result = metrics_from_confusion(cm)
    result["videos"] = len(pairs)
    return result


def format_json(result, indent=2, _level=0):
    """Indented JSON in which a list or object of plain values (a confusion-matrix row, one class's
    precision/recall/F1) stays on one line, so the matrix reads as a matrix."""
    children = result.values() if isinstance(result, dict) else result
    if not isinstance(result, (dict, list)) or not any(isinstance(v, (dict, list)) for v in children):
        return json.dumps(result)
    pad, inner = " " * indent * _level, " " * indent * (_level + 1)
    if isinstance(result, dict):
        items = [f"{inner}{json.dumps(k)}: {format_json(v, indent, _level + 1)}" for k, v in result.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    items = [f"{inner}{format_json(v, indent, _level + 1)}" for v in result]
    return "[\n" + ",\n".join(items) + f"\n{pad}]"


def format_table(result):
    """A fixed-width report for people (`--format table`)."""
    lines = [f"{'class':<10} {'prec':>6} {'recall':>6} {'F1':>6} {'support':>9} {'predicted':>9}"]
    for c in result["classes"]:
        m = result["per_class"][c]
        mark = "  (absent: not in the mean)" if c in result["absent_classes"] else ""
        lines.append(
            f"{c:<10} {m['precision']:6.4f} {m['recall']:6.4f} {m['f1']:6.4f} {m['support']:9d} {m['predicted']:9d}{mark}"
        )
    lines.append("")
    lines.append(
        f"macro F1 {result['macro_f1']:.4f}   accuracy {result['accuracy']:.4f}   "
        f"frames {result['frames']}   videos {result['videos']}"
    )
    lines.append("")
    lines.append("confusion matrix (rows = truth, columns = prediction)")
    short = [c[:4] for c in result["classes"]]
    lines.append(" " * 10 + "".join(f"{s:>9}" for s in short))
    for c, row in zip(short, result["confusion_matrix"]):
        lines.append(f"{c:<10}" + "".join(f"{v:9d}" for v in row))
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ all three tracks
def ccc(x, y):
    """Lin's concordance correlation coefficient, 2 cov / (var_x + var_y + (mean_x - mean_y)^2),
    population moments (the organisers' formula)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) == 0:
        return 0.0
    mx, my = x.mean(), y.mean()
    cov = ((x - mx) * (y - my)).mean()
    denom = x.var() + y.var() + (mx - my) ** 2
    return float(2 * cov / denom) if denom > 0 else 0.0


def binary_f1(truth, pred):
    """(f1, precision, recall, support, predicted) of one binary column."""
    truth, pred = np.asarray(truth, bool), np.asarray(pred, bool)
    tp = int((truth & pred).sum())
    support, predicted = int(truth.sum()), int(pred.sum())
    precision = tp / predicted if predicted else 0.0
    recall = tp / support if support else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return f1, precision, recall, support, predicted


def score_task(task, pairs):
    """The challenge's number for `task` over (video, pred, truth), frames pooled over videos, in a
    dict with "task" and "score" and the parts (the track's own `score`)."""
    return task.score(pairs)


def choose_threshold(grid, f1s):
    """The index of the best F1 on `grid`; among equal F1s (an AU without a positive frame: 0
    everywhere) the threshold nearest 0.5, never the lowest (which marks nearly every frame)."""
    f1s, grid = np.asarray(f1s), np.asarray(grid)
    best = np.flatnonzero(f1s >= f1s.max() - 1e-12)
    return int(best[np.argmin(np.abs(grid[best] - 0.5))])
