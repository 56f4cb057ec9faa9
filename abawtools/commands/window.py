"""abaw window: per-video features + labels -> a CSV manifest of training windows."""

import click

from abawtools.commands import _common
from abawtools.errors import AbawError, few


@click.command(name="window")
@click.option("--visual-dir", "visual_dir", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Folder of ID.npy visual features (T, Dv); NaN rows = no face. Repeated: the features of "
              "several backbones side by side per frame (the same T in each).")
@click.option("--audio-dir", "audio_dir", type=click.Path(exists=True, file_okay=False),
              help="Folder of ID.npy aligned audio features (T, Da); ID_left/ID_right fall back to ID.npy. Leave "
              "it out for a data set without audio (s-Aff-Wild2): the network then learns from the visual branch.")
@click.option("--label-dir", "label_dirs", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Folder of ID.txt annotations (EXPR, VA or AU: the header says which): these name the videos. "
              "Repeated with folders of different tracks (the full Aff-Wild2's EXPR, VA and AU sets): multi-task "
              "windows, the tracks joined by video and frame.")
@click.option("--annotations", type=click.Path(exists=True, dir_okay=False),
              help="An s-Aff-Wild2 annotation file (image,valence,arousal,expression,aus): multi-task windows of "
              "every video it lists.")
@click.option("--visual", "visual_old", type=click.Path(exists=True, file_okay=False), hidden=True)
@click.option("--audio", "audio_old", type=click.Path(exists=True, file_okay=False), hidden=True)
@click.option("--labels", "label_old", type=click.Path(exists=True, file_okay=False), hidden=True)
@click.option("-o", "--output", default="-", show_default=True, metavar="MANIFEST.csv|-")
@click.option("-W", "--window", default=64, show_default=True, type=click.IntRange(min=1))
@click.option("-S", "--stride", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--max-invalid", default=None, type=_common.Finite(0, 1),
              help="Drop windows whose share of unannotated frames (EXPR/AU -1, VA -5; over their real frames) "
              "is above this. Default 0.25 (the paper); multi-task: every window with an annotated frame is kept "
              "(s-Aff-Wild2's selected frames are sparse on the timeline: docs/multitask.md).")
def cli(visual_dir, audio_dir, label_dirs, annotations, visual_old, audio_old, label_old, output, window, stride,
        max_invalid):
    """Index the sliding windows of every labelled video (paper §4.4), without copying features.

    One row per window: video, feature and label files, start, stop, valid fraction. Windows
    step by S and a last one ends exactly at the video's end; a video shorter than W gets one
    window whose missing tail is masked and labelled -1. The track (EXPR, VA, AU) follows from
    the label files' header; class counts (EXPR), value ranges (VA) or positives (AU) go to stderr.
    Multi-task windows come from an s-Aff-Wild2 file (--annotations) or from --label-dir repeated
    with one folder per track.

    \b
    Example:
      abaw window --visual-dir visual/ --audio-dir audio/ \\
                  --label-dir EXPR_Recognition_Challenge/Train_Set -o train.csv
      abaw window --visual-dir visual/ --audio-dir audio/ \\
                  --label-dir VA_Estimation_Challenge/Train_Set -o va-train.csv
      abaw window --visual-dir visual/ --annotations training_set_annotations.txt -o mtl-train.csv
    """
    import os

    from abawtools import formats, windows
    from abawtools.commands._common import log

    # --visual/--audio/--labels: the names before 0.2, kept so old scripts run
    visual_dirs, audio_dir = visual_dir or ((visual_old,) if visual_old else ()), audio_dir or audio_old
    label_dirs = label_dirs or ((label_old,) if label_old else ())
    if not visual_dirs:
        raise click.UsageError("missing option --visual-dir")
    if not label_dirs and not annotations:
        raise click.UsageError("give --label-dir (one per track) or --annotations (s-Aff-Wild2)")
    if label_dirs and annotations:
        raise click.UsageError("give --label-dir or --annotations, not both")
    if audio_dir is None and len(label_dirs) == 1 and not annotations:
        raise click.UsageError("missing option --audio-dir (only multi-task windows go without audio)")
    if output != "-":
        from abawtools.commands._common import check_output_dir

        check_output_dir(output)  # before the work: a read-only folder is said now
    sources = _sources(label_dirs, annotations)
    rows, skipped, dropped, named, labelled = [], [], 0, {}, []
    for vid, ref, name in sources:
        # each face has its own visual features (several folders: joined per frame); audio may be shared
        parts = [os.path.abspath(os.path.join(d, vid + ".npy")) for d in visual_dirs]
        visual = os.pathsep.join(parts) if all(os.path.exists(p) for p in parts) else None
        audio = formats.find_for_video(audio_dir, vid, ".npy") if audio_dir else ""
        if visual is None or audio is None:
            skipped.append(vid)
            continue
        from abawtools import annotations as mtl_labels

        visual_rows = formats.feature_rows(visual)
        task, labels = mtl_labels.read_ref(ref, visual_rows)
        named[name] = task
        task = _one(named, label_dirs, annotations)
        T = len(labels)
        formats.check_length(vid, f"visual features {visual}", visual_rows, T)
        if audio:
            formats.check_length(vid, f"aligned audio {audio}", formats.feature_rows(audio), T)
        starts = windows.window_starts(T, window, stride)
        fractions = windows.valid_fractions(labels, starts, window, task.valid(labels))
        if max_invalid is None and task.name == "mtl":
            keep = fractions > 0  # any annotated frame (sparse timelines: docs/multitask.md)
        else:
            keep = 1.0 - fractions <= (0.25 if max_invalid is None else max_invalid) + 1e-12
        dropped += int((~keep).sum())
        labelled.append((labels, windows.coverage(T, starts[keep], window)))
        for s, frac in zip(starts[keep], fractions[keep]):
            rows.append({"video": vid, "visual": visual, "audio": os.path.abspath(audio) if audio else "",
                         "labels": _absolute(ref), "frames": T, "start": int(s),
                         "stop": int(s) + window, "valid_fraction": float(frac)})
    if skipped:
        log(f"warning: {len(skipped)} labelled video(s) without visual or audio features, skipped: "
            + few(skipped))
    if not rows:
        raise AbawError("no window left (check the feature folders and --max-invalid)")
    task = _one(named, label_dirs, annotations)
    where = annotations or ", ".join(label_dirs)
    if task.annotated(labelled) == 0:  # a manifest to train or validate on nothing: said before it is written
        raise AbawError(f"{where}: no annotated frame in any window: every frame of its "
                        f"{len(named)} file(s) is labelled {task.invalid:g}")
    with formats.atomic_output(output, "w") as fh:
        windows.write_manifest(fh, rows)
    rule = ("windows without an annotated frame" if max_invalid is None and task.name == "mtl"
            else f"> {0.25 if max_invalid is None else max_invalid:.0%} invalid labels")
    log(f"{len(rows)} windows from {len({r['video'] for r in rows})} videos (W={window}, S={stride}; {dropped} "
        f"dropped: {rule})")
    _say_labels(task, labelled, log)


