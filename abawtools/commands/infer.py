"""abaw infer: a video's visual + aligned audio features -> frame-level outputs: EXPR logits (T, 8),
VA (T, 2), AU logits (T, 12), multi-task (T, 22)."""

import click

from abawtools.commands import _common


@click.command(name="infer")
@click.option("-m", "--model", "model_paths", required=True, multiple=True,
              type=click.Path(exists=True, dir_okay=False), metavar="MODEL.safetensors",
              help="A trained model; repeat for an ensemble (members may differ in arch, size, W and S).")
@click.option("--weights", default=None, metavar="W1,W2,...",
              help="Ensemble: one non-negative weight per -m (default: equal); the output is the weighted mean "
              "of each member's soft-voted logits (the authors' final.py: 0.3,0.3,0.4).")
@click.option("--visual", type=click.Path(dir_okay=False, allow_dash=True), default=None, help="Visual features (T, Dv).")
@click.option("--audio", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="Aligned audio features (T, Da); leave out for a video with no audio track.")
@click.option("--visual-dir", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Many videos: every ID.npy here (with --audio-dir), one OUT/ID.npy each. Repeated: several "
              "backbones' features side by side per frame, in the order the model was trained with.")
@click.option("--audio-dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Aligned audio for --visual-dir; ID_left/ID_right fall back to ID.npy. Leave it out for a model "
              "trained without audio (s-Aff-Wild2).")
@click.option("-o", "--output", default="-", show_default=True, metavar="LOGITS.npy|-|FOLDER")
@click.option("-W", "--window", type=click.IntRange(min=1), default=None, help="Window (default: the model's, 64).")
@click.option("-S", "--stride", type=click.IntRange(min=1), default=None, help="Stride (default: the model's, 8).")
@click.option("--batch-size", default=256, show_default=True, type=click.IntRange(min=1), help="Windows per forward pass.")
@click.option("--device", default="auto", show_default=True)
@click.option("--dtype", type=click.Choice(["fp32", "auto", "bf16"]), default="fp32", show_default=True,
              help="fp32; auto: bf16 autocast on CUDA; bf16: autocast on any device.")
@click.option("--bf16", is_flag=True, hidden=True)
@click.option("--like-dir", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="With --visual-dir: only the videos this label folder (ID.txt) names, each checked to have "
              "the annotation's T (a validation split, not every file in the feature folder). Repeatable.")
@click.option("--like-template", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="With --visual-dir: only the videos the organisers' template lists (the test set). "
              "Repeatable; with --like-dir, the videos of both.")
