"""abaw align: audio features at 50 rows/s -> one row per video frame."""

import click

from abawtools.commands import _common
from abawtools.errors import AbawError


@click.command(name="align")
@click.argument("inputs", nargs=-1, metavar="AUDIO.npy...")
@click.option("-o", "--output", default=None, metavar="OUT|-",
              help="Output file (`-` = stdout, the default); a folder with several inputs, --like-dir, or a path ending in /.")
@click.option("--frames", type=click.IntRange(min=1), default=None, help="Target number of video frames T.")
@click.option("--like", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Take T from this visual NPY or label file.")
@click.option("--like-dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="One output per visual NPY / label file in this folder; ID_left/ID_right take the audio of ID.")
@click.option("--fps", type=float, default=None,
              help="Place frame t at t/FPS seconds instead of stretching the audio over the video.")
@_common.shard_option
@_common.skip_existing_option
def cli(inputs, output, frames, like, like_dir, fps, shard, skip_existing):
    """Interpolate audio features (Ta, Da) at 50/s onto T video frames -> (T, Da) (paper §4.2).

    By default the audio's duration is stretched over the T frames, as the paper does; with
    --fps F frame t is placed at t/F seconds and, where the audio ends first, its last row is held.

    \b
    Examples:
      abaw align audio50/118.npy --like visual/118.npy -o audio/118.npy
      abaw align audio50/118.npy --frames 4200 --fps 30 > audio/118.npy
      abaw align audio50/*.npy --like-dir EXPR_Recognition_Challenge/Train_Set -o audio/
    """
    from abawtools import alignment, formats

    if sum(x is not None for x in (frames, like, like_dir)) != 1:
        raise click.UsageError("give exactly one of --frames, --like, --like-dir")

    if like_dir:
        plan = _plan_like_dir(inputs, like_dir, output)
    else:
        T = frames if frames is not None else _common.frame_count(like)
        plan = [(inp, out, T) for inp, out in _common.plan_outputs(inputs, output, ".npy")]

    for inp, out, T in _common.work_for_this_task(plan, shard, skip_existing, lambda item: item[2]):
        audio = formats.read_npy(inp)
        if audio.ndim != 2:
            raise AbawError(f"{inp}: expected audio features (Ta, Da), got shape {audio.shape}")
        if len(audio) == 0:
            raise AbawError(f"{inp}: audio features have no rows")
        if fps is None:
            aligned = alignment.stretch(audio, T)
        else:
            aligned, held = alignment.at_fps(audio, T, fps)
            if held:
                _common.log(f"{formats.video_id(inp)}: audio ends {held} frame(s) before the video; last row held")
        formats.write_npy(out, aligned)


def _plan_like_dir(inputs, like_dir, output):
    import os

    from abawtools.formats import shared_audio_id, video_id

    if output in (None, "-"):
        raise click.UsageError("--like-dir needs -o FOLDER")
    os.makedirs(output, exist_ok=True)
    audio = {video_id(p): p for p in inputs}
    plan = []
    for f in sorted(os.listdir(like_dir)):
        if not f.endswith((".npy", ".txt")):
            continue
        vid = video_id(f)
        src = audio.get(vid) or audio.get(shared_audio_id(vid))
        if src is None:
            _common.log(f"warning: no audio features for {vid}; skipped")
            continue
        plan.append((src, os.path.join(output, vid + ".npy"), _common.frame_count(os.path.join(like_dir, f))))
    if not plan:
        raise AbawError(f"no file in {like_dir} matches any audio input")
    return plan
