"""abaw score: the challenge's metric for predictions vs labels, for the track the label files
name: EXPR (pooled macro F1 over 8 classes), VA (mean CCC of valence and arousal), AU (mean F1
over 12 AUs)."""

import click

from abawtools.errors import AbawError, few


@click.command(name="score")
@click.argument("pair", nargs=-1, metavar="[PRED LABELS]")
@click.option("--pred-dir", type=click.Path(exists=True, file_okay=False), help="Folder of ID.txt / ID.npy predictions.")
@click.option("--label-dir", type=click.Path(exists=True, file_okay=False), help="Folder of ID.txt annotations.")
@click.option("--submission", type=click.Path(exists=True, dir_okay=False, allow_dash=True),
              help="An ABAW submission CSV (`-`: stdin).")
@click.option("--annotations", type=click.Path(exists=True, dir_okay=False),
              help="Multi-task labels: an s-Aff-Wild2 annotation file (image,valence,arousal,expression,aus), "
              "instead of --label-dir; the score is P_MTL.")
@click.option("--format", "fmt", type=click.Choice(["json", "table"]), default="json", show_default=True)
@click.option("-o", "--output", default="-", show_default=True, metavar="FILE|-",
              help="Where the scores go (written whole and renamed into place: make never sees half a file).")
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="Also write a PNG: confusion matrix and per-video timelines (needs matplotlib).")
@click.option("--tune-thresholds", type=click.Path(dir_okay=False), default=None, metavar="OUT.json",
              help="AU, with AU logits as predictions (NPY, e.g. smooth --format npy): choose each AU's threshold "
              "on sigmoid(logit) from 0.1, 0.2, ..., 0.9 for the best F1 on these videos (HSEmotion's grid) and "
              "write them for `smooth --thresholds`; the scores printed are at the tuned thresholds.")
@click.option("--allow-missing", is_flag=True,
              help="Score the videos that have a prediction even when some labelled ones have none (listed "
              "under unmatched_labels); without it that is an error, since the score would not be the split's.")
def cli(pair, pred_dir, label_dir, submission, annotations, fmt, output, plot, tune_thresholds, allow_missing):
    """Score predictions as the challenge does, all annotated frames pooled: EXPR the unweighted
    mean F1 over the 8 classes, VA the mean of the CCC of valence and arousal, AU the mean binary
    F1 over the 12 AUs. The track follows from the label files' header; JSON has "task", "score"
    (the challenge's number) and the parts.

    PRED is a file in the annotation's layout or a model-output NPY (EXPR argmax, VA values, AU
    sigmoid >= 0.5); `-` reads it from stdin. Unannotated frames (-1; VA -5) are skipped; an EXPR
    class absent from both truth and predictions is left out of the mean and listed under
    absent_classes. With --label-dir, every labelled video must have a prediction
    (--allow-missing: score those that do); predictions without labels are listed.

    \b
    Examples:
      abaw score pred.txt labels/ID.txt
      abaw smooth logits.npy | abaw score - labels/ID.txt --format table
      abaw score --pred-dir pred/ --label-dir EXPR_Recognition_Challenge/Validation_Set/
      abaw score --submission submission.csv --label-dir Validation_Set/ --plot report.png
      abaw score --pred-dir va-pred/ --label-dir VA_Estimation_Challenge/Validation_Set --format table
      abaw score --pred-dir au-smoothed/ --label-dir AU_Detection_Challenge/Validation_Set --tune-thresholds th.json
    """
    from abawtools import formats, scoring

    modes = [bool(pair), bool(pred_dir), bool(submission)]
    if sum(modes) != 1:
        raise click.UsageError("give exactly one of: PRED LABELS, --pred-dir with --label-dir, --submission with --label-dir")
    if pair and len(pair) != 2:
        raise click.UsageError("PRED LABELS takes exactly two paths")
    if (pred_dir or submission) and not (label_dir or annotations):
        raise click.UsageError("--pred-dir and --submission need --label-dir (or --annotations)")
    if label_dir and annotations:
        raise click.UsageError("give --label-dir or --annotations, not both")
    if annotations and pair:
        raise click.UsageError("--annotations goes with --pred-dir or --submission")

    from abawtools.commands._common import check_output_dir

    for path in (output, plot, tune_thresholds):  # every output checked before the work: never the JSON written, then a failure
        if path and path != "-":
            check_output_dir(path)
    if plot:
        from abawtools import plots

        plots.check_available()
    named = {}  # file -> task, for one clear error when tracks are mixed
    if pair:
        pairs, unmatched = [_load_pair(*pair, named)], {}
    elif pred_dir:
        pairs, unmatched = _load_dirs(pred_dir, _truths(label_dir, annotations), named)
    else:
        pairs, unmatched = _load_submission(submission, _truths(label_dir, annotations), named)
    label_dir = label_dir or annotations
    from abawtools import tasks

    task = tasks.one_task(named, "predictions and labels")
    missing = unmatched.get("unmatched_labels")
    if missing and not allow_missing:
        raise AbawError(f"{len(missing)} labelled video(s) of {label_dir} have no prediction in "
                        f"{pred_dir or submission}: {few(missing)} "
                        "(--allow-missing scores the others)")

    if not any(task.valid(t).any() for _, _, t, _ in pairs):  # before anything is written
        raise AbawError(f"nothing to score: all {sum(len(t) for _, _, t, _ in pairs)} frames are labelled "
                        f"{task.invalid:g}")
    if tune_thresholds:
        pairs = _tune(task, pairs, tune_thresholds)
    result = task.score([(v, p, t) for v, p, t, _ in pairs])
    result.update(unmatched)
    text = scoring.format_json(result) + "\n" if fmt == "json" else task.table(result)
    if output == "-":
        click.echo(text, nl=False)
    else:
        with formats.atomic_output(output, "w") as fh:
            fh.write(text)
    if plot:
        from abawtools import plots

        plots.write_task_report(plot, result, [(v, p, t) for v, p, t, _ in pairs])


