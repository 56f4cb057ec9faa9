"""abaw smooth: per-frame outputs (EXPR logits (T, 8), VA (T, 2), AU logits (T, 12)) -> smoothed
predictions in the annotation's layout (or smoothed outputs), one file per video."""

import click

from abawtools.commands import _common
from abawtools.errors import AbawError, few
from abawtools.smoothing import LOGIT_METHODS, METHODS


@click.command(name="smooth")
@click.argument("inputs", nargs=-1, metavar="[OUTPUTS.npy|-]...")
@click.option("-o", "--output", default=None, metavar="OUT|-",
              help="Output file (`-` = stdout, the default); a folder (several inputs, or a path ending in /).")
@click.option("-k", "--kernel", default=None, type=int,
              help="Filter length (odd). Default by task: EXPR 11 (the paper), VA 101 (a mean over +-50 frames, "
              "HSEmotion), AU 7 (+-3 frames, HSEmotion).")
@click.option("--method", type=click.Choice(METHODS), default=None,
              help="Default by task: EXPR and AU median, VA mean. median: per-class median of the logits, then argmax (§3.6); median-labels: median of the "
              "label ids, what the authors' validation did (scipy.signal.medfilt, k=11; medfilt pads with "
              "zeros, i.e. Neutral, at the video's ends, where this pads by repeating the edge); mode: "
              "majority vote; mean: moving average (the authors' final submission: -k 27).")
@click.option("--format", "fmt", type=click.Choice(["labels", "npy", "submission"]), default="labels",
              show_default=True,
              help="labels: a file in the annotation's layout (EXPR labels, VA values, AU 0/1); npy: the smoothed "
              "outputs; submission: one ABAW CSV for all inputs, the track's header.")
@click.option("--thresholds", default=None, metavar="FILE.json|T,...",
              help="AU: per-AU thresholds on sigmoid(logit) (default 0.5 each): 12 comma-separated numbers, or "
              "the JSON `abaw score --tune-thresholds` writes.")
@click.option("--template", type=click.Path(exists=True, dir_okay=False), default=None,
              help="With --format submission: the organisers' example file listing every frame to submit.")
@click.option("--allow-missing", is_flag=True,
              help="With --template: a listed video with no prediction at all is filled (EXPR Neutral, VA 0,0, "
              "AU all 0) instead of being an error.")
@_common.shard_option
@_common.skip_existing_option
def cli(inputs, output, kernel, method, fmt, thresholds, allow_missing, template, shard, skip_existing):
    """Filter frame-level outputs over time (paper §3.6) and write predictions: EXPR labels, VA
    values, AU 0/1 (the track follows from the outputs' width: 8, 2 or 12).

    \b
    Examples:
      abaw smooth logits.npy > pred.txt
      abaw infer -m model.safetensors --visual v.npy --audio a.npy | abaw smooth - -k 11
      abaw smooth logits/*.npy -o pred/                   # pred/ID.txt per video
      abaw smooth logits/*.npy --format submission --template example.txt -o submission.csv
      abaw smooth va-out/*.npy -o va-pred/                # VA: pred/ID.txt is `valence,arousal` per frame
      abaw smooth au-out/*.npy --thresholds au-thresholds.json -o au-pred/
    """
    import numpy as np

    from abawtools import formats, smoothing, submission, tasks

    try:
        if kernel is not None:
            smoothing.check_kernel(kernel)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="-k") from None
    au_thresholds = _thresholds(thresholds)
    if fmt == "npy" and method is not None and method not in LOGIT_METHODS:
        raise click.UsageError(f"--method {method} yields labels only; use --format labels")
    if au_thresholds is not None and fmt == "npy":
        raise click.UsageError("--thresholds turn AU logits into 0/1; --format npy writes the smoothed logits "
                               "themselves: use --format labels or submission")
    if template and fmt != "submission":
        raise click.UsageError("--template goes with --format submission")
    if allow_missing and not template:
        raise click.UsageError("--allow-missing goes with --template")

    def smoothed(path, named):
        task, outputs = formats.read_outputs(path)
        named[path] = task
        task = tasks.one_task(named, "the inputs")
        if au_thresholds is not None and task not in (tasks.AU, tasks.MTL):
            raise click.UsageError("--thresholds are AU thresholds; these outputs are " + task.name.upper() + "'s")
        try:
            return (task, *task.smooth(outputs, kernel, method, au_thresholds))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--method") from None

    named = {}
    if fmt == "submission":
        predictions = {}
        task = None
        for path in inputs or ("-",):
            vid = formats.video_id(path) if path != "-" else "stdin"
            task, predictions[vid], _ = smoothed(path, named)
        if template:
            listed = submission.template_frames(template)
            # a whole video of Neutral is a silent loss: name such videos, and refuse unless asked
            missing = sorted(set(listed) - set(predictions))
            if missing:
                names = ", ".join(missing[:10]) + (f" (+{len(missing) - 10} more)" if len(missing) > 10 else "")
                if not allow_missing:
                    raise AbawError(f"{len(missing)} template video(s) have no prediction: {names} "
                                    f"(give their outputs, or --allow-missing to fill them)")
                _common.log(f"warning: {len(missing)} template video(s) without a prediction filled "
                            f"({'Neutral' if task is tasks.EXPR else 'zeros'}): {names}")
            # logits of the template's length end at its last listed frame; shorter ones had another T
            short = {vid: max(frames) - len(predictions[vid]) for vid, frames in listed.items()
                     if vid in predictions and max(frames) > len(predictions[vid])}
            if short:
                names = few(f"{vid} ({n})" for vid, n in sorted(short.items()))
                _common.log(f"warning: the logits of {len(short)} video(s) end before the template's last listed "
                            f"frame, those frames take the last label: {names}; T is the template's "
                            "(infer --like-template)")
        filled = submission.write_submission(output or "-", predictions, template, task)
        if template:
            _common.log(f"submission: {filled} listed frame(s) had no prediction of their own and took the "
                        "previous frame's label (frames without a face crop, past the logits' end)")
        return

    ext = ".npy" if fmt == "npy" else ".txt"
    plan = _common.plan_outputs(inputs, output, ext)
    plan = _common.work_for_this_task(plan, shard, skip_existing, lambda item: _common.npy_frames(item[0]))
    for path, out in plan:
        task, labels, outputs = smoothed(path, named)
        if fmt == "npy":
            if outputs is None:
                raise click.UsageError(f"--method {method} yields labels only; use --format labels")
            formats.write_npy(out, np.asarray(outputs, dtype=np.float32))
        else:
            formats.write_labels(out, labels, task)


def _thresholds(text):
    """--thresholds: 12 numbers in (0, 1), from a comma list or the JSON score --tune-thresholds writes."""
    if text is None:
        return None
    import json
    import math
    import os

    from abawtools import tasks

    if os.path.exists(text):
        try:
            from abawtools.formats import open_text

            with open_text(text) as fh:
                data = json.load(fh)
            data = data.get("thresholds", data)
            values = [float(data[name]) for name in tasks.AU_NAMES]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise click.BadParameter(f"{text}: not a thresholds file ({exc})", param_hint="--thresholds") from None
    else:
        try:
            values = [float(v) for v in text.split(",")]
        except ValueError:
            raise click.BadParameter(f"{text!r}: 12 numbers or a JSON file", param_hint="--thresholds") from None
    if len(values) != len(tasks.AU_NAMES) or not all(math.isfinite(v) and 0 < v < 1 for v in values):
        raise click.BadParameter("12 thresholds in (0, 1), one per AU", param_hint="--thresholds")
    return values
