"""abaw smooth: logits (T, 8) -> smoothed labels (or logits), one file per video."""

import click

from abawtools.commands import _common
from abawtools.errors import AbawError, few
from abawtools.smoothing import LOGIT_METHODS, METHODS


@click.command(name="smooth")
@click.argument("inputs", nargs=-1, metavar="[LOGITS.npy|-]...")
@click.option("-o", "--output", default=None, metavar="OUT|-",
              help="Output file (`-` = stdout, the default); a folder (several inputs, or a path ending in /).")
@click.option("-k", "--kernel", default=11, show_default=True, type=int, help="Filter length (odd).")
@click.option("--method", type=click.Choice(METHODS), default="median", show_default=True,
              help="median: per-class median of the logits, then argmax (§3.6); median-labels: median of the "
              "label ids, what the authors' validation did (scipy.signal.medfilt, k=11; medfilt pads with "
              "zeros, i.e. Neutral, at the video's ends, where this pads by repeating the edge); mode: "
              "majority vote; mean: moving average (the authors' final submission: -k 27).")
@click.option("--format", "fmt", type=click.Choice(["labels", "npy", "submission"]), default="labels",
              show_default=True,
              help="labels: Aff-Wild2 label file; npy: smoothed logits; submission: one ABAW CSV for all inputs.")
@click.option("--template", type=click.Path(exists=True, dir_okay=False), default=None,
              help="With --format submission: the organisers' example file listing every frame to submit.")
@click.option("--allow-missing", is_flag=True,
              help="With --template: a listed video with no prediction at all is filled with Neutral (0) "
              "instead of being an error.")
@_common.shard_option
@_common.skip_existing_option
def cli(inputs, output, kernel, method, fmt, template, allow_missing, shard, skip_existing):
    """Median-filter frame-level logits over time (paper §3.6) and write labels.

    \b
    Examples:
      abaw smooth logits.npy > pred.txt
      abaw infer -m model.safetensors --visual v.npy --audio a.npy | abaw smooth - -k 11
      abaw smooth logits/*.npy -o pred/                   # pred/ID.txt per video
      abaw smooth logits/*.npy --format submission --template example.txt -o submission.csv
    """
    import numpy as np

    from abawtools import formats, smoothing

    try:
        smoothing.check_kernel(kernel)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="-k") from None
    if fmt == "npy" and method not in LOGIT_METHODS:
        raise click.UsageError(f"--method {method} yields labels only; use --format labels")
    if template and fmt != "submission":
        raise click.UsageError("--template goes with --format submission")
    if allow_missing and not template:
        raise click.UsageError("--allow-missing goes with --template")

    if fmt == "submission":
        predictions = {}
        for path in inputs or ("-",):
            vid = formats.video_id(path) if path != "-" else "stdin"
            predictions[vid] = smoothing.smooth(formats.read_logits(path), kernel, method)[0]
        if template:
            listed = formats.template_frames(template)
            # a whole video of Neutral is a silent loss: name such videos, and refuse unless asked
            missing = sorted(set(listed) - set(predictions))
            if missing:
                names = ", ".join(missing[:10]) + (f" (+{len(missing) - 10} more)" if len(missing) > 10 else "")
                if not allow_missing:
                    raise AbawError(f"{len(missing)} template video(s) have no prediction: {names} "
                                    f"(give their logits, or --allow-missing to fill them with Neutral)")
                _common.log(f"warning: {len(missing)} template video(s) without a prediction filled with "
                            f"Neutral: {names}")
            # logits of the template's length end at its last listed frame; shorter ones had another T
            short = {vid: max(frames) - len(predictions[vid]) for vid, frames in listed.items()
                     if vid in predictions and max(frames) > len(predictions[vid])}
            if short:
                names = few(f"{vid} ({n})" for vid, n in sorted(short.items()))
                _common.log(f"warning: the logits of {len(short)} video(s) end before the template's last listed "
                            f"frame, those frames take the last label: {names}; T is the template's "
                            "(infer --like-template)")
        filled = formats.write_submission(output or "-", predictions, template)
        if template:
            _common.log(f"submission: {filled} listed frame(s) had no prediction of their own and took the "
                        "previous frame's label (frames without a face crop, past the logits' end)")
        return

    ext = ".npy" if fmt == "npy" else ".txt"
    plan = _common.plan_outputs(inputs, output, ext)
    plan = _common.work_for_this_task(plan, shard, skip_existing, lambda item: _common.npy_frames(item[0]))
    for path, out in plan:
        labels, smoothed = smoothing.smooth(formats.read_logits(path), kernel, method)
        if fmt == "npy":
            formats.write_npy(out, np.asarray(smoothed, dtype=np.float32))
        else:
            formats.write_labels(out, labels)
