"""abaw align: audio features at 50 rows/s -> one row per video frame."""

import click

from abawtools.commands import _common
from abawtools.errors import AbawError


@click.command(name="align")
@click.argument("inputs", nargs=-1, metavar="AUDIO.npy...")
@click.option("-o", "--output", default=None, metavar="OUT|-",
              help="Output file (`-` = stdout, the default); a folder with several inputs, --like-dir, or a path ending in /.")
@click.option("--frames", type=click.IntRange(min=1), default=None, help="Target number of video frames T.")
@_common.like_options
@click.option("--videos", "video_dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="The videos (ID.mp4, ...): warn, naming the video, when the audio's duration and T / fps "
              "disagree by more than 2 frames per minute (a wrong T stretches the audio).")
@click.option("--fps", type=_common.Finite(min=0, min_open=True, max=1000), default=None,
              help="Place frame t at t/FPS seconds instead of stretching the audio over the video.")
@_common.shard_option
@_common.skip_existing_option
def cli(inputs, output, frames, like, like_dir, like_template, video_dir, fps, shard, skip_existing):
    """Interpolate audio features (Ta, Da) at 50/s onto T video frames -> (T, Da) (paper §4.2).

    By default the audio's duration is stretched over the T frames, as the paper does; with
    --fps F frame t is placed at t/F seconds and, where the audio ends first, its last row is held.
    With --like-dir / --like-template there is one output per video they name (ID.txt label
    files: T is the annotation's, the documented way; the template: the test set), and
    ID_left / ID_right take the audio of ID.

    \b
    Examples:
      abaw align audio50/118.npy --like visual/118.npy -o audio/118.npy
      abaw align audio50/118.npy --frames 4200 --fps 30 > audio/118.npy
      abaw align audio50/*.npy --like-dir EXPR_Recognition_Challenge/Train_Set --videos videos/ -o audio/
      abaw align audio50/*.npy --like-template test_template.txt --videos videos/ -o audio/
    """
    import math

    from abawtools import alignment, formats

    lengths = _common.Lengths(frames, like, like_dir, like_template, len(inputs))
    if not (lengths.sources or lengths.fixed):
        raise click.UsageError("give one of --frames, --like, --like-dir, --like-template")
    if lengths.sources:
        plan = _plan_named(inputs, lengths, like_dir, like_template, output)
    else:
        plan = [(inp, out, lengths.fixed) for inp, out in _common.plan_outputs(inputs, output, ".npy")]

    for inp, out, T in _common.work_for_this_task(plan, shard, skip_existing, lambda item: item[2]):
        audio = formats.read_npy(inp)
        if audio.ndim != 2:
            raise AbawError(f"{inp}: expected audio features (Ta, Da), got shape {audio.shape}")
        if len(audio) == 0:
            raise AbawError(f"{inp}: audio features have no rows")
        _check_finite(inp, audio)
        vid = formats.video_id(out) if out != "-" else formats.video_id(inp)
        rate = fps or next(filter(None, (_video_fps(d, vid) for d in (video_dir, *like_dir))), None)
        if rate:
            seconds_audio, seconds_video = (len(audio) - 1) * 0.02 + 0.025, T / rate
            tolerance = 2.0 / rate * max(1.0, seconds_video / 60.0)
            if not math.isfinite(seconds_video) or abs(seconds_audio - seconds_video) > tolerance:
                _common.log(f"warning: {vid}: audio lasts {seconds_audio:.2f} s, the video's {T} frames at "
                            f"{rate:g} fps {seconds_video:.2f} s: is T right (--like-dir LABEL_DIR)?")
        if fps is None:
            aligned = alignment.stretch(audio, T)
        else:
            aligned, held = alignment.at_fps(audio, T, fps)
            if held:
                _common.log(f"{formats.video_id(inp)}: audio ends {held} frame(s) before the video; last row held")
        formats.write_npy(out, aligned)


def _check_finite(path, audio):
    """Inf, or a row only partly NaN, is no audio feature: an error naming the row. A row all NaN
    is a stretch without audio (it stays missing where it carries weight): said, with its place."""
    import numpy as np

    finite = np.isfinite(audio)
    nan_rows = np.isnan(audio).all(axis=1)
    bad = np.flatnonzero(~finite.all(axis=1) & ~nan_rows)
    if bad.size:
        row = int(bad[0])
        raise AbawError(f"{path}: row {row} ({row * 0.02:.2f} s) holds Inf or a partly NaN row ({bad.size} such row(s)): "
                        "not audio features")
    if nan_rows.any():
        first = int(np.flatnonzero(nan_rows)[0])
        _common.log(f"warning: {path}: {int(nan_rows.sum())} of {len(audio)} audio row(s) are NaN (no audio), the "
                    f"first at row {first} ({first * 0.02:.2f} s): those frames have no audio")


def _video_fps(folder, vid):
    """fps of FOLDER's video for `vid` (or of ID for ID_left/_right), None when there is none."""
    path = _common.find_video(folder, vid) if folder else None
    if path is None:
        return None
    import cv2

    cap = cv2.VideoCapture(path)
    rate = cap.get(cv2.CAP_PROP_FPS) if cap.isOpened() else 0.0
    cap.release()
    return rate if rate and rate > 0 else None


def _plan_named(inputs, lengths, like_dirs, templates, output):
    """One (audio, output, T) per video the label folders / templates name."""
    import os

    from abawtools.formats import shared_audio_id, video_id

    if output in (None, "-"):
        raise click.UsageError("--like-dir / --like-template need -o FOLDER")
    os.makedirs(output, exist_ok=True)
    audio = {video_id(p): p for p in inputs}
    names = [video_id(f) for d in like_dirs for f in sorted(os.listdir(d))
             if f.endswith((".npy", ".txt") + _common.VIDEO_EXTS)]
    names += list(lengths.listed)  # the templates, read once by Lengths
    plan = []
    for vid in dict.fromkeys(names):
        src = audio.get(vid) or audio.get(shared_audio_id(vid))
        if src is None:
            _common.log(f"warning: no audio features for {vid}; skipped")
            continue
        plan.append((src, os.path.join(output, vid + ".npy"), lengths(vid)))
    if not plan:
        raise AbawError(f"no video named by {', '.join(list(like_dirs) + list(templates))} matches any audio input")
    return plan
