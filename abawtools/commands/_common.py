"""What every command shares: the shape of per-video inputs/outputs, sharding, progress."""

import os
import sys
import time

import click

from abawtools import sharding
from abawtools.errors import AbawError
from abawtools.formats import video_id


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
        return sharding.shard_from_env()
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
    if len(inputs) == 1 and not is_folder:
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


def frame_count(path):
    """T from a visual NPY (its rows) or an EXPR label file (its label lines)."""
    import numpy as np

    from abawtools import formats

    with open(path, "rb") as fh:
        head = fh.read(6)
    if head == formats.NPY_MAGIC:
        return int(np.load(path, mmap_mode="r").shape[0])
    return len(formats.read_labels(path))


def like_file(folder, vid):
    """The file that gives video `vid` its length: FOLDER/vid.txt (labels) or FOLDER/vid.npy."""
    for ext in (".txt", ".npy"):
        path = os.path.join(folder, vid + ext)
        if os.path.exists(path):
            return path
    raise AbawError(f"{vid}: no {vid}.txt or {vid}.npy in {folder} to take its frame count from")


def npy_frames(path):
    """Row count of an NPY without reading it (for balancing shards)."""
    import numpy as np

    try:
        return int(np.load(path, mmap_mode="r").shape[0])
    except Exception:
        return 1