@_common.shard_option
@_common.skip_existing_option
def cli(model_paths, weights, visual, audio, visual_dir, audio_dir, output, window, stride, batch_size, device, dtype, bf16,
        like_dir, like_template, shard, skip_existing):
    """Run a trained model over every window of a video and soft-vote the logits per frame.

    Each frame's logits are the mean over all windows covering it (paper §3.6); all windows of
    a video go through the model in batches. Frames without a face (NaN rows) are masked; a
    video with no face at all, or no audio, still gets finite logits from the other modality.

    \b
    Examples:
      abaw infer -m model.safetensors --visual visual/118.npy --audio audio/118.npy -o logits/118.npy
      abaw infer -m model.safetensors --visual v.npy --audio a.npy | abaw smooth - > pred.txt
      abaw infer -m model.safetensors --visual-dir visual/ --audio-dir audio/ -o logits/ --shard 0/4
      abaw infer -m model.safetensors --visual-dir visual/ --audio-dir audio/ \\
          --like-dir EXPR_Recognition_Challenge/Validation_Set -o logits/
      abaw infer -m a.safetensors -m b.safetensors -m c.safetensors --weights 0.3,0.3,0.4 -S 4 \\
          --visual v.npy --audio a.npy | abaw smooth - --method mean -k 27      # the authors' final.py
    """
    import os

    import numpy as np

    from abawtools import data, formats, inference, runtime, windows
    from abawtools.errors import AbawError
    from abawtools.model import load_model

    if bool(visual) == bool(visual_dir):
        raise click.UsageError("give --visual (one video) or --visual-dir (many)")
    if (like_dir or like_template) and not visual_dir:
        raise click.UsageError("--like-dir / --like-template select videos of --visual-dir")
    weights = _weights(weights, len(model_paths))
    if visual and output not in (None, "-"):
        _common.check_output_dir(output)  # before the work, not after it
    dev = runtime.pick_device(device)
    models = [load_model(p, dev)[0] for p in model_paths]
    model = models[0]
    for p, m in zip(model_paths[1:], models[1:]):
        if m.cfg.task != model.cfg.task:
            raise AbawError(f"{p} is a {m.cfg.task.upper()} model, {model_paths[0]} a {model.cfg.task.upper()} one: "
                            "an ensemble averages models of one track")
        if (m.cfg.visual_dim, m.cfg.audio_dim) != (model.cfg.visual_dim, model.cfg.audio_dim):
            raise AbawError(f"{p}: ensemble member expects features of {m.cfg.visual_dim} + {m.cfg.audio_dim} dims, "
                            f"{model_paths[0]} {model.cfg.visual_dim} + {model.cfg.audio_dim}")
    autocast = runtime.autocast_dtype(dev, "bf16" if bf16 else dtype)

    if visual:
        plan = [(visual, output, audio)]
    else:
        if output in (None, "-"):
            raise click.UsageError("--visual-dir needs -o FOLDER")
        os.makedirs(output, exist_ok=True)
        wanted = {}  # video -> its label file (T to check), the template's last frame, or None
        for folder in like_dir:
            for f in sorted(os.listdir(folder)):
                if f.endswith(".txt"):
                    wanted.setdefault(f[:-4], os.path.join(folder, f))
        for vid, last in _common.Lengths(templates=like_template).listed.items():
            wanted.setdefault(vid, last)
        if not (like_dir or like_template):
            wanted = {formats.video_id(f): None for f in sorted(os.listdir(visual_dir[0])) if f.endswith(".npy")}
        absent = [vid for vid in wanted if not all(os.path.exists(p) for p in formats.feature_files(_features_of(visual_dir, vid)))]
        if absent and (like_dir or like_template or len(visual_dir) > 1):
            raise AbawError(f"{len(absent)} video(s) have no visual features in every one of "
                            f"{', '.join(visual_dir)}: {', '.join(absent[:5])}")
        plan = []
        for vid, like in wanted.items():
            v_path = _features_of(visual_dir, vid)
            if isinstance(like, str):  # a label file: T must be the annotation's
                formats.check_length(vid, f"visual features {v_path}", formats.feature_rows(v_path),
                                     len(formats.read_labels(like)))
            elif like is not None and formats.feature_rows(v_path) < like:
                raise AbawError(f"{vid}: visual features {v_path} have {formats.feature_rows(v_path)} frames, the "
                                f"template lists frame {like}: extract with --like-template")
            a = formats.find_for_video(audio_dir, vid, ".npy") if audio_dir else None
            plan.append((v_path, os.path.join(output, vid + ".npy"), a))
        plan = _common.apply_shard(plan, _common.resolve_shard(shard), lambda item: _common.npy_frames(item[0]))
    formats.check_not_input([item[1] for item in plan], [*model_paths, *(p for item in plan for p in (item[0], item[2]))])
    plan = _common.skip_done(plan, skip_existing)
    progress = _common.Progress(len(plan), "infer", unit="videos") if len(plan) > 1 else None
    for v_path, out, a_path in plan:
        video = data.Video(formats.video_id(v_path), v_path, a_path, audio_dim=model.cfg.audio_dim)
        if audio_dir and a_path is None:  # said by the task that runs this video, not by every task
            _common.log(f"warning: {video.vid}: no audio features in {audio_dir}; audio treated as missing")
        if video.dims != (model.cfg.visual_dim, model.cfg.audio_dim):
            raise AbawError(f"{video.vid}: features are {video.dims[0]} + {video.dims[1]} dims, the model expects "
                            f"{model.cfg.visual_dim} + {model.cfg.audio_dim}")
        total = sum(len(windows.window_starts(video.frames, window or m.cfg.window, stride or m.cfg.stride))
                    for m in models)
        bar = None if progress else _common.Progress(total, f"infer {video.vid}", unit="windows")
        logits = inference.predict_ensemble(models, weights, video, window, stride, batch_size, dev, autocast,
                                            progress=bar.update if bar else None)
        if not np.isfinite(logits).all():  # no NaN leaves a command: broken weights, or bf16 overflow
            raise AbawError(f"{video.vid}: the model(s) {', '.join(model_paths)} gave NaN/Inf logits "
                            "(are the weights finite? with --dtype bf16, try fp32)")
        formats.write_npy(out, logits)
        if progress:
            progress.update()


def _weights(text, n):
    """--weights: n non-negative numbers, not all zero (a usage error otherwise); default equal."""
    import math

    if text is None:
        return [1.0] * n
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise click.BadParameter(f"{text!r}: numbers separated by commas", param_hint="--weights") from None
    if len(values) != n:
        raise click.BadParameter(f"{len(values)} weight(s) for {n} model(s)", param_hint="--weights")
    if any(not math.isfinite(v) or v < 0 for v in values) or sum(values) <= 0:
        raise click.BadParameter("weights must be finite, >= 0 and not all 0", param_hint="--weights")
    return values


def _features_of(visual_dirs, vid):
    """A video's visual features: one folder's NPY, or several folders' joined per frame (os.pathsep)."""
    import os

    return os.pathsep.join(os.path.join(d, vid + ".npy") for d in visual_dirs)
