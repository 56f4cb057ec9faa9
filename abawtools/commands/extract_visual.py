"""abaw extract-visual: videos or cropped_aligned folders -> per-frame face features (T, D)."""

import click

from abawtools.commands import _common


@click.command(name="extract-visual")
@click.argument("inputs", nargs=-1, required=True, metavar="VIDEO|FRAME_FOLDER...")
@_common.per_video_output_option
@click.option("--model", default="hog", show_default=True, metavar="NAME|DIR|hog",
              help="A Hugging Face vision model (local folder or hub id: BEiT, ViT, ResNet, ...), or the "
              "weight-free built-in HOG descriptor.")
@click.option("--no-detect", is_flag=True, help="Inputs are already face crops (e.g. cropped_aligned): no detector.")
@click.option("--detector", type=click.Choice(["haar", "blazeface"]), default="blazeface", show_default=True,
              help="haar: OpenCV's frontal cascade; blazeface: MediaPipe's BlazeFace CNNs (shipped in the "
              "package, run by torch on --device, a batch of frames at a time; 6 keypoints per face): the "
              "full-range network on the frame, and a second, upright look with the short-range one at "
              "weak candidates, so rolled and partly covered faces are found.")
@click.option("--face-score", type=_common.Finite(0, 1), default=None,
              help="BlazeFace: the least score of the first look that counts as a face (default: MediaPipe's "
              "0.6 for its full-range model); lower finds more faces and more false ones.")
@click.option("--confirm-score", type=_common.Finite(0, 1), default=None,
              help="BlazeFace: the least score of the second, upright look that confirms a weaker candidate "
              "(a rolled or covered face; default 0.7, or --face-score if higher: no false face on 240 "
              "frames of colour blobs, where 0.6 gave 4); lower finds more covered faces and more false ones.")
@click.option("--trust-score", type=_common.Finite(0, 1.01), default=None,
              help="BlazeFace: a face the first look counts but scores below this (default 0.85) is verified by "
              "the second look, or dropped: drawings, letters and logos score 0.6-0.8 at first and ~0.1 on the "
              "second, real faces 0.88-0.92 there. 0.6: no verification (before 0.4); 1.01: verify every face.")
@click.option("--check-score", type=_common.Finite(0, 1), default=None,
              help="BlazeFace: every face found is then asked of MTCNN's ONet (a face classifier trained apart "
              "from BlazeFace, shipped in the package); below this face probability it is not a face (default "
              "0.95: drawn cartoon characters BlazeFace keeps fell from 84 to 1 of 312 frames, real faces all "
              "kept; faces covered by flat bars 39 to 32 of 48). 0.7: MTCNN's own; 0: no check (before 0.4).")
@click.option("--small-faces/--no-small-faces", default=None,
              help="BlazeFace (default: on): frames where no face is found are looked at again in four "
              "overlapping tiles (one frame in 8 of a faceless run, and every frame along a face found so), "
              "for faces under 6 % of the frame (a 30-pixel face in 640) that the whole frame's look misses. "
              "Costs nothing where a face is found, 15-30 % of the rate on faceless footage; --no-small-faces "
              "turns it off.")
@click.option("--align/--no-align", default=None,
              help="With --detector blazeface (default: on): warp each face by its eyes, nose and mouth onto the "
              "112x112 template of aligned face crops (ArcFace's, what Aff-Wild2's cropped_aligned looks like "
              "and what finetune's stage 2 trains on), upright whatever the head's roll. --no-align: the "
              "square box widened by 25 % (heads rolled by 35 degrees come out tilted by a median 38).")
@click.option("--subject", type=click.Choice(["largest", "left", "right", "centre"]), default=None,
              help="Whose face, when several are in view: chosen by this in the first frame it applies to, "
              "then tracked from frame to frame (a passer-by never takes over; a frame where the tracked "
              "face is lost is a NaN row). Default: largest; an output ID ending in _left / _right "
              "(Aff-Wild2's two-person videos) picks that side.")