def _sources(label_dirs, annotations):
    """[(video, labels reference, file to name)] of the videos the labels name."""
    import os

    from abawtools import annotations as mtl_labels
    from abawtools import formats

    if annotations:
        videos, notes = mtl_labels.read_file(annotations)
        for note in notes:
            _common.log(f"note: {note}")
        return [(vid, f"{annotations}::{vid}", annotations) for vid in sorted(videos)]
    if len(label_dirs) > 1:
        return [(vid, "|".join(files) + ("|" if len(files) == 1 else ""), files[0])
                for vid, files in sorted(mtl_labels.track_folders(label_dirs).items())]
    files = sorted(f for f in os.listdir(label_dirs[0]) if f.endswith(".txt"))
    if not files:
        raise AbawError(f"{label_dirs[0]}: no .txt label files")
    return [(formats.video_id(f), os.path.join(label_dirs[0], f), os.path.join(label_dirs[0], f)) for f in files]


def _one(named, label_dirs, annotations):
    from abawtools import tasks

    if annotations or len(label_dirs) > 1:
        return tasks.MTL
    return tasks.one_task(named, label_dirs[0])  # one track per run, named at the first other file


def _absolute(ref):
    import os

    if "::" in ref:
        path, vid = ref.rsplit("::", 1)
        return f"{os.path.abspath(path)}::{vid}"
    return "|".join(os.path.abspath(p) if p else "" for p in ref.split("|"))


def _say_labels(task, labelled, log):
    """What the windows hold, on stderr: EXPR class counts, VA ranges, AU positives, multi-task per head."""
    import types

    import numpy as np

    counts, _ = task.train_weights(labelled, types.SimpleNamespace(class_weights=False, beta=0.9999,
                                                                   task_weights=(1, 1, 1)))
    line = task.describe_counts(counts)
    if task.name == "va":
        v = np.concatenate([lab[task.valid(lab) & (cover > 0)] for lab, cover in labelled])
        line = (f"VA: {len(v)} annotated frames; valence in [{v[:, 0].min():.2f}, {v[:, 0].max():.2f}] mean "
                f"{v[:, 0].mean():.2f}, arousal in [{v[:, 1].min():.2f}, {v[:, 1].max():.2f}] mean {v[:, 1].mean():.2f}")
    if line:
        log(line.replace(" in training windows", " in windows"))