def _check_length(vid, pred, truth):
    from abawtools import formats

    formats.check_length(vid, "the prediction", len(pred), len(truth))


def _load_pair(pred_path, label_path, named, truth_of=None):
    """(video, prediction, truth, prediction file); a prediction of another track than its labels
    (a VA model's outputs against AU labels) is one error naming both; multi-task outputs against
    one track's labels are scored on that track's head. truth_of: the labels, when they come from
    an s-Aff-Wild2 file (label_path names it and the video)."""
    from abawtools import annotations, formats, tasks

    if pred_path == "-" and label_path == "-":
        raise click.UsageError("only one of PRED and LABELS can be stdin")
    pred_task, pred, outputs = formats.read_prediction_outputs(pred_path)
    task, truth = truth_of() if truth_of else formats.read_annotation(label_path)
    if pred_task is tasks.MTL and task is not tasks.MTL:  # a multi-task model's outputs, scored on one track
        head = tasks.MTL.head_of(task)
        pred = head.labels(pred)
        outputs = None if outputs is None else outputs[:, head.out]
        pred_task = task
    if task is tasks.MTL and len(pred) > len(truth):  # s-Aff-Wild2: frames after the last listed one
        truth = annotations.pad(truth, len(pred))
    if pred_task is not task:
        raise AbawError(f"{pred_path} holds {pred_task.title} ({pred_task.name.upper()}) predictions, {label_path} "
                        f"{task.title} ({task.name.upper()}) labels: score each track against its own labels")
    named[label_path] = task
    vid = formats.video_id(label_path) if label_path != "-" else formats.video_id(pred_path)
    _check_length(vid, pred, truth)
    _check_marks(task, pred, truth, pred_path, label_path)
    return vid, pred, truth, (pred_path, outputs)


def _check_marks(task, pred, truth, pred_path, label_path):
    """A prediction holds a value at every annotated frame: the unannotated mark (-1; VA -5) there
    would be scored as a value (VA: -5 inside the CCC)."""
    import numpy as np

    bad = np.flatnonzero(~task.valid(pred) & task.valid(truth))
    if bad.size:
        i = int(bad[0])
        name = "stdin" if pred_path == "-" else pred_path
        raise AbawError(f"{name}:{i + 2}: frame {i + 1} is predicted as unannotated ({task.invalid:g}) but "
                        f"{label_path} annotates it ({bad.size} such frame(s)): predict a value for every frame")


def _truths(label_dir, annotations):
    """{video: (name, () -> (task, labels))}: a label folder's files, or an s-Aff-Wild2 file's videos."""
    if annotations:
        from abawtools import annotations as mtl_labels
        from abawtools import tasks
        from abawtools.commands._common import log

        videos, notes = mtl_labels.read_file(annotations)
        for note in notes:
            log(f"note: {note}")
        return {vid: (f"{annotations}::{vid}", lambda labels=labels: (tasks.MTL, labels))
                for vid, labels in videos.items()}
    from abawtools import formats

    return {vid: (path, lambda path=path: formats.read_annotation(path)) for vid, path in _label_files(label_dir).items()}


def _label_files(label_dir):
    import os

    from abawtools.formats import video_id

    return {video_id(f): os.path.join(label_dir, f) for f in sorted(os.listdir(label_dir)) if f.endswith(".txt")}


def _report_unmatched(pred_only, label_only, what):
    from abawtools.commands._common import log

    if pred_only:
        log(f"warning: {len(pred_only)} {what} without labels, not scored: {few(pred_only)}")
    if label_only:  # an error unless --allow-missing
        log(f"warning: {len(label_only)} label file(s) without a prediction, not scored: {few(label_only)}")
    return {"unmatched_predictions": pred_only, "unmatched_labels": label_only}