@click.option("--crops", "crops_dir", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Also write the face crops as DIR/ID/00001.jpg ... (112x112, frame numbers from 1, no file "
              "where there is no face): the cropped_aligned layout that --no-detect and finetune --affwild2 "
              "read, and what the model saw (the features are computed from exactly these files).")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1))
@click.option("--workers", default=None, type=click.IntRange(min=1),
              help="Threads that decode, detect and crop in parallel (default: CPUs, at most 8).")
@click.option("--device", default="auto", show_default=True,
              help="Where the model and the BlazeFace detector run: auto, cpu, cuda, cuda:1, ...")
@click.option("--dtype", type=click.Choice(["fp32", "fp16", "bf16"]), default="fp32", show_default=True,
              help="Backbone precision (fp16/bf16 on GPU).")
@click.option("--save-dtype", type=click.Choice(["float32", "float16"]), default="float32", show_default=True,
              help="Precision of the NPY written (float16 halves the disk for BEiT-large features).")
@click.option("--logits", is_flag=True,
              help="Write the fine-tuned head's (T, 8) logits instead of features (a model folder from "
              "`abaw finetune`): frame-level predictions that smooth and score take as they are. A frame "
              "without a face takes the nearest face frame's logits; a video without any face, the log "
              "of the training class prior.")
@click.option("--frames", type=click.IntRange(min=1), default=None, help="Force T rows (pad with NaN / cut).")
@_common.like_options
@_common.shard_option
@_common.skip_existing_option
def cli(inputs, output, model, no_detect, detector, face_score, confirm_score, trust_score, check_score, small_faces, align, subject, crops_dir, batch_size, workers, device, dtype, save_dtype, logits, frames, like, like_dir,
        like_template, shard, skip_existing):
    """Find the face in every frame and turn it into a feature vector (paper §3.2).

    A video file is decoded frame by frame; a folder in the Aff-Wild2 cropped_aligned layout
    (00001.jpg = frame 0) is read in frame order, a missing number being a frame without a face.
    Rows of NaN mark frames with no usable face (none found, missing or unreadable file).

    \b
    Examples:
      abaw extract-visual clip.mp4 -o visual/clip.npy
      abaw extract-visual cropped_aligned/* --no-detect --model ./beit-large-affwild2 \\
          --device cuda --dtype bf16 --save-dtype float16 -o visual/ --skip-existing
      abaw extract-visual cropped_aligned/* --no-detect --model beit-affwild2/ --logits -o vlogits/
      abaw extract-visual videos/10-60-1280x720.mp4 -o visual/10-60-1280x720_left.npy --crops mycrops/
      abaw extract-visual talk.mp4 --subject centre --crops my_cropped_aligned/ -o visual/talk.npy
      abaw extract-visual talk.mp4 --no-align -o visual/talk.npy   # the widened box, not aligned
      sbatch --array=0-15 examples/slurm/extract.sbatch      # one shard per array task
    """
    import os

    import numpy as np

    from abawtools import formats, visual

    lengths = _common.Lengths(frames, like, like_dir, like_template, len(inputs))
    if "-" in inputs:
        raise click.UsageError("reads files only (media cannot be decoded from a pipe here): give the path")
    if align and (detector != "blazeface" or no_detect):
        raise click.UsageError("--align needs facial keypoints: --detector blazeface (and no --no-detect)")
    if align is None:  # aligned by default where there are keypoints: what cropped_aligned is
        align = detector == "blazeface" and not no_detect
    if no_detect and subject:
        raise click.UsageError("--subject chooses among detected faces: not with --no-detect")
    if any(v is not None for v in (face_score, confirm_score, trust_score, check_score, small_faces)) and (
            detector != "blazeface" or no_detect):
        raise click.UsageError("--face-score / --confirm-score / --trust-score / --check-score / --small-faces "
                               "are BlazeFace's: not with --detector haar or --no-detect")
    plan = _common.plan_outputs(inputs, output, ".npy")
    plan = _common.work_for_this_task(plan, shard, skip_existing, lambda item: _frames_hint(item[0]))
    if not plan:
        return
    def vid_of(path, out):  # the output names the video when there is one (videos/ID.mp4 -o visual/ID_left.npy)
        return formats.video_id(out if out != "-" else path)

    if crops_dir:  # every crop folder checked before any work: never an input, never a user's own folder
        for path, out in plan:
            formats.check_replaceable(os.path.join(crops_dir, vid_of(path, out)), visual.CROPS_KIND, inputs)
    dev, precision = "cpu", None
    if model != "hog" or (detector == "blazeface" and not no_detect):  # torch runs the model or the detector
        from abawtools.runtime import pick_device, torch_dtype

        dev, precision = pick_device(device), torch_dtype(dtype)
    extractor = visual.load_extractor(model, dev, precision, logits=logits)
    for note in getattr(extractor, "notes", ()):
        _common.log(f"warning: {note}")
    cropper = visual.FaceCropper(extractor.spec, detect=not no_detect, detector=detector, align=align,
                                 min_score=face_score, device=dev, confirm_score=confirm_score, trust_score=trust_score,
                                 check_score=check_score, small_faces=small_faces is not False)
    for path, out in plan:
        vid = vid_of(path, out)
        target = lengths(vid)
        side = subject or ("left" if vid.endswith("_left") else "right" if vid.endswith("_right") else "largest")
        source = visual.open_source(path, target)
        if source.note:
            _common.log(f"warning: {source.note}")
        bar = _common.Progress(source.stop, f"extract-visual {formats.video_id(path)}")
        feats = visual.extract(source, extractor, cropper, batch_size, target, bar.update, workers=workers,
                               subject=side, crops_dir=os.path.join(crops_dir, vid) if crops_dir else None)
        bar.close()
        if target is not None:
            _check_source_length(vid, path, source, target)
        said = frame_count_note(formats.video_id(path), source.frames, getattr(source, "announced", source.frames),
                                target)
        if said:
            _common.log(said)
        missing = int((~np.isfinite(feats).all(axis=1)).sum())
        note = f", {source.unreadable} unreadable file(s)" if source.unreadable else ""
        _common.log(f"{formats.video_id(path)}: {len(feats)} frames, {missing} without a face{note}")
        if logits:
            feats = extractor.fill_missing(feats)
        formats.write_npy(out, formats.narrow_float(feats, save_dtype, formats.video_id(path)))


