"""`abaw score --plot`: a confusion matrix and per-video timelines of predicted vs true labels."""

import numpy as np

from abawtools import CLASSES
from abawtools.errors import AbawError
from abawtools.formats import atomic_output


def check_available():
    """--plot needs matplotlib: said before any work."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise AbawError("--plot needs matplotlib: pip install 'abawtools[plot]'") from None


def write_report(path, result, pairs, max_videos=6):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise AbawError("--plot needs matplotlib: pip install 'abawtools[plot]'") from None

    shown = pairs[:max_videos]
    fig = plt.figure(figsize=(12, 4.5 + 1.3 * len(shown)))
    grid = fig.add_gridspec(1 + len(shown), 1, height_ratios=[4.5] + [1.3] * len(shown), hspace=0.6)

    ax = fig.add_subplot(grid[0])
    cm = np.asarray(result["confusion_matrix"], dtype=float)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(CLASSES)):
        for j in range(len(CLASSES)):
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(CLASSES)), CLASSES, rotation=30, fontsize=8)
    ax.set_yticks(range(len(CLASSES)), CLASSES, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"macro F1 {result['macro_f1']:.4f}, accuracy {result['accuracy']:.4f}, "
                 f"{result['frames']} frames in {result['videos']} video(s) (rows normalised)")

    for k, (vid, pred, truth) in enumerate(shown):
        ax = fig.add_subplot(grid[1 + k])
        t = np.arange(len(truth))
        valid = truth >= 0
        ax.step(t[valid], truth[valid], where="mid", color="black", lw=1.2, label="true")
        ax.step(t, pred, where="mid", color="tab:orange", lw=0.9, alpha=0.8, label="predicted")
        ax.set_yticks(range(len(CLASSES)), [c[:3] for c in CLASSES], fontsize=6)
        ax.set_ylim(-0.5, len(CLASSES) - 0.5)
        ax.set_title(vid, fontsize=8, loc="left")
        if k == 0:
            ax.legend(fontsize=7, loc="upper right", ncol=2)
    ax.set_xlabel("frame")

    with atomic_output(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def write_task_report(path, result, pairs, max_videos=6):
    """--plot for any track: EXPR the confusion matrix and timelines (write_report); VA the
    predicted and true valence and arousal of the first videos; AU the per-AU F1 bars."""
    if result["task"] == "expr":
        return write_report(path, {k: v for k, v in result.items() if k not in ("task", "score")}, pairs, max_videos)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise AbawError("--plot needs matplotlib: pip install 'abawtools[plot]'") from None
    if result["task"] == "va":
        shown = pairs[:max_videos]
        fig, axes = plt.subplots(len(shown), 2, figsize=(12, 1.8 * len(shown) + 0.6), squeeze=False)
        for row, (vid, pred, truth) in zip(axes, shown):
            for j, name in enumerate(("valence", "arousal")):
                t = np.where((truth[:, j] >= -1) & (truth[:, j] <= 1), truth[:, j], np.nan)
                row[j].plot(t, color="black", lw=1, label="true")
                row[j].plot(pred[:, j], color="tab:red", lw=1, label="predicted")
                row[j].set_ylim(-1.05, 1.05)
                row[j].set_title(f"{vid}: {name}", fontsize=8)
        axes[0][0].legend(fontsize=7)
        fig.suptitle(f"VA: mean CCC {result['score']:.4f} (valence {result['ccc']['valence']:.4f}, "
                     f"arousal {result['ccc']['arousal']:.4f})")
    else:
        names = list(result["per_au"])
        fig, ax = plt.subplots(figsize=(10, 4))
        ax.bar(names, [result["per_au"][n]["f1"] for n in names], color="tab:blue")
        ax.axhline(result["score"], color="black", lw=1, ls="--")
        ax.set_ylim(0, 1)
        ax.set_ylabel("F1")
        ax.set_title(f"AU: mean F1 {result['score']:.4f}")
    with atomic_output(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
