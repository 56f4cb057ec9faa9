"""abaw score: the challenge metric (pooled macro F1 over 8 classes) for predictions vs labels."""

import click

from abawtools.errors import AbawError, few


@click.command(name="score")
@click.argument("pair", nargs=-1, metavar="[PRED LABELS]")
@click.option("--pred-dir", type=click.Path(exists=True, file_okay=False), help="Folder of ID.txt / ID.npy predictions.")
@click.option("--label-dir", type=click.Path(exists=True, file_okay=False), help="Folder of ID.txt annotations.")
@click.option("--submission", type=click.Path(exists=True, dir_okay=False), help="An ABAW submission CSV.")
@click.option("--format", "fmt", type=click.Choice(["json", "table"]), default="json", show_default=True)
@click.option("-o", "--output", default="-", show_default=True, metavar="FILE|-",
              help="Where the scores go (written whole and renamed into place: make never sees half a file).")
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="Also write a PNG: confusion matrix and per-video timelines (needs matplotlib).")
@click.option("--allow-missing", is_flag=True,
              help="Score the videos that have a prediction even when some labelled ones have none (listed "
              "under unmatched_labels); without it that is an error, since the score would not be the split's.")
def cli(pair, pred_dir, label_dir, submission, fmt, output, plot, allow_missing):
    """Score predictions: unweighted mean F1 over the 8 classes, all valid frames pooled.

    PRED is a label file or a logits NPY (argmax is taken); `-` reads it from stdin. Frames
    labelled -1 are skipped; a class absent from both truth and predictions is left out of the
    mean and listed under absent_classes. With --label-dir, every labelled video must have a
    prediction (--allow-missing: score those that do); predictions without labels are listed.

    \b
    Examples:
      abaw score pred.txt labels/ID.txt
      abaw smooth logits.npy | abaw score - labels/ID.txt --format table
      abaw score --pred-dir pred/ --label-dir EXPR_Recognition_Challenge/Validation_Set/
      abaw score --submission submission.csv --label-dir Validation_Set/ --plot report.png
    """
    from abawtools import formats, scoring

    modes = [bool(pair), bool(pred_dir), bool(submission)]
    if sum(modes) != 1:
        raise click.UsageError("give exactly one of: PRED LABELS, --pred-dir with --label-dir, --submission with --label-dir")
    if pair and len(pair) != 2:
        raise click.UsageError("PRED LABELS takes exactly two paths")
    if (pred_dir or submission) and not label_dir:
        raise click.UsageError("--pred-dir and --submission need --label-dir")

    from abawtools.commands._common import check_output_dir

    for path in (output, plot):  # every output checked before the work: never the JSON written, then a failure
        if path and path != "-":
            check_output_dir(path)
    if plot:
        from abawtools import plots

        plots.check_available()
    if pair:
        pairs, unmatched = [_load_pair(*pair)], {}
    elif pred_dir:
        pairs, unmatched = _load_dirs(pred_dir, label_dir)
    else:
        pairs, unmatched = _load_submission(submission, label_dir)
    missing = unmatched.get("unmatched_labels")
    if missing and not allow_missing:
        raise AbawError(f"{len(missing)} labelled video(s) of {label_dir} have no prediction in "
                        f"{pred_dir or submission}: {few(missing)} "
                        "(--allow-missing scores the others)")

    result = scoring.score(pairs)
    if result["frames"] == 0:
        raise AbawError(f"nothing to score: all {sum(len(t) for _, _, t in pairs)} frames are labelled -1")
    result.update(unmatched)
    text = scoring.format_json(result) + "\n" if fmt == "json" else scoring.format_table(result)
    if output == "-":
        click.echo(text, nl=False)
    else:
        with formats.atomic_output(output, "w") as fh:
            fh.write(text)
    if plot:
        from abawtools import plots

        plots.write_report(plot, result, pairs)


def _check_length(vid, pred, truth):
    from abawtools import formats

    formats.check_length(vid, "the prediction", len(pred), len(truth))


def _load_pair(pred_path, label_path):
    from abawtools import formats

    if pred_path == "-" and label_path == "-":
        raise click.UsageError("only one of PRED and LABELS can be stdin")
    pred = formats.read_predictions(pred_path)
    truth = formats.read_labels(label_path)
    vid = formats.video_id(label_path) if label_path != "-" else formats.video_id(pred_path)
    _check_length(vid, pred, truth)
    return vid, pred, truth


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


def _load_dirs(pred_dir, label_dir):
    import os

    from abawtools import formats

    labels = _label_files(label_dir)
    preds = {}
    for f in sorted(os.listdir(pred_dir)):
        if f.endswith((".txt", ".npy")):
            vid = formats.video_id(f)
            if vid in preds:
                raise AbawError(f"{pred_dir}: both {vid}.txt and {vid}.npy exist; keep one")
            preds[vid] = os.path.join(pred_dir, f)
    common = sorted(set(preds) & set(labels))
    if not common:
        raise AbawError(f"no video name is in both {pred_dir} and {label_dir}")
    pairs = [_load_pair(preds[v], labels[v]) for v in common]
    unmatched = _report_unmatched(sorted(set(preds) - set(labels)), sorted(set(labels) - set(preds)), "prediction(s)")
    return pairs, unmatched


def _load_submission(submission, label_dir):
    from abawtools import formats

    labels = _label_files(label_dir)
    sub = formats.read_submission(submission)
    common = sorted(set(sub) & set(labels))
    if not common:
        raise AbawError(f"no video of {submission} has a label file in {label_dir}")
    pairs = []
    for vid in common:
        truth = formats.read_labels(labels[vid])
        pred = sub[vid]
        _check_length(vid, pred, truth)
        missing = int(((pred < 0) & (truth >= 0)).sum())
        if missing:
            raise AbawError(f"{vid}: {missing} labelled frame(s) are missing from {submission}")
        pairs.append((vid, pred, truth))
    unmatched = _report_unmatched(sorted(set(sub) - set(labels)), sorted(set(labels) - set(sub)), "submitted video(s)")
    return pairs, unmatched