def _check_source_length(vid, path, source, T):
    """T (the annotation's) rules; a source far from it is likely the wrong video or label file:
    said, naming both, beyond 2 frames per minute of video (at 30 fps; 2 at least)."""
    from abawtools.visual import FrameFolder

    tolerance = max(2, 2 * T // 1800)
    if isinstance(source, FrameFolder):  # crops stop early where the face is lost: only an overrun counts
        if source.frames > T + tolerance:
            _common.log(f"warning: {vid}: {path} has images up to frame {source.frames}, past T = {T}; the rows past "
                        "T are cut: is T (--like, --like-dir, --frames) the right one for this folder?")
    elif abs(source.frames - T) > tolerance:
        _common.log(f"warning: {vid}: {path} has {source.frames} frames, T is {T} (rows past it cut, missing ones "
                    "NaN): is T (--like, --like-dir, --frames) the right one for this video?")


def _frames_hint(path):
    """Frame count for balancing shards, cheaply: images in a folder, else the container's count."""
    import os

    if os.path.isdir(path):
        return len(os.listdir(path))
    try:
        return max(_common.video_frames(path), 1)
    except Exception:
        return 1


def frame_count_note(vid, decoded, announced, target):
    """What to say when a container announces another frame count than it decodes: nothing where T
    is given (the features have T rows whatever the file holds); a note where a few frames differ
    (edit lists and variable frame rates make ordinary files announce a few more, as phones and
    editors write them); a warning only where most of the video is missing."""
    if target is not None or decoded >= announced:
        return None
    if decoded >= 0.9 * announced:
        return (f"note: {vid}: {decoded} frames decoded, {announced} announced by the container (edit lists and "
                f"variable frame rates often differ by a few): T = {decoded}; --like-dir/--frames give the "
                "annotation's T")
    return (f"warning: {vid}: only {decoded} of the {announced} frames the container announces were decoded: a cut or "
            "damaged file? T = the frames decoded")
