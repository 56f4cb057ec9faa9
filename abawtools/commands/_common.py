"""What every command shares: the shape of per-video inputs/outputs, sharding, progress."""

import os
import sys
import time

import click

from abawtools import sharding
from abawtools.errors import AbawError
from abawtools.formats import video_id


class Finite(click.FloatRange):
    """A float option in a range that also refuses nan and inf: a bad value is a usage error (exit 2)."""

    name = "finite float"

    def convert(self, value, param, ctx):
        import math

        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return super().convert(number, param, ctx)


def run_options(patience, checkpoint_every):
    """The options of a training run that the engine handles, the same in `train` and `finetune`."""

    def decorate(f):
        for option in reversed([
            click.option("--patience", default=patience, show_default=True, type=click.IntRange(min=0),
                         help="Stop after this many epochs without a better val macro F1 (0: never; needs --val)."),
            click.option("--checkpoint-every", default=checkpoint_every, show_default=True,
                         type=click.IntRange(min=0), help="Also write a checkpoint every N steps (0: every epoch only)."),
            click.option("--seed", default=0, show_default=True, type=int, help="The same seed, the same run (CPU)."),
            click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, ..."),
            click.option("--dtype", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
                         help="auto: bf16 autocast on CUDA, fp32 on CPU; bf16: autocast on any device; fp32: none."),
            click.option("--no-bf16", is_flag=True, hidden=True),  # before 0.2: --dtype fp32
            click.option("--resume", "resume_dir", type=click.Path(file_okay=False), default=None,
                         help="Checkpoint folder: continue from it if it holds a checkpoint (default: OUTPUT.ckpt)."),
            click.option("--threads", default=None, type=click.IntRange(min=1), help="torch CPU threads."),
            click.option("--stop-after-steps", type=int, default=None, hidden=True),
        ]):
            f = option(f)
        return f

    return decorate


def shard_option(f):
    return click.option(
        "--shard",
        metavar="I/N",
        default=None,
        help="Process only shard I of N (balanced by frames). Default: from SLURM_ARRAY_TASK_ID/"
        "SLURM_ARRAY_TASK_COUNT when set, else everything.",
    )(f)


def skip_existing_option(f):
    return click.option(
        "--skip-existing", is_flag=True, help="Leave outputs that already exist alone (resubmitted array tasks)."
    )(f)


def per_video_output_option(f):
    """-o for commands that write one file per input video."""
    return click.option(
        "-o", "--output", default="-", show_default=True, metavar="OUT.npy|-|FOLDER",
        help="A file for one input (`-` = stdout); a folder (several inputs, or a path ending in /): OUT/ID.npy each.",
    )(f)


def resolve_shard(text):
    if text is None:
        try:
            return sharding.shard_from_env()
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
    try:
        return sharding.parse_shard(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--shard") from None


def plan_outputs(inputs, out, ext):
    """[(input, output)]: one input -> `out` is a file (`-` = stdout); several -> `out` is a folder.

    `out` is also a folder when it exists as one or ends with `/`, so `-o feats/` works whatever
    a glob expands to.
    """
    if not inputs:
        inputs = ("-",)
    is_folder = out not in (None, "-") and (os.path.isdir(out) or out.endswith(os.sep))
    from abawtools.formats import check_not_input

    if len(inputs) == 1 and not is_folder:
        if out not in (None, "-"):
            check_output_dir(out)  # before the work, not after it
            check_not_input([out], inputs)
        return [(inputs[0], out or "-")]
    if out in (None, "-"):
        raise click.UsageError("several inputs need -o FOLDER (one output per video)")
    os.makedirs(out, exist_ok=True)
    seen = {}
    plan = []
    for path in inputs:
        vid = video_id(path)
        if vid in seen:
            raise AbawError(f"{path} and {seen[vid]} would both write {vid}{ext}")
        seen[vid] = path
        plan.append((path, os.path.join(out, vid + ext)))
    check_not_input([o for _, o in plan], inputs)
    return plan


def apply_shard(items, shard, size_of):
    """Keep this shard's part of `items`, balanced by `size_of(item)` (e.g. its frame count)."""
    if shard is None or shard[1] == 1:
        return list(items)
    return sharding.select(items, [size_of(item) for item in items], shard)


def work_for_this_task(plan, shard, skip_existing, size_of):
    """This array task's share of `plan` (--shard, else SLURM's variables), minus finished outputs."""
    return skip_done(apply_shard(plan, resolve_shard(shard), size_of), skip_existing)


def skip_done(plan, skip_existing):
    """Drop the items (input, output, ...) whose output exists, with --skip-existing."""
    if not skip_existing:
        return plan
    todo = [item for item in plan if item[1] == "-" or not os.path.exists(item[1])]
    if len(todo) < len(plan):
        log(f"skipping {len(plan) - len(todo)} existing output(s)")
    return todo


def check_output_dir(path):
    """Before any work: the folder that will hold `path` exists (or is made now) and is writable."""
    parent = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as exc:
        raise AbawError(f"{path}: cannot create the folder {parent} ({exc.strerror})") from None
    if not os.access(parent, os.W_OK):
        raise AbawError(f"{path}: the folder {parent} is not writable")


def log(message):
    click.echo(message, err=True)


class Progress:
    """A quiet progress line on stderr: redrawn in place on a terminal, a line every few % otherwise."""

    def __init__(self, total, label, unit="frames"):
        self.total, self.label, self.unit = total, label, unit
        self.done = 0
        self.start = time.monotonic()
        self.last = 0.0
        self.tty = sys.stderr.isatty()

    def update(self, n=1):
        self.done += n
        now = time.monotonic()
        if now - self.last >= (0.2 if self.tty else 10.0) or self.done == self.total:
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            total = f"/{self.total}" if self.total else ""
            text = f"{self.label}: {self.done}{total} {self.unit} ({rate:.0f}/s)"
            if self.tty:
                sys.stderr.write("\r" + text + ("\n" if self.done == self.total else ""))
                sys.stderr.flush()
            else:
                log(text)

    def close(self):
        if self.tty and self.done != self.total:
            sys.stderr.write("\n")


VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".mov", ".webm")


