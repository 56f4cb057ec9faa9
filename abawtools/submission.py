"""The organisers' submission layout, for every track: `image_location,` + the annotation's
header, one row per frame (`VIDEO/00001.jpg,...`); templates (the test set's frames, values
empty) and submissions are read and written here."""

import re

import numpy as np

from abawtools import NUM_CLASSES
from abawtools.errors import AbawError
from abawtools.formats import SUBMISSION_HEADER, _read_bytes, atomic_output, decode_text

_FRAME_RE = re.compile(r"^(?P<video>.+)/(?P<frame>\d+)\.(?:jpg|jpeg|png)$", re.IGNORECASE)

def parse_image_location(location, name, lineno):
    m = _FRAME_RE.match(location.strip())
    if not m:
        raise AbawError(f"{name}:{lineno}: expected 'VIDEO/00001.jpg', got '{location[:60]}'")
    if int(m.group("frame")) < 1:
        raise AbawError(f"{name}:{lineno}: frame numbers start at 00001, got '{location[:60]}'")
    return m.group("video"), int(m.group("frame"))


def submission_task(path, lines=None):
    """The task of a submission-layout CSV (the organisers' template or a submission) from its
    header, `image_location,` + the task's annotation header."""
    from abawtools import tasks

    name = "stdin" if path == "-" else path
    if lines is None:
        lines = decode_text(_read_bytes(path)).splitlines()
    first = lines[0] if lines else ""
    key = first.lstrip("\ufeff").replace(" ", "").lower()
    for task in tasks.TASKS.values():
        if key == task.submission_header.lower():
            return task
    if _headerless(first) or key in ("image", "image,"):  # the multi-task test list: a header `image`, or none
        return tasks.MTL
    raise AbawError(f"{name}:1: expected header '{SUBMISSION_HEADER}' (EXPR), '{tasks.VA.submission_header}' (VA), "
                    f"'{tasks.AU.submission_header}' (AU) or '{tasks.MTL.submission_header}' (multi-task), "
                    f"got '{first[:80]}'")


def _headerless(first):
    """A list that starts with a frame (`VIDEO/00001.jpg,`): the multi-task test list, MTL.txt."""
    return bool(_FRAME_RE.match(first.lstrip("\ufeff").split(",")[0].strip()))


def _submission_rows(path, lines=None):
    """Yield (lineno, video, frame_number, label_or_None, location) from a submission-layout CSV
    of any task; a label is an int (EXPR) or a tuple of values (VA, AU)."""
    name = "stdin" if path == "-" else path
    lines = decode_text(_read_bytes(path)).splitlines() if lines is None else lines
    task = submission_task(path, lines)
    headerless = bool(lines) and _headerless(lines[0])
    for lineno, line in enumerate(lines if headerless else lines[1:], start=1 if headerless else 2):
        if not line.strip():
            continue
        fields = line.split(",")
        vid, frame = parse_image_location(fields[0], name, lineno)
        label = None
        values = [f.strip() for f in fields[1:]]
        if task.name == "expr" and values and values[0]:
            try:
                label = int(values[0])
            except ValueError:
                raise AbawError(f"{name}:{lineno}: expected an integer label, got '{values[0][:40]}'") from None
            if not 0 <= label < NUM_CLASSES:
                raise AbawError(f"{name}:{lineno}: label {label} outside [0, {NUM_CLASSES - 1}]")
        elif task.name != "expr" and any(values):
            label = tuple(task.parse([",".join(values)], f"{name} (line {lineno})")[0])
        yield lineno, vid, frame, label, fields[0].strip()


def template_frames(path):
    """{video: [frame numbers]} listed in the organisers' template (labels, if any, ignored)."""
    out = {}
    for _, vid, frame, _, _ in _submission_rows(path):
        out.setdefault(vid, []).append(frame)
    return out


def read_submission(path):
    """{video: labels} with labels[t] = the label of frame t+1; frames not listed are invalid
    (-1; VA -5). Labels in the layout of the submission's task (submission_task)."""
    return read_submission_task(path)[1]


def read_submission_task(path):
    """(task, read_submission's dict), the file read once (`-` is a pipe)."""
    name = "stdin" if path == "-" else path
    lines = decode_text(_read_bytes(path)).splitlines()  # read once: `-` is a pipe
    task = submission_task(path, lines)
    frames, where = {}, {}
    for lineno, vid, frame, label, _ in _submission_rows(path, lines):
        if label is None:
            raise AbawError(f"{name}:{lineno}: missing label")
        seen = frames.setdefault(vid, {})
        if frame in seen and seen[frame] != label:
            raise AbawError(f"{name}:{lineno}: {vid}/{frame:05d}.jpg is labelled {label} here and {seen[frame]} "
                            f"on line {where[vid, frame]}")
        seen[frame] = label
        where[vid, frame] = lineno
    out = {}
    for vid, by_frame in frames.items():
        labels = np.empty((max(by_frame),) + task.label_shape, dtype=task.label_dtype)
        labels[:] = task.padding()  # a frame not listed: unannotated
        for frame, label in by_frame.items():
            labels[frame - 1] = label
        out[vid] = labels
    return task, out


def write_submission(path, predictions, template=None, task=None):
    """Write the ABAW submission CSV from {video: labels} (in `task`'s layout; default EXPR);
    returns the number of forward-filled rows.

    With `template` (the organisers' example file, of the same task) exactly its rows are
    written, in its order, as it spells them; a listed frame with no prediction (no face crop,
    past the end of the logits, an unknown video) takes the previous frame's label of the same
    video, or the video's first predicted label. Without a template every predicted frame is written.
    """
    from abawtools import tasks

    task = task or tasks.EXPR
    if template is not None:
        theirs = submission_task(template)
        if theirs is not task:
            raise AbawError(f"{template}: a {theirs.name.upper()} template ({theirs.submission_header}), but the "
                            f"predictions are {task.name.upper()}'s: give the template of their track")
    filled = 0
    out = [task.submission_header]

    def line(row):
        return task.format_rows(np.asarray([row]))[0]

    if template is None:
        for vid in sorted(predictions):
            out.extend(f"{vid}/{t + 1:05d}.jpg,{line(v)}" for t, v in enumerate(predictions[vid]))
    else:
        last = {}
        fallback = task.fill_label()
        for _, vid, frame, _, location in _submission_rows(template):
            pred = predictions.get(vid)
            ok = None if pred is None else task.valid(pred)
            if pred is not None and 0 < frame <= len(pred) and ok[frame - 1]:
                label = pred[frame - 1]
            else:
                filled += 1
                if vid in last:
                    label = last[vid]
                elif pred is not None and ok.any():
                    label = pred[ok][0]
                else:
                    label = fallback
            last[vid] = label
            out.append(f"{location},{line(label)}")  # the template's rows as it spells them
    with atomic_output(path, "wb") as fh:
        fh.write(("\n".join(out) + "\n").encode())
    return filled