def _load_dirs(pred_dir, truths, named):
    import os

    from abawtools import formats

    preds = {}
    for f in sorted(os.listdir(pred_dir)):
        if f.endswith((".txt", ".npy")):
            vid = formats.video_id(f)
            if vid in preds:
                raise AbawError(f"{pred_dir}: both {vid}.txt and {vid}.npy exist; keep one")
            preds[vid] = os.path.join(pred_dir, f)
    common = sorted(set(preds) & set(truths))
    if not common:
        raise AbawError(f"no video name is in both {pred_dir} and the labels")
    pairs = [_load_pair(preds[v], truths[v][0], named, truths[v][1]) for v in common]
    unmatched = _report_unmatched(sorted(set(preds) - set(truths)), sorted(set(truths) - set(preds)), "prediction(s)")
    return pairs, unmatched


def _load_submission(submission, truths, named):
    from abawtools import annotations, tasks
    from abawtools import submission as submissions

    named[submission], sub = submissions.read_submission_task(submission)
    common = sorted(set(sub) & set(truths))
    if not common:
        raise AbawError(f"no video of {submission} has labels")
    pairs = []
    for vid in common:
        name, read = truths[vid]
        task, truth = read()
        named[name] = task
        if task is not named[submission]:
            raise AbawError(f"{submission} is a {named[submission].name.upper()} submission, {name} "
                            f"{task.name.upper()} labels: score each track against its own labels")
        pred = sub[vid]
        if len(pred) < len(truth) and not task.valid(truth[len(pred):]).any():
            truth = truth[: len(pred)]  # the labels' last frames are unannotated: nothing to submit there
        if task is tasks.MTL and len(pred) > len(truth):
            truth = annotations.pad(truth, len(pred))
        _check_length(vid, pred, truth)
        missing = int((~task.valid(pred) & task.valid(truth)).sum())
        if missing:
            raise AbawError(f"{vid}: {missing} labelled frame(s) are missing from {submission}")
        pairs.append((vid, pred, truth, (submission, None)))
    unmatched = _report_unmatched(sorted(set(sub) - set(truths)), sorted(set(truths) - set(sub)), "submitted video(s)")
    return pairs, unmatched


def _tune(task, pairs, out):
    """--tune-thresholds: each AU's threshold on sigmoid(logit), from 0.1 .. 0.9, for the best
    pooled F1 over these videos; written to `out` (JSON); returns the pairs predicted with them."""
    import json

    import numpy as np

    from abawtools import formats, scoring, tasks

    if task not in (tasks.AU, tasks.MTL):
        raise click.UsageError(f"--tune-thresholds is for AU predictions; these are {task.name.upper()}'s")
    # the AU logits and labels: all of an AU model's, the AU head's of a multi-task one
    head = tasks.MTL.head_of(tasks.AU) if task is tasks.MTL else None
    au_of = (lambda a: a[:, head.out]) if head else (lambda a: a)
    labels_of = head.labels if head else (lambda t: t)
    raw = []
    for _, _, _, (path, outputs) in pairs:
        if outputs is None:
            raise click.UsageError(f"--tune-thresholds needs AU logits (NPY), not {path}: a file of 0/1 has no "
                                   "threshold to tune")
        raw.append(outputs)
    valid = [tasks.AU.valid(labels_of(t)) for _, _, t, _ in pairs]
    logits = np.concatenate([au_of(r)[v] for r, v in zip(raw, valid)])
    truth = np.concatenate([labels_of(t)[v] for (_, _, t, _), v in zip(pairs, valid)]) == 1
    grid = np.round(np.arange(0.1, 0.91, 0.1), 2)
    chosen, at_half, tuned, ties = {}, {}, {}, []
    for i, name in enumerate(tasks.AU_NAMES):
        f1s = np.array([scoring.binary_f1(truth[:, i], logits[:, i] >= tasks.logit(g))[0] for g in grid])
        best = scoring.choose_threshold(grid, f1s)
        tied = int((f1s >= f1s.max() - 1e-12).sum())
        if tied > 1:
            ties.append(f"{name} ({tied} thresholds at F1 {f1s.max():.4f}: kept {grid[best]:g})")
        chosen[name], tuned[name], at_half[name] = float(grid[best]), float(f1s[best]), float(f1s[4])
    if ties:
        from abawtools.commands._common import log

        log(f"--tune-thresholds: {len(ties)} AU(s) score the same at several thresholds, the one nearest 0.5 "
            f"kept: {few(ties)}")
    record = {"thresholds": chosen, "f1_at_0.5": at_half, "f1_tuned": tuned,
              "mean_f1_at_0.5": float(np.mean(list(at_half.values()))), "mean_f1_tuned": float(np.mean(list(tuned.values()))),
              "grid": grid.tolist(), "videos": len(pairs)}
    with formats.atomic_output(out, "w") as fh:
        fh.write(json.dumps(record, indent=2) + "\n")
    thresholds = [chosen[n] for n in tasks.AU_NAMES]
    return [(vid, task.predict(r, thresholds), t, p) for (vid, _, t, p), r in zip(pairs, raw)]