def frame_count(path):
    """T from a visual NPY (its rows), a video file (its frames) or an EXPR label file (its lines)."""
    from abawtools import formats

    if path.lower().endswith(VIDEO_EXTS):
        return video_frames(path)
    with open(path, "rb") as fh:
        head = fh.read(6)
    if head == formats.NPY_MAGIC:
        return formats.npy_rows(path)
    return len(formats.read_labels(path))


def video_frames(path):
    """A video's frame count: the container's, else counted by decoding."""
    import cv2

    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened():
            raise AbawError(f"{path}: cannot open as a video")
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if n <= 0:
            while cap.grab():
                n += 1
        return n
    finally:
        cap.release()


def find_video(folder, vid):
    """FOLDER's video of `vid` (vid.mp4, ...; ID_left / ID_right fall back to the video of ID), or None."""
    from abawtools.formats import shared_audio_id

    for name in dict.fromkeys((vid, shared_audio_id(vid))):
        for ext in VIDEO_EXTS:
            path = os.path.join(folder, name + ext)
            if os.path.exists(path):
                return path
    return None


def like_file(folder, vid):
    """The file that gives video `vid` its length in FOLDER: vid.txt (labels), vid.npy, or the
    video itself (find_video)."""
    for ext in (".txt", ".npy"):
        path = os.path.join(folder, vid + ext)
        if os.path.exists(path):
            return path
    path = find_video(folder, vid)
    if path is None:
        raise AbawError(f"{vid}: no {vid}.txt, {vid}.npy or video in {folder} to take its frame count from")
    return path


class Lengths:
    """T per video from --frames, --like FILE, or --like-dir DIR / --like-template CSV (each
    repeatable, searched in order: a label folder per split, then the test set's template)."""

    def __init__(self, frames=None, like=None, like_dirs=(), templates=(), inputs=1):
        sources = bool(like_dirs or templates)
        if sum((frames is not None, like is not None, sources)) > 1:
            raise click.UsageError("give one of --frames, --like, --like-dir/--like-template")
        if like and inputs > 1:
            raise click.UsageError("--like takes one input; use --like-dir for many")
        self.fixed = frames if frames is not None else (frame_count(like) if like else None)
        self.like_dirs = list(like_dirs)
        self.listed = {}  # video -> the last frame a template lists, in the templates' (sorted) order
        for template in templates:

            from abawtools import submission

            for vid, numbers in sorted(submission.template_frames(template).items()):
                self.listed.setdefault(vid, max(numbers))
        self.sources = sources

    def __call__(self, vid):
        """T for `vid`, or None (the source's own length)."""
        if not self.sources:
            return self.fixed
        for folder in self.like_dirs:
            try:
                return frame_count(like_file(folder, vid))
            except AbawError:
                continue
        if vid in self.listed:
            return self.listed[vid]
        where = ", ".join(self.like_dirs + (["the template"] if self.listed else []))
        raise AbawError(f"{vid}: no label file, NPY, video or template row gives its frame count ({where})")


def like_options(f):
    """--like / --like-dir / --like-template: one way, in every per-video command, to give T."""
    f = click.option("--like-template", multiple=True, type=click.Path(exists=True, dir_okay=False),
                     help="Take T from the organisers' submission template (the last frame it lists for the "
                     "video): the test set, which has no labels. Repeatable; searched after --like-dir.")(f)
    f = click.option("--like-dir", multiple=True, type=click.Path(exists=True, file_okay=False),
                     help="Take each video's T from DIR/ID.txt (an EXPR label folder), DIR/ID.npy, or the video "
                     "DIR/ID.mp4 (ID_left/_right: the video of ID). Aff-Wild2's annotation runs past the last "
                     "cropped_aligned jpg: T must be the annotation's. Repeatable (one per split).")(f)
    return click.option("--like", type=click.Path(exists=True, dir_okay=False), default=None,
                        help="Take T from this label file, NPY or video (one input only).")(f)


def npy_frames(path):
    """Row count of an NPY without reading it (for balancing shards)."""
    from abawtools import formats

    try:
        return formats.npy_rows(formats.feature_files(path)[0])
    except Exception:
        return 1
