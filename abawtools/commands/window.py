"""abaw window: per-video features + labels -> a CSV manifest of training windows."""

import click

from abawtools.commands import _common
from abawtools.errors import AbawError, few


@click.command(name="window")
@click.option("--visual-dir", "visual_dir", type=click.Path(exists=True, file_okay=False),
              help="Folder of ID.npy visual features (T, Dv); NaN rows = no face.")
@click.option("--audio-dir", "audio_dir", type=click.Path(exists=True, file_okay=False),
              help="Folder of ID.npy aligned audio features (T, Da); ID_left/ID_right fall back to ID.npy.")
@click.option("--label-dir", "label_dir", type=click.Path(exists=True, file_okay=False),
              help="Folder of ID.txt annotations (EXPR, VA or AU: the header says which): these name the videos.")
@click.option("--visual", "visual_old", type=click.Path(exists=True, file_okay=False), hidden=True)
@click.option("--audio", "audio_old", type=click.Path(exists=True, file_okay=False), hidden=True)
@click.option("--labels", "label_old", type=click.Path(exists=True, file_okay=False), hidden=True)
@click.option("-o", "--output", default="-", show_default=True, metavar="MANIFEST.csv|-")
@click.option("-W", "--window", default=64, show_default=True, type=click.IntRange(min=1))
@click.option("-S", "--stride", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--max-invalid", default=0.25, show_default=True, type=_common.Finite(0, 1),
              help="Drop windows whose share of unannotated frames (EXPR/AU -1, VA -5; over their real frames) "
              "is above this.")
def cli(visual_dir, audio_dir, label_dir, visual_old, audio_old, label_old, output, window, stride, max_invalid):
    """Index the sliding windows of every labelled video (paper §4.4), without copying features.

    One row per window: video, feature and label files, start, stop, valid fraction. Windows
    step by S and a last one ends exactly at the video's end; a video shorter than W gets one
    window whose missing tail is masked and labelled -1. The track (EXPR, VA, AU) follows from
    the label files' header; class counts (EXPR), value ranges (VA) or positives (AU) go to stderr.

    \b
    Example:
      abaw window --visual-dir visual/ --audio-dir audio/ \\
                  --label-dir EXPR_Recognition_Challenge/Train_Set -o train.csv
      abaw window --visual-dir visual/ --audio-dir audio/ \\
                  --label-dir VA_Estimation_Challenge/Train_Set -o va-train.csv
    """
    import os

    import numpy as np

    from abawtools import CLASSES, formats, tasks, windows
    from abawtools.commands._common import log

    # --visual/--audio/--labels: the names before 0.2, kept so old scripts run
    visual_dir, audio_dir, label_dir = visual_dir or visual_old, audio_dir or audio_old, label_dir or label_old
    for name, value in (("--visual-dir", visual_dir), ("--audio-dir", audio_dir), ("--label-dir", label_dir)):
        if value is None:
            raise click.UsageError(f"missing option {name}")

    if output != "-":
        from abawtools.commands._common import check_output_dir

        check_output_dir(output)  # before the work: a read-only folder is said now
    label_files = sorted(f for f in os.listdir(label_dir) if f.endswith(".txt"))
    if not label_files:
        raise AbawError(f"{label_dir}: no .txt label files")
    rows, counts, skipped, dropped = [], np.zeros(len(CLASSES), np.int64), [], 0
    named, kept_labels = {}, []
    for f in label_files:
        vid = formats.video_id(f)
        visual = os.path.join(visual_dir, vid + ".npy")  # each face has its own; audio may be shared
        visual = visual if os.path.exists(visual) else None
        audio = formats.find_for_video(audio_dir, vid, ".npy")
        if visual is None or audio is None:
            skipped.append(vid)
            continue
        task, labels = formats.read_annotation(os.path.join(label_dir, f))
        named[os.path.join(label_dir, f)] = task
        tasks.one_task(named, label_dir)  # one track per run, named at the first other file
        T = len(labels)
        for what, path in (("visual features", visual), ("aligned audio", audio)):
            formats.check_length(vid, f"{what} {path}", formats.feature_rows(path), T)
        starts = windows.window_starts(T, window, stride)
        fractions = windows.valid_fractions(labels, starts, window, task.valid(labels))
        keep = 1.0 - fractions <= max_invalid + 1e-12
        dropped += int((~keep).sum())
        if task is tasks.EXPR:
            counts += windows.label_counts(labels, starts[keep], window, len(CLASSES))
        else:
            cover = windows.coverage(T, starts[keep], window) > 0
            kept_labels.append(labels[task.valid(labels) & cover])
        for s, frac in zip(starts[keep], fractions[keep]):
            rows.append({"video": vid, "visual": os.path.abspath(visual), "audio": os.path.abspath(audio),
                         "labels": os.path.abspath(os.path.join(label_dir, f)), "frames": T, "start": int(s),
                         "stop": int(s) + window, "valid_fraction": float(frac)})
    if skipped:
        log(f"warning: {len(skipped)} labelled video(s) without visual or audio features, skipped: "
            + few(skipped))
    if not rows:
        raise AbawError("no window left (check the feature folders and --max-invalid)")
    task = tasks.one_task(named, label_dir)
    annotated = int(counts.sum()) if task is tasks.EXPR else sum(len(v) for v in kept_labels)
    if annotated == 0:  # a manifest to train or validate on nothing: said before it is written
        raise AbawError(f"{label_dir}: no annotated frame in any window: every frame of its "
                        f"{len(named)} file(s) is labelled {task.invalid:g}")
    with formats.atomic_output(output, "w") as fh:
        windows.write_manifest(fh, rows)
    log(f"{len(rows)} windows from {len({r['video'] for r in rows})} videos "
        f"(W={window}, S={stride}; {dropped} dropped for > {max_invalid:.0%} invalid labels)")
    if task is tasks.EXPR:
        log("labelled frames in windows: " + ", ".join(f"{c}={n}" for c, n in zip(CLASSES, counts)))
    elif task is tasks.VA:
        v = np.concatenate(kept_labels)
        log(f"VA: {len(v)} annotated frames; valence in [{v[:, 0].min():.2f}, {v[:, 0].max():.2f}] mean "
            f"{v[:, 0].mean():.2f}, arousal in [{v[:, 1].min():.2f}, {v[:, 1].max():.2f}] mean {v[:, 1].mean():.2f}")
    else:
        v = np.concatenate(kept_labels)
        log(f"AU: {len(v)} valid frames; positives: "
            + ", ".join(f"{c}={int(n)}" for c, n in zip(task.columns, v.sum(axis=0))))
